"""Keyword data of the planner (prompts/planner/*.json) and the whole-word phrase matcher both policies use.

Matching works on word n-grams rather than regular expressions: a description is lower-cased, every run of
characters other than letters, digits and apostrophes becomes one space, and the 1..N-word n-grams starting
at words that can begin a phrase are collected once; a phrase (normalised the same way) matches when it is
among them. The last word of each n-gram also stands for its singular ("roads" -> "road", "beaches" ->
"beach"), so the data lists singulars. One pass per text, however many phrases: fitting on thousands of
~400-word descriptions stays fast.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import cache
from typing import Any

from portraitcraft.prompts.loader import PromptError, load_prompt

_NON_WORD = re.compile(r"[^a-z0-9']+")


class PlannerDataError(PromptError):
    """A planner data file (prompts/planner/*) is missing or malformed."""


def normalise(text: str) -> str:
    """Lower-case, punctuation and hyphens to single spaces.

    Example:
        >>> normalise("A Full-Body, head-to-toe shot")
        'a full body head to toe shot'
    """
    return _NON_WORD.sub(" ", text.lower()).strip()


def _singulars(word: str) -> tuple[str, ...]:
    if len(word) > 3 and word.endswith("es"):
        return (word, word[:-1], word[:-2])
    if len(word) > 2 and word.endswith("s") and not word.endswith("ss"):
        return (word, word[:-1])
    return (word,)


def _grams_from(words: list[str], i: int, max_words: int) -> set[str]:
    """The n-grams starting at words[i], 1..max_words long, last word also singularised."""
    out: set[str] = set()
    for n in range(1, min(max_words, len(words) - i) + 1):
        head = " ".join(words[i : i + n - 1])
        for last in _singulars(words[i + n - 1]):
            out.add(f"{head} {last}" if head else last)
    return out


class PhraseMatcher:
    """Finds which of a fixed list of phrases occur in a text (whole words, see the module doc).

    Args:
        phrases (Iterable[str]): the phrases; normalised on the way in, duplicates dropped.

    Example:
        >>> PhraseMatcher(["full body", "road"]).find("A full-body shot on empty roads.")
        ['full body', 'road']
    """

    def __init__(self, phrases: Iterable[str]) -> None:
        self.phrases: list[str] = list(dict.fromkeys(n for n in map(normalise, phrases) if n))
        self._max_words = max((len(p.split()) for p in self.phrases), default=1)
        self._first_words = {p.split()[0] for p in self.phrases}

    def find(self, text: str) -> list[str]:
        """The phrases present in `text`, in the matcher's order."""
        words = normalise(text).split()
        grams: set[str] = set()
        for i, word in enumerate(words):
            if any(w in self._first_words for w in _singulars(word)):
                grams |= _grams_from(words, i, self._max_words)
        return [p for p in self.phrases if p in grams]


@cache
def load_planner_data(name: str) -> dict[str, Any]:
    """Read the JSON asset prompts/planner/<name>.

    Raises:
        PromptError: the file is missing (PlannerDataError when it is not a JSON object).
    """
    text = load_prompt(f"planner/{name}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlannerDataError(f"prompts/planner/{name}: malformed JSON at line {exc.lineno}: {exc.msg}") from None
    if not isinstance(data, dict):
        raise PlannerDataError(f"prompts/planner/{name}: expected a JSON object")
    return data
