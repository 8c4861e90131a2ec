"""The generation prompt: the official [Content] / [Composition] layout, spatial statements first.

Layout (prompts/planner/prompt_layout.j2, the official Qwen-Image LoRA baseline's, portraitcraft-data.md):
an optional LoRA trigger word ("AES_COMP, "), the instruction line, then the two sections.

Spatial reordering (team PCU, methods.md): text-to-image models under-weight position and direction words,
so with `spatial_first` the sentences of each section that make a spatial statement (a term from
prompts/planner/spatial_terms.json: left/right, thirds, foreground/background, facing, gaze, placement...)
move to the front of their section, in their original order, followed by the other sentences in theirs.
No sentence is dropped or changed; the sections keep their places in the layout.

Token estimate (no hub tokenizer is needed or downloaded): the text encoders in use (Qwen2/Qwen3/Qwen2.5-VL
byte-level BPE, ~150k entries) give most English words one token with their leading space, split long
words, write every digit and punctuation mark as its own token. `estimate_tokens` counts one token per
8 letters of each word (rounded up), one per digit, one per punctuation mark, and one per character of
any non-ASCII word. On English prose this lands at or slightly above the real count, so the truncation
warning comes a little early rather than late. The chat template the pipeline adds is not counted.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, Field

from agents.planner.plan_keywords import PhraseMatcher, load_planner_data
from portraitcraft.config import PlannerConfig
from prompts.loader import render_prompt

LAYOUT = "planner/prompt_layout.j2"
SPATIAL_FILE = "spatial_terms.json"

_PIECE = re.compile(r"[^\W\d_]+|\d|[^\w\s]|_")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")


def estimate_tokens(text: str) -> int:
    """Estimated text-encoder tokens of `text` (see the module doc for the rule).

    Example:
        >>> estimate_tokens("A woman stands on the left third.")
        8
    """
    return sum(_piece_tokens(m.group()) for m in _PIECE.finditer(text))


def _piece_tokens(piece: str) -> int:
    if piece.isascii() and piece.isalpha():
        return -(-len(piece) // 8)
    return len(piece) if piece.isalpha() else 1


def truncation_point(text: str, max_tokens: int) -> int | None:
    """The character offset where an encoder limited to `max_tokens` would stop, or None if all fits."""
    total = 0
    for m in _PIECE.finditer(text):
        total += _piece_tokens(m.group())
        if total > max_tokens:
            return m.start()
    return None


def split_sentences(text: str) -> list[str]:
    """Sentences of a paragraph: split after . ! ? when the next sentence starts with a capital or digit.

    Example:
        >>> split_sentences("A man sits. He faces left! Is it dusk?")
        ['A man sits.', 'He faces left!', 'Is it dusk?']
    """
    return [s for s in _SENTENCE_END.split(text.strip()) if s]


class BuiltPrompt(BaseModel):
    """A rendered prompt with its token estimate and any warnings."""

    text: str
    tokens: int = Field(description="estimated text-encoder tokens (estimate_tokens)")
    spatial_sentences: int = Field(0, description="sentences recognised as spatial statements")
    warnings: list[str] = Field(default_factory=list)


class PromptBuilder:
    """Builds the generation prompt from a content and a composition description.

    Args:
        trigger_word (str, optional, defaults to ""): a LoRA trigger word put first ("AES_COMP").
        spatial_first (bool, optional, defaults to True): move spatial statements to the front of each section.
        max_prompt_tokens (int, optional, defaults to 512): the text encoder's limit; over it, a warning.

    Example:
        >>> b = PromptBuilder(trigger_word="AES_COMP")
        >>> b.build("A man on a bench. He faces left.", "Soft light.").text.splitlines()[0]
        'AES_COMP, Generate an image based on the following description.'
    """

    def __init__(self, *, trigger_word: str = "", spatial_first: bool = True, max_prompt_tokens: int = 512) -> None:
        self.trigger_word = trigger_word.strip()
        self.spatial_first = spatial_first
        self.max_prompt_tokens = max_prompt_tokens
        self._spatial = PhraseMatcher(load_planner_data(SPATIAL_FILE)["terms"])

    @classmethod
    def from_config(cls, config: PlannerConfig) -> PromptBuilder:
        """A builder with the planner section's trigger word, spatial_first and max_prompt_tokens."""
        return cls(trigger_word=config.trigger_word, spatial_first=config.spatial_first,
                   max_prompt_tokens=config.max_prompt_tokens)

    def is_spatial(self, sentence: str) -> bool:
        """True when the sentence contains a spatial term."""
        return bool(self._spatial.find(sentence))

    def reorder(self, text: str) -> tuple[str, int]:
        """(text with its spatial sentences first, how many sentences are spatial).

        The text is returned unchanged when no sentence has to move.
        """
        sentences = split_sentences(text)
        flags = [self.is_spatial(s) for s in sentences]
        spatial = [s for s, f in zip(sentences, flags, strict=True) if f]
        reordered = spatial + [s for s, f in zip(sentences, flags, strict=True) if not f]
        if reordered == sentences:
            return text.strip(), len(spatial)
        return " ".join(reordered), len(spatial)

    def build(self, content: str, composition: str) -> BuiltPrompt:
        """Render the prompt; warn when the text encoder would truncate it.

        Args:
            content (str): the content description.
            composition (str): the composition analysis (may be empty for ad-hoc descriptions).
        """
        n_spatial = 0
        content, composition = content.strip(), composition.strip()
        if self.spatial_first:
            content, n_content = self.reorder(content)
            composition, n_composition = self.reorder(composition)
            n_spatial = n_content + n_composition
        text = render_prompt(LAYOUT, trigger_word=self.trigger_word, content=content, composition=composition)
        tokens = estimate_tokens(text)
        warnings = []
        cut = truncation_point(text, self.max_prompt_tokens)
        if cut is not None:
            snippet = " ".join(text[cut:].split()[:8])
            warnings.append(
                f"prompt is ~{tokens} tokens (estimated), over max_prompt_tokens={self.max_prompt_tokens}: "
                f"the text encoder will drop everything from '{snippet}...' on"
            )
        return BuiltPrompt(text=text, tokens=tokens, spatial_sentences=n_spatial, warnings=warnings)
