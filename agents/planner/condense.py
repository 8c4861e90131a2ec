"""Fitting a prompt into the text encoder's budget without losing a composition target.

The rules (prompts/planner/condense.json) run offline, in order, until the prompt fits: delete filler words
from sentences that state no target, drop composition sentences that repeat the content, then drop
composition prose: the most generic first (the fewest of the content description's words), sentences with a
spatial term after the plain ones; content sentences (subjects, clothing, colours, objects, setting: what
Track 2's content half is judged on) go only when nothing else is left. A sentence holding a target's
evidence (its phrase from agents/planner/targets.py) is never changed or dropped, so the targets read from
the condensed text are the targets of the original. `content_coverage` measures what was kept.

With a configured LLM (`planner.condense = "llm"`), `condense_llm` asks it (prompts/planner/condense.j2) for
a shorter text and accepts the answer only when it fits and keeps every target; otherwise the rules run.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING

from pydantic import BaseModel

from portraitcraft.agents.planner.plan_keywords import PlannerDataError, load_planner_data, normalise
from portraitcraft.prompts.loader import render_prompt
from portraitcraft.schemas import CompositionTargets

if TYPE_CHECKING:
    from portraitcraft.tools.vlm import VLMClient

CONDENSE_FILE = "condense.json"
CONDENSE_PROMPT = "planner/condense.j2"


@dataclass(frozen=True)
class CondenseRules:
    filler: tuple[re.Pattern[str], ...]
    replacements: tuple[tuple[re.Pattern[str], str], ...]
    repeat_overlap: float
    stopwords: frozenset[str]


@cache
def condense_rules() -> CondenseRules:
    """The compiled condensing rules (cached).

    Raises:
        PlannerDataError: the data file is malformed.
    """
    data = load_planner_data(CONDENSE_FILE)
    try:
        return CondenseRules(
            filler=tuple(re.compile(f, re.IGNORECASE) for f in data["filler"]),
            replacements=tuple((re.compile(k, re.IGNORECASE), str(v)) for k, v in data["filler_replacements"].items()),
            repeat_overlap=float(data["repeat_overlap"]),
            stopwords=frozenset(data["stopwords"]),
        )
    except (KeyError, TypeError, ValueError, re.error) as exc:
        raise PlannerDataError(f"prompts/planner/{CONDENSE_FILE}: malformed ({type(exc).__name__}: {exc})") from None


@dataclass
class Sentence:
    text: str
    section: str  # "content" | "composition"
    protected: bool  # states a target's evidence: never changed or dropped
    spatial: bool = False  # makes a spatial statement: dropped after the plain prose, before content


@dataclass
class Condensed:
    """The condensed sections and what was done to them."""

    content: str
    composition: str
    dropped: list[str] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    """Per dropped sentence its kind: repeat, generic (composition prose with almost no content fact),
    composition (composition prose that repeats some content), content (a content sentence: the last resort)."""


def _content_words(text: str, stopwords: frozenset[str]) -> set[str]:
    return {w for w in normalise(text).split() if w not in stopwords and len(w) > 2}


def _strip_filler(text: str, rules: CondenseRules) -> str:
    out = text
    for pattern in rules.filler:
        out = pattern.sub("", out)
    for pattern, repl in rules.replacements:
        out = pattern.sub(repl, out)
    out = re.sub(r"\s{2,}", " ", out).strip()
    out = re.sub(r"\s+([,.;:!?])", r"\1", out)
    if out and out[0].islower() and text[:1].isupper():
        out = out[0].upper() + out[1:]
    return out


def condense_with_rules(
    content: list[Sentence], composition: list[Sentence], fits: Callable[[str, str], bool]
) -> Condensed:
    """Apply the rules in order until `fits(content, composition)`; protected sentences stay as they are.

    Args:
        content, composition (list[Sentence]): the sections' sentences in prompt order, each marked protected
            when it states a target or a spatial relation.
        fits (callable): whether a (content, composition) pair fits the budget.
    """
    rules = condense_rules()
    result = Condensed("", "")

    def joined() -> tuple[str, str]:
        return " ".join(s.text for s in content if s.text), " ".join(s.text for s in composition if s.text)

    # 1. filler words out of unprotected sentences
    for s in [*content, *composition]:
        if not s.protected:
            stripped = _strip_filler(s.text, rules)
            if stripped != s.text:
                s.text = stripped if re.search(r"[A-Za-z]{3}", stripped) else ""
    result.steps.append("filler")
    if fits(*joined()):
        result.content, result.composition = joined()
        return result
    # 2. composition sentences repeating a content sentence
    seen = [_content_words(s.text, rules.stopwords) for s in content]
    for s in composition:
        words = _content_words(s.text, rules.stopwords)
        if s.protected or not words:
            continue
        if any(len(words & c) / len(words) >= rules.repeat_overlap for c in seen):
            result.dropped.append(s.text)
            result.kinds.append("repeat")
            s.text = ""
    result.steps.append("repeats")
    # 3. unprotected composition sentences, the most generic first (the fewest content words), then content
    #    sentences from the end only when nothing else is left: the content facts are what is judged
    vocab = set().union(*seen) if seen else set()
    ranked = sorted((s for s in composition if s.text and not s.protected),
                    key=lambda s: (s.spatial, content_share(s.text, vocab, rules.stopwords), -composition.index(s)))
    victims = [*ranked, *(s for s in reversed(content) if s.text and not s.protected)]
    for victim in victims:
        if fits(*joined()):
            break
        share = content_share(victim.text, vocab, rules.stopwords)
        result.dropped.append(victim.text)
        result.kinds.append("content" if victim.section == "content" else
                            "generic" if share < GENERIC_SHARE else "composition")
        victim.text = ""
    result.steps.append("drop")
    result.content, result.composition = joined()
    return result


GENERIC_SHARE = 0.25
"""A composition sentence with fewer than this share of its content words found in the content description
is generic prose (it carries no content fact)."""


def content_share(text: str, vocab: set[str], stopwords: frozenset[str]) -> float:
    """The share of `text`'s content words that are in `vocab` (the content description's words)."""
    words = _content_words(text, stopwords)
    return len(words & vocab) / len(words) if words else 0.0


def content_coverage(content: str, prompt: str) -> float:
    """The share of the content description's content words (nouns, colours, materials... every non-stopword
    of 3+ letters) that `prompt` still contains: 1.0 when condensing kept every content fact.

    Example:
        >>> content_coverage("A woman in a red coat.", "A woman in a coat.")
        0.667
    """
    rules = condense_rules()
    want = _content_words(content, rules.stopwords)
    if not want:
        return 1.0
    return round(len(want & _content_words(prompt, rules.stopwords)) / len(want), 3)


class CondensedText(BaseModel):
    """The LLM's answer."""

    content: str
    composition: str


