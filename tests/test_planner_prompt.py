"""The prompt builder: official layout, trigger word, spatial-first reordering, truncation warning."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from portraitcraft.agents.planner.prompt_builder import (
    PromptBuilder,
    estimate_tokens,
    split_sentences,
    truncation_point,
)
from portraitcraft.config import PlannerConfig

CONTENT = ("A young woman in a yellow raincoat holds a paper cup. Rain streaks the glass. "
           "She is positioned on the right third, facing left. The palette is cool and grey.")
COMPOSITION = ("Soft light wraps the face. The subject's gaze leads toward the empty left side of the frame. "
               "Depth of field is shallow. A lamp post stands in the background behind her.")
LAYOUT = (
    "{lead}Generate an image based on the following description.\n\n"
    "[Content]\n{content}\n\n"
    "[Composition]\n{composition}"
)


def test_official_layout_without_reordering() -> None:
    built = PromptBuilder(spatial_first=False).build(CONTENT, COMPOSITION)
    assert built.text == LAYOUT.format(lead="", content=CONTENT, composition=COMPOSITION)
    assert built.warnings == [] and built.spatial_sentences == 0


def test_trigger_word_leads_the_prompt() -> None:
    built = PromptBuilder(trigger_word="AES_COMP", spatial_first=False).build(CONTENT, COMPOSITION)
    assert built.text == LAYOUT.format(lead="AES_COMP, ", content=CONTENT, composition=COMPOSITION)
    assert built.text.startswith("AES_COMP, Generate an image")


def test_spatial_statements_move_first_within_each_section() -> None:
    built = PromptBuilder().build(CONTENT, COMPOSITION)
    content = built.text.split("[Content]\n")[1].split("\n\n[Composition]")[0]
    composition = built.text.split("[Composition]\n")[1]
    assert split_sentences(content) == [
        "She is positioned on the right third, facing left.",
        "A young woman in a yellow raincoat holds a paper cup.",
        "Rain streaks the glass.",
        "The palette is cool and grey.",
    ]
    assert split_sentences(composition) == [
        "The subject's gaze leads toward the empty left side of the frame.",
        "A lamp post stands in the background behind her.",
        "Soft light wraps the face.",
        "Depth of field is shallow.",
    ]
    assert built.spatial_sentences == 3


def test_text_without_spatial_sentences_is_left_verbatim() -> None:
    text = "A man reads.\nThe light is warm."
    b = PromptBuilder()
    assert b.reorder(text) == (text, 0)
    assert b.reorder("He looks at the camera. The light is warm.") == ("He looks at the camera. The light is warm.", 1)


SPATIAL_WORDS = ["left", "right", "foreground", "background", "facing", "gaze", "placed", "third", "behind"]
PLAIN_WORDS = ["woman", "coat", "warm", "light", "soft", "red", "calm", "smiles", "holds", "glass"]


@st.composite
def sentences(draw: st.DrawFn) -> str:
    words = draw(st.lists(st.sampled_from(SPATIAL_WORDS + PLAIN_WORDS), min_size=1, max_size=8))
    end = draw(st.sampled_from([".", "!", "?"]))
    return (" ".join(words) + end).capitalize()


@settings(max_examples=60, deadline=None)
@given(st.lists(sentences(), min_size=1, max_size=10))
def test_reordering_keeps_every_sentence_and_both_orders(parts: list[str]) -> None:
    b = PromptBuilder()
    out, n_spatial = b.reorder(" ".join(parts))
    result = split_sentences(out)
    assert Counter(result) == Counter(parts)
    flags = [b.is_spatial(s) for s in result]
    assert flags == sorted(flags, reverse=True)  # every spatial sentence before every other one
    assert sum(flags) == n_spatial
    assert [s for s in result if b.is_spatial(s)] == [s for s in parts if b.is_spatial(s)]
    assert [s for s in result if not b.is_spatial(s)] == [s for s in parts if not b.is_spatial(s)]


def test_truncation_warning_names_where_the_encoder_stops() -> None:
    long_content = " ".join(f"Sentence number {i} describes the red coat in detail." for i in range(120))
    built = PromptBuilder(max_prompt_tokens=512, condense="off").build(long_content, COMPOSITION)
    assert built.tokens > 512 and built.tokens_before == built.tokens and built.condensed == []
    assert len(built.warnings) == 1
    assert "max_prompt_tokens=512" in built.warnings[0] and f"~{built.tokens} tokens" in built.warnings[0]
    cut = truncation_point(built.text, 512)
    assert cut is not None and estimate_tokens(built.text[:cut]) <= 512 < estimate_tokens(built.text[: cut + 12])
    assert " ".join(built.text[cut:].split()[:3]) in built.warnings[0]
    assert PromptBuilder(max_prompt_tokens=4096).build(long_content, COMPOSITION).warnings == []


def test_token_estimate_tracks_text_length() -> None:
    short, long = "A woman stands on the left third.", "A woman stands on the left third. " * 10
    assert estimate_tokens(short) >= len(short.split())
    assert estimate_tokens(long) == 10 * estimate_tokens(short)
    assert estimate_tokens("composition") == 2 and estimate_tokens("1584") == 4
    assert estimate_tokens("") == 0


def test_builder_from_config() -> None:
    cfg = PlannerConfig(trigger_word="AES_COMP", spatial_first=False, max_prompt_tokens=20, condense="off")
    built = PromptBuilder.from_config(cfg).build(CONTENT, COMPOSITION)
    assert built.text.startswith("AES_COMP, ") and CONTENT in built.text
    assert built.warnings
