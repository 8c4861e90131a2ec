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
warning comes a little early rather than late. When the model's own tokenizer is on disk (a local model
folder, or the hub cache; nothing is downloaded), `load_token_counter` counts with it instead.

Budget: an over-budget prompt is condensed (agents/planner/condense.py: filler, repeats, generic composition
prose, spatial composition prose, content last; never a target's evidence), and `BuiltPrompt` reports the
tokens before and after and the kind of each dropped sentence.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, Field

from portraitcraft.agents.planner.condense import Sentence, condense_with_rules
from portraitcraft.agents.planner.plan_keywords import PhraseMatcher, load_planner_data, normalise
from portraitcraft.config import PlannerConfig
from portraitcraft.prompts.loader import render_prompt
from portraitcraft.schemas import CompositionTargets

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


class TokenCounter(Protocol):
    """Counts text-encoder tokens and finds where a limit cuts a text."""

    name: str

    def count(self, text: str) -> int: ...

    def cut(self, text: str, max_tokens: int) -> int | None: ...


class EstimateCounter:
    """The hub-free estimate of the module doc."""

    name = "estimate"

    def count(self, text: str) -> int:
        return estimate_tokens(text)

    def cut(self, text: str, max_tokens: int) -> int | None:
        return truncation_point(text, max_tokens)


class TokenizerCounter:
    """A `tokenizers` tokenizer.json (the model's own BPE), no special tokens added."""

    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_file(str(path))
        self.name = f"tokenizer {path}"

    def count(self, text: str) -> int:
        return len(self._tok.encode(text, add_special_tokens=False).ids)

    def cut(self, text: str, max_tokens: int) -> int | None:
        enc = self._tok.encode(text, add_special_tokens=False)
        return None if len(enc.ids) <= max_tokens else enc.offsets[max_tokens][0]


def load_token_counter(model: str | None) -> TokenCounter:
    """The model's own tokenizer when its tokenizer.json is on disk (a local folder, or the hub cache; nothing
    is downloaded) and the `tokenizers` package is installed; else the estimate.

    Example:
        >>> load_token_counter(None).name
        'estimate'
    """
    for path in _tokenizer_files(model):
        try:
            return TokenizerCounter(path)
        except (ImportError, OSError, ValueError, RuntimeError):  # no package, or an unreadable file
            continue
    return EstimateCounter()


def _tokenizer_files(model: str | None) -> list[Path]:
    if not model:
        return []
    local = Path(model).expanduser()
    if local.is_dir():
        return [p for p in (local / "tokenizer" / "tokenizer.json", local / "tokenizer.json") if p.is_file()]
    if local.exists() or model.count("/") != 1:
        return []
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - a core dependency
        return []
    found = []
    for name in ("tokenizer/tokenizer.json", "tokenizer.json"):
        try:
            hit = try_to_load_from_cache(model, name)
        except Exception:
            hit = None
        if isinstance(hit, str):
            found.append(Path(hit))
    return found


class BuiltPrompt(BaseModel):
    """A rendered prompt with its token counts and what was done to fit it."""

    text: str
    tokens: int = Field(description="text-encoder tokens of `text` (the builder's counter)")
    tokens_before: int = Field(0, description="tokens before condensing (= tokens when nothing was condensed)")
    budget: int = Field(0, description="the token budget it was built for")
    counter: str = Field("estimate", description="how tokens were counted: 'estimate' or the tokenizer file")
    spatial_sentences: int = Field(0, description="sentences recognised as spatial statements")
    condensed: list[str] = Field(default_factory=list, description="condensing steps applied, in order")
    dropped: list[str] = Field(default_factory=list, description="sentences condensing dropped")
    dropped_kinds: list[str] = Field(default_factory=list, description="per dropped sentence its kind: repeat, "
                                     "generic, composition or content (agents/planner/condense.py)")
    warnings: list[str] = Field(default_factory=list)


class PromptBuilder:
    """Builds the generation prompt from a content and a composition description.

    Args:
        trigger_word (str, optional, defaults to ""): a LoRA trigger word put first ("AES_COMP").
        spatial_first (bool, optional, defaults to True): move spatial and target statements to the front of
            each section.
        max_prompt_tokens (int, optional, defaults to 512): the text encoder's budget.
        condense ("off" | "rules" | "llm", optional, defaults to "rules"): what to do over budget ("llm" is
            run by the planner's async path; here it means the rules).
        counter (TokenCounter, optional): how tokens are counted; defaults to the estimate.

    Example:
        >>> b = PromptBuilder(trigger_word="AES_COMP")
        >>> b.build("A man on a bench. He faces left.", "Soft light.").text.splitlines()[0]
        'AES_COMP, Generate an image based on the following description.'
    """

    def __init__(self, *, trigger_word: str = "", spatial_first: bool = True, max_prompt_tokens: int = 512,
                 condense: Literal["off", "rules", "llm"] = "rules", counter: TokenCounter | None = None) -> None:
        self.trigger_word = trigger_word.strip()
        self.spatial_first = spatial_first
        self.max_prompt_tokens = max_prompt_tokens
        self.condense = condense
        self.counter: TokenCounter = counter or EstimateCounter()
        self._spatial = PhraseMatcher(load_planner_data(SPATIAL_FILE)["terms"])

    @classmethod
    def from_config(cls, config: PlannerConfig, *, max_prompt_tokens: int | None = None,
                    counter: TokenCounter | None = None) -> PromptBuilder:
        """A builder with the planner section's settings; the budget is `max_prompt_tokens` (the backend's, from
        Planner.from_config), else the section's, else 512."""
        budget = config.max_prompt_tokens or max_prompt_tokens or 512
        return cls(trigger_word=config.trigger_word, spatial_first=config.spatial_first, max_prompt_tokens=budget,
                   condense=config.condense, counter=counter)

    def is_spatial(self, sentence: str) -> bool:
        """True when the sentence contains a spatial term."""
        return bool(self._spatial.find(sentence))

    def is_key(self, sentence: str, phrases: Iterable[str] = ()) -> bool:
        """True when the sentence is spatial or contains one of the target phrases."""
        norm = normalise(sentence)
        return self.is_spatial(sentence) or any(p and normalise(p) in norm for p in phrases)

    def reorder(self, text: str, phrases: Iterable[str] = ()) -> tuple[str, int]:
        """(text with its spatial and target sentences first, how many sentences are spatial).

        The text is returned unchanged when no sentence has to move.
        """
        phrases = list(phrases)
        sentences = split_sentences(text)
        flags = [self.is_key(s, phrases) for s in sentences]
        first = [s for s, f in zip(sentences, flags, strict=True) if f]
        reordered = first + [s for s, f in zip(sentences, flags, strict=True) if not f]
        n_spatial = sum(self.is_spatial(s) for s in sentences)
        if reordered == sentences:
            return text.strip(), n_spatial
        return " ".join(reordered), n_spatial

    def render(self, content: str, composition: str) -> str:
        return render_prompt(LAYOUT, trigger_word=self.trigger_word, content=content, composition=composition)

    def fits(self, content: str, composition: str) -> bool:
        return self.counter.count(self.render(content, composition)) <= self.max_prompt_tokens

    def arrange(self, content: str, composition: str,
                targets: CompositionTargets | None = None) -> tuple[str, str, int]:
        """(content, composition, spatial sentence count) after the spatial-first reordering (the sentences
        naming the people are not moved for that alone)."""
        phrases = _phrases(targets, skip=("people",))
        content, composition = content.strip(), composition.strip()
        if not self.spatial_first:
            return content, composition, 0
        content, n_content = self.reorder(content, phrases)
        composition, n_composition = self.reorder(composition, phrases)
        return content, composition, n_content + n_composition

    def build(self, content: str, composition: str, targets: CompositionTargets | None = None) -> BuiltPrompt:
        """Render the prompt; condense it when over budget; warn when the encoder would still truncate it.

        Args:
            content (str): the content description.
            composition (str): the composition analysis (may be empty for ad-hoc descriptions).
            targets (CompositionTargets, optional): the description's targets: their sentences are kept first
                and never condensed away.
        """
        content, composition, n_spatial = self.arrange(content, composition, targets)
        return self.finish(content, composition, n_spatial, targets)

    def finish(self, content: str, composition: str, n_spatial: int, targets: CompositionTargets | None,
               *, tokens_before: int | None = None, steps: list[str] | None = None) -> BuiltPrompt:
        """Condense (rules) if needed and wrap up; `tokens_before`/`steps` carry an earlier step's record."""
        text = self.render(content, composition)
        before = self.counter.count(text) if tokens_before is None else tokens_before
        tokens = self.counter.count(text)
        condensed, dropped, kinds = list(steps or []), [], []
        if tokens > self.max_prompt_tokens and self.condense != "off":
            phrases = _phrases(targets)
            sections = [[Sentence(s, name, any(p in s for p in phrases), self.is_spatial(s))
                         for s in split_sentences(t)]
                        for name, t in (("content", content), ("composition", composition))]
            result = condense_with_rules(*sections, fits=self.fits)
            content, composition = result.content, result.composition
            condensed += [f"rules:{step}" for step in result.steps]
            dropped, kinds = result.dropped, result.kinds
            text = self.render(content, composition)
            tokens = self.counter.count(text)
        warnings = []
        cut = self.counter.cut(text, self.max_prompt_tokens)
        if cut is not None:
            snippet = " ".join(text[cut:].split()[:8])
            estimated = " (estimated)" if self.counter.name == "estimate" else ""
            warnings.append(
                f"prompt is ~{tokens} tokens{estimated}, over max_prompt_tokens={self.max_prompt_tokens}: "
                f"the text encoder will drop everything from '{snippet}...' on"
            )
        return BuiltPrompt(text=text, tokens=tokens, tokens_before=before, budget=self.max_prompt_tokens,
                           counter=self.counter.name, spatial_sentences=n_spatial, condensed=condensed,
                           dropped=dropped, dropped_kinds=kinds, warnings=warnings)


def _phrases(targets: CompositionTargets | None, skip: tuple[str, ...] = ()) -> list[str]:
    if targets is None:
        return []
    return [part for k, p in targets.phrases.items() if k not in skip for part in p.split("; ") if part]
