"""Test-time augmentation views for the Track 1 assessor (methods.md: MSIIP, sky, ZTE_CHU).

A `View` is one way of showing an item to the model: the original or its horizontal mirror, a max-pixel
budget, an order of the answer options and a prompt-template variant. A mirrored view mirrors the TEXT as
well: every directional word in the question and the options is swapped (left <-> right, east <-> west and
their compounds), whole words only and with its case kept, so "bright" or "leftover" are never touched.
Option orders are permutations: the model sees the options under new letters and its answer letter is
mapped back to the original one.

Example:
    >>> swap_directions("The subject stands on the LEFT, facing north-west; the light is bright.")
    'The subject stands on the RIGHT, facing north-east; the light is bright.'
    >>> order = ("C", "A", "B", "D")  # shown letter A carries original option C, ...
    >>> permute_options({"A": "a", "B": "b", "C": "c", "D": "d"}, order)
    {'A': 'c', 'B': 'a', 'C': 'b', 'D': 'd'}
    >>> unpermute_letter("A", order)
    'C'
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

# Pairs of words a horizontal mirror exchanges. The mapping is an involution (swapping twice is the identity),
# so "anticlockwise" (which would have to map to "clockwise" and back to "counterclockwise") is not listed.
# Hyphenated compounds ("left-hand", "upper-left", "north-west") need no entry: the hyphen is a word boundary.
DIRECTION_PAIRS: tuple[tuple[str, str], ...] = (
    ("left", "right"),
    ("lefts", "rights"),
    ("leftmost", "rightmost"),
    ("leftward", "rightward"),
    ("leftwards", "rightwards"),
    ("lefthand", "righthand"),
    ("lefthanded", "righthanded"),
    ("east", "west"),
    ("eastern", "western"),
    ("easterly", "westerly"),
    ("eastward", "westward"),
    ("eastwards", "westwards"),
    ("eastbound", "westbound"),
    ("easternmost", "westernmost"),
    ("northeast", "northwest"),
    ("southeast", "southwest"),
    ("northeastern", "northwestern"),
    ("southeastern", "southwestern"),
    ("northeasterly", "northwesterly"),
    ("southeasterly", "southwesterly"),
    ("northeastward", "northwestward"),
    ("southeastward", "southwestward"),
    ("clockwise", "counterclockwise"),
)
SWAPS: dict[str, str] = {}
for _a, _b in DIRECTION_PAIRS:
    SWAPS[_a], SWAPS[_b] = _b, _a
# Longest first so the alternation never stops inside a longer word; \b keeps whole words only.
_WORDS = re.compile(r"\b(" + "|".join(sorted(SWAPS, key=len, reverse=True)) + r")\b", re.IGNORECASE)


def _simple_case(source: str, target: str) -> str | None:
    """`target` in the case of `source` when that is lower, UPPER or Title; None for mixed case."""
    if source.islower():
        return target
    if source.isupper():
        return target.upper()
    if source[0].isupper() and source[1:].islower():
        return target.capitalize()
    return None


def _keep_case(source: str, target: str) -> str:
    """`target` (lower case) written in the case pattern of `source`.

    Mixed case ("LeftHand", "NorthWest") keeps the case of the part both words share character by character
    and gives the part that differs the pattern of the part it replaces ("RightHand", "NorthEast").
    """
    simple = _simple_case(source, target)
    if simple is not None:
        return simple
    low, shortest = source.lower(), min(len(source), len(target))
    prefix = suffix = 0
    while prefix < shortest and low[prefix] == target[prefix]:
        prefix += 1
    while suffix < shortest - prefix and low[-1 - suffix] == target[-1 - suffix]:
        suffix += 1
    core_src, core_tgt = source[prefix:len(source) - suffix], target[prefix:len(target) - suffix]
    core = _simple_case(core_src, core_tgt) if core_src else core_tgt
    if core is None:  # irregular inside the core: character by character, the tail like the last character
        core = "".join(t.upper() if s.isupper() else t for s, t in zip(core_src, core_tgt, strict=False))
        core += "".join(t.upper() if core_src[-1].isupper() else t for t in core_tgt[len(core_src):])
    return source[:prefix] + core + source[len(source) - suffix:]


def swap_directions(text: str) -> str:
    """Exchange left/right, east/west and their compounds, whole words only, keeping each word's case.

    Args:
        text (str): a question, an option or an answer.

    Example:
        >>> swap_directions("Leftmost figure, right-hand side, Northwest corner; copyright, brightness")
        'Rightmost figure, left-hand side, Northeast corner; copyright, brightness'
    """
    return _WORDS.sub(lambda m: _keep_case(m.group(0), SWAPS[m.group(0).lower()]), text)


def has_directions(text: str) -> bool:
    """True when the text holds a word `swap_directions` would change."""
    return _WORDS.search(text) is not None


# ------------------------------------------------------------------------------------------ option orders


def option_orders(letters: Sequence[str], count: int) -> list[tuple[str, ...]]:
    """`count` distinct option orders: the identity first, then cyclic shifts, then other permutations.

    `order[i]` is the ORIGINAL letter whose option is shown at position i (under the letter `letters[i]`).

    Example:
        >>> option_orders("ABCD", 3)
        [('A', 'B', 'C', 'D'), ('B', 'C', 'D', 'A'), ('C', 'D', 'A', 'B')]
    """
    letters = tuple(letters)
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    orders: list[tuple[str, ...]] = []
    for shift in range(len(letters)):
        orders.append(letters[shift:] + letters[:shift])
    for perm in itertools.permutations(letters):
        if len(orders) >= count:
            break
        if perm not in orders:
            orders.append(perm)
    return orders[:count] if letters else [()]


def permute_options(options: Mapping[str, str], order: Sequence[str]) -> dict[str, str]:
    """The options as shown in a view: shown letter `letters[i]` carries original option `order[i]`.

    Raises:
        ValueError: `order` is not a permutation of the option letters.
    """
    letters = list(options)
    if sorted(order) != sorted(letters):
        raise ValueError(f"order {list(order)} is not a permutation of the option letters {letters}")
    return {shown: options[original] for shown, original in zip(letters, order, strict=True)}


def unpermute_letter(shown: str, order: Sequence[str], letters: Sequence[str] | None = None) -> str:
    """The original letter of the option the model chose under the shown letter `shown`."""
    letters = list(letters if letters is not None else sorted(order))
    return order[letters.index(shown)]


def permute_letter(original: str, order: Sequence[str], letters: Sequence[str] | None = None) -> str:
    """The letter under which the original option `original` is shown (the inverse of `unpermute_letter`)."""
    letters = list(letters if letters is not None else sorted(order))
    return letters[list(order).index(original)]


# ------------------------------------------------------------------------------------------------- views


@dataclass(frozen=True)
class View:
    """One test-time view of an item.

    Attributes:
        name: a readable id, e.g. "flip@200704/o1/default".
        flip: the image is mirrored and the directional words of the text swapped.
        max_pixels: the image is shrunk to at most this many pixels.
        order_index: which option order (see `option_orders`; 0 = as given).
        template: the prompt template variant (prompts/understand/templates/<template>.md).
    """

    name: str
    flip: bool
    max_pixels: int
    order_index: int = 0
    template: str = "default"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> View:
        return cls(**{k: data[k] for k in ("name", "flip", "max_pixels", "order_index", "template")})

    def order(self, letters: Sequence[str], n_orders: int) -> tuple[str, ...]:
        """This view's option order for an item with these letters."""
        orders = option_orders(letters, max(n_orders, 1))
        return orders[self.order_index % len(orders)]

    def present(self, question: str, options: Mapping[str, str], n_orders: int) -> tuple[str, dict[str, str],
                                                                                         tuple[str, ...]]:
        """(question, shown options, order) as this view shows them: mirrored words, permuted options."""
        order = self.order(list(options), n_orders)
        shown = permute_options(options, order) if options else {}
        if self.flip:
            question = swap_directions(question)
            shown = {k: swap_directions(v) for k, v in shown.items()}
        return question, shown, order