def same_targets(a: CompositionTargets, b: CompositionTargets) -> bool:
    """Equal targets and the same ones enforced, ignoring which words (and offsets) they came from."""
    keys = [k for k in CompositionTargets.model_fields if k not in ("phrases", "evidence")]
    return (a.model_dump(exclude={"phrases", "evidence"}) == b.model_dump(exclude={"phrases", "evidence"})
            and [a.enforced(k) for k in keys] == [b.enforced(k) for k in keys])


async def condense_llm(
    vlm: VLMClient,
    content: str,
    composition: str,
    *,
    budget_words: int,
    targets: CompositionTargets,
    fits: Callable[[str, str], bool],
    read_targets: Callable[[str, str], CompositionTargets],
) -> CondensedText | None:
    """Ask the LLM for a shorter text; None when its answer does not fit or loses or changes a target.

    Args:
        vlm (VLMClient): the configured endpoint (structured output).
        content, composition (str): the sections (already spatial-first).
        budget_words (int): the word budget named in the request.
        targets (CompositionTargets): the original's targets; the answer must read the same.
        fits (callable): whether a (content, composition) pair fits the token budget.
        read_targets (callable): the extractor (with the run's convention).
    """
    words = len((content + " " + composition).split())
    prompt = render_prompt(CONDENSE_PROMPT, budget_words=budget_words, words=words, content=content,
                           composition=composition, must_keep=_must_keep(targets.phrases.values()))
    answer = await vlm.ask(prompt, schema=CondensedText)
    if not fits(answer.content, answer.composition):
        return None
    if not same_targets(read_targets(answer.content, answer.composition), targets):
        return None
    return answer


def _must_keep(phrases: Iterable[str]) -> list[str]:
    out: list[str] = []
    for p in phrases:
        out.extend(x for x in p.split("; ") if x)
    return list(dict.fromkeys(out))

