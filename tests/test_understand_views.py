"""Views for Track 1 test-time augmentation: directional word swap, option permutations, the view grid."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portraitcraft.agents.views import (
    SWAPS,
    View,
    build_views,
    has_directions,
    option_orders,
    permute_letter,
    permute_options,
    swap_directions,
    unpermute_letter,
)

DIRECTIONAL = sorted(SWAPS)
# words that CONTAIN a directional word but are not one: a mirror must never touch them
NEAR_MISSES = ["bright", "brightness", "copyright", "leftover", "lefty", "righteous", "rightly", "Wright",
               "feast", "yeast", "westie", "clockwork", "upright", "outright", "alright",
               "northeasterner", "beast", "sleft", "lefts"[:-1] + "ie"]
FILLER = ["the", "subject", "stands", "on", "of", "frame", "faces", "camera", "with", "light", "shadow", "a"]
SEPARATORS = [" ", ", ", "; ", " - ", "-", "/", "(", ") ", ". ", "\n", "'s ", ": "]
CASES = {"lower": str.lower, "upper": str.upper, "title": str.capitalize}


def case_of(word: str) -> str:
    if word.islower():
        return "lower"
    if word.isupper():
        return "upper"
    return "title"


words = st.one_of(
    st.tuples(st.sampled_from(DIRECTIONAL), st.sampled_from(sorted(CASES))).map(lambda wc: CASES[wc[1]](wc[0])),
    st.sampled_from(NEAR_MISSES + FILLER),
)
sentences = st.lists(st.tuples(words, st.sampled_from(SEPARATORS)), min_size=1, max_size=12).map(
    lambda parts: "".join(w + s for w, s in parts))


@settings(max_examples=400, deadline=None)
@given(sentences)
def test_swapping_twice_is_the_identity(text: str) -> None:
    assert swap_directions(swap_directions(text)) == text


@settings(max_examples=400, deadline=None)
@given(sentences)
def test_swap_changes_exactly_the_directional_words_and_keeps_their_case(text: str) -> None:
    out = swap_directions(text)
    # tokenise both on word boundaries: the separators and every non-directional word are unchanged
    before = re.split(r"(\W+)", text)
    after = re.split(r"(\W+)", out)
    assert len(before) == len(after)
    for old, new in zip(before, after, strict=True):
        if old.lower() in SWAPS:
            assert new.lower() == SWAPS[old.lower()]
            assert case_of(new) == case_of(old)
        else:
            assert new == old


@pytest.mark.parametrize("word", NEAR_MISSES)
def test_no_partial_words(word: str) -> None:
    for case in CASES.values():
        text = f"A {case(word)} portrait."
        assert swap_directions(text) == text
        assert not has_directions(text)


@pytest.mark.parametrize(("text", "expected"), [
    ("left", "right"),
    ("Left", "Right"),
    ("LEFT", "RIGHT"),
    ("Right-hand side", "Left-hand side"),
    ("the upper-left corner", "the upper-right corner"),
    ("Leftmost", "Rightmost"),
    ("north-west", "north-east"),
    ("Northwest", "Northeast"),
    ("SOUTHEASTERN", "SOUTHWESTERN"),
    ("turn clockwise", "turn counterclockwise"),
    ("eastward, Westwards", "westward, Eastwards"),
    ("LeftHand", "RightHand"),  # mixed case: character by character
    ("the bright light on the left", "the bright light on the right"),
])
def test_swap_examples(text: str, expected: str) -> None:
    assert swap_directions(text) == expected
    assert swap_directions(expected) == text


def test_every_pair_is_an_involution() -> None:
    for word, other in SWAPS.items():
        assert SWAPS[other] == word
        for case in CASES.values():
            assert swap_directions(swap_directions(case(word))) == case(word)


@pytest.mark.parametrize("letters", ["AB", "ABC", "ABCD", "ABCDE"])
def test_option_permutation_round_trip(letters: str) -> None:
    options = {x: f"option text {x}" for x in letters}
    orders = option_orders(letters, 24)
    assert orders[0] == tuple(letters)
    assert len(set(orders)) == len(orders) == min(24, len(list(itertools.permutations(letters))))
    for order in orders:
        shown = permute_options(options, order)
        assert sorted(shown.values()) == sorted(options.values())
        for original in letters:
            shown_letter = permute_letter(original, order)
            assert shown[shown_letter] == options[original]  # the model sees the option under its new letter
            assert unpermute_letter(shown_letter, order) == original  # and its answer maps back


def test_permute_options_rejects_a_foreign_order() -> None:
    with pytest.raises(ValueError, match="not a permutation"):
        permute_options({"A": "a", "B": "b"}, ("A", "C"))


def test_view_present_flips_text_and_permutes() -> None:
    view = View("flip", True, 448 * 448, order_index=1)
    question, shown, order = view.present("Where is the subject: left or right?",
                                          {"A": "left third", "B": "right third", "C": "centre", "D": "bright"},
                                          n_orders=2)
    assert question == "Where is the subject: right or left?"
    assert order == ("B", "C", "D", "A")
    assert shown == {"A": "left third", "B": "centre", "C": "bright", "D": "right third"}
    # the model answers "D" = shown "right third" in the mirror = original option A ("left third")
    assert unpermute_letter("D", order) == "A"


def test_build_views_rotates_option_orders_over_original_and_mirror() -> None:
    views = build_views(flip=True, max_pixels=[448 * 448, 1024 * 1024], templates=["default"], option_orders=2)
    assert [(v.flip, v.max_pixels, v.order_index) for v in views] == [
        (False, 448 * 448, 0), (True, 448 * 448, 1), (False, 1024 * 1024, 1), (True, 1024 * 1024, 0)]
    assert len({v.name for v in views}) == 4
    assert View.from_dict(views[1].to_dict()) == views[1]
    single = build_views(flip=False, max_pixels=[1000], templates=["default", "brief"], option_orders=1)
    assert [(v.flip, v.template, v.order_index) for v in single] == [(False, "default", 0), (False, "brief", 0)]
    with pytest.raises(ValueError, match="max_pixels"):
        build_views(flip=True, max_pixels=[], templates=["default"], option_orders=1)