def build_views(*, flip: bool, max_pixels: Sequence[int], templates: Sequence[str], option_orders: int) -> list[View]:
    """Every combination of (original | mirrored) x resolution x template; option orders rotate across them.

    Option orders do not multiply the number of views: they rotate over the views so that the original and the
    mirrored views each see every order in turn (four views, two orders: orig o0, flip o1, orig o1, flip o0).

    Example:
        >>> [v.name for v in build_views(flip=True, max_pixels=[200704], templates=["default"], option_orders=2)]
        ['orig@200704/o0/default', 'flip@200704/o1/default']
    """
    if not max_pixels:
        raise ValueError("max_pixels must list at least one pixel budget")
    if not templates:
        raise ValueError("templates must list at least one template")
    views = []
    flips = (False, True) if flip else (False,)
    for i, (pixels, template, mirrored) in enumerate(itertools.product(max_pixels, templates, flips)):
        order_index = (i // len(flips) + i % len(flips)) % max(option_orders, 1)
        name = f"{'flip' if mirrored else 'orig'}@{pixels}/o{order_index}/{template}"
        views.append(View(name, mirrored, int(pixels), order_index, template))
    return views


__all__ = [
    "DIRECTION_PAIRS",
    "SWAPS",
    "View",
    "build_views",
    "has_directions",
    "option_orders",
    "permute_letter",
    "permute_options",
    "swap_directions",
    "unpermute_letter",
]
