"""Composition targets by an LLM (`[vision] targets = "llm" | "hybrid"`), cross-checked by the rules.

Any OpenAI-compatible endpoint (e.g. the critic's vLLM-served model) answers under a structured-output schema
(`LLMTargets`, prompt prompts/planner/targets.j2): per key a value, the VERBATIM quote of the text that states
it and the frame that quote is written in. A quote not found in the content or the composition drops its
target (the model made it up); an invalid value drops it too. `merge_targets` then combines the answer with
the rule extractor's targets:

- "llm": the LLM's targets, with spans where their quotes are;
- "hybrid": rules and LLM agreeing raise the confidence; disagreeing leaves the rules' value unenforced with
  both readings in the evidence note; a value only one side reads keeps that side's evidence (an LLM-only
  value is capped at `LLM_ONLY_CONFIDENCE`, below the default enforce_confidence: nothing cross-checked it).

The planner falls back to the rules when the call fails (agents/planner/role.py).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Literal, get_args

from pydantic import BaseModel, Field

from portraitcraft.agents.planner.targets import KEYS
from portraitcraft.prompts.loader import render_prompt
from portraitcraft.schemas import (
    CompositionTargets,
    CropLevel,
    Direction,
    Horizontal,
    Orientation,
    TargetEvidence,
    TargetFrame,
    TextSection,
    Vertical,
)

if TYPE_CHECKING:
    from portraitcraft.tools.vlm import VLMClient

TARGETS_PROMPT = "planner/targets.j2"
LLM_CONFIDENCE = 0.85
"""Confidence of an LLM target whose quote was found verbatim (llm mode)."""
LLM_ONLY_CONFIDENCE = 0.75
"""Hybrid: the cap on a value only the LLM read (the rules found nothing for that key)."""
AGREE_BONUS = 0.05
"""Hybrid: added to the better of the two confidences when the rules and the LLM agree."""
AMBIGUOUS_CONFIDENCE = 0.5
_VALUES: dict[str, tuple[Any, ...]] = {"horizontal": get_args(Horizontal), "vertical": get_args(Vertical),
                                       "crop_level": get_args(CropLevel), "facing": get_args(Direction),
                                       "gaze": get_args(Direction), "orientation": get_args(Orientation)}
_SPACE = re.compile(r"\s+")


class LLMTarget(BaseModel):
    """One target as the LLM reads it."""

    value: str | int = Field(description="the value, in the viewer's frame (see the prompt's vocabulary)")
    quote: str = Field(description="the exact words of the text that state it, copied verbatim")
    frame: TargetFrame = Field("viewer", description="viewer: the quote names the image side (or needs none); "
                               "subject: the subject's own side, settled by the text; ambiguous: unsettled")


class LLMTargets(BaseModel):
    """The structured answer: each key the text states, else null."""

    horizontal: LLMTarget | None = None
    vertical: LLMTarget | None = None
    crop_level: LLMTarget | None = None
    facing: LLMTarget | None = None
    gaze: LLMTarget | None = None
    orientation: LLMTarget | None = None
    people: LLMTarget | None = None


def find_quote(quote: str, content: str, composition: str) -> tuple[int, int, TextSection] | None:
    """Where `quote` stands verbatim (white space may differ) in the content or the composition, else None.

    Example:
        >>> find_quote("to the  left", "She looks to the left.", "")
        (10, 21, 'content')
    """
    words = [re.escape(w) for w in _SPACE.split(quote.strip()) if w]
    if not words:
        return None
    pattern = re.compile(r"\s+".join(words))
    for section, text in (("content", content), ("composition", composition)):
        m = pattern.search(text)
        if m:
            return m.start(), m.end(), section  # type: ignore[return-value]
    return None


def _valid(key: str, value: str | int) -> Any:
    if key == "people":
        try:
            n = int(value)
        except (TypeError, ValueError):
            return None
        return n if 0 < n <= 50 else None
    return value if value in _VALUES[key] else None


def answer_to_targets(answer: LLMTargets, content: str, composition: str, *,
                      enforce_confidence: float, model: str = "llm") -> CompositionTargets:
    """The LLM's answer as CompositionTargets: quotes checked verbatim, values checked, evidence filled."""
    values: dict[str, Any] = {}
    phrases: dict[str, str] = {}
    evidence: dict[str, TargetEvidence] = {}
    for key in KEYS:
        item: LLMTarget | None = getattr(answer, key)
        if item is None:
            continue
        value = _valid(key, item.value)
        span = find_quote(item.quote, content, composition)
        if value is None or span is None:
            continue
        conf = AMBIGUOUS_CONFIDENCE if item.frame == "ambiguous" else LLM_CONFIDENCE
        values[key], phrases[key] = value, (content if span[2] == "content" else composition)[span[0] : span[1]]
        evidence[key] = TargetEvidence(value=value, spans=[span], frame=item.frame, confidence=conf,
                                       enforced=conf >= enforce_confidence and item.frame != "ambiguous",
                                       source=f"llm: {model}")
    return CompositionTargets(**values, phrases=phrases, evidence=evidence)


async def extract_targets_llm(vlm: VLMClient, content: str, composition: str, *,
                              enforce_confidence: float = 0.8) -> CompositionTargets:
    """The targets the LLM reads from a description, each kept only when its quote is in the text.

    Raises:
        VLMError: the endpoint failed or its answer did not validate (the caller falls back to the rules).
    """
    prompt = render_prompt(TARGETS_PROMPT, content=content, composition=composition)
    answer = await vlm.ask(prompt, schema=LLMTargets)
    model = getattr(getattr(vlm, "cfg", None), "model", "llm")
    return answer_to_targets(answer, content, composition, enforce_confidence=enforce_confidence, model=str(model))


def merge_targets(rules: CompositionTargets, llm: CompositionTargets, *, mode: Literal["llm", "hybrid"],
                  enforce_confidence: float) -> CompositionTargets:
    """Combine the rule extractor's targets with the LLM's (see the module doc for the rules of it).

    Example:
        >>> from portraitcraft.schemas import TargetEvidence as E
        >>> r = CompositionTargets(gaze="left", evidence={"gaze": E(value="left", confidence=0.8, enforced=True)})
        >>> m = CompositionTargets(gaze="right", evidence={"gaze": E(value="right", confidence=0.85, enforced=True)})
        >>> t = merge_targets(r, m, mode="hybrid", enforce_confidence=0.8)
        >>> t.gaze, t.enforced("gaze"), t.evidence["gaze"].note
        ('left', False, 'rules read left, the LLM read right: not enforced')
    """
    if mode == "llm":
        return llm
    values: dict[str, Any] = {}
    phrases: dict[str, str] = {}
    evidence: dict[str, TargetEvidence] = {}
    for key in KEYS:
        rv, lv = getattr(rules, key), getattr(llm, key)
        re_, le = rules.evidence.get(key), llm.evidence.get(key)
        if rv is not None and lv is not None and rv == lv:
            conf = min(0.99, max(re_.confidence if re_ else 0.0, le.confidence if le else 0.0) + AGREE_BONUS)
            ambiguous = (re_ is not None and re_.frame == "ambiguous") and (le is not None and le.frame == "ambiguous")
            spans = sorted({*(re_.spans if re_ else []), *(le.spans if le else [])})
            frame = re_.frame if re_ else "viewer"
            if re_ is not None and re_.frame == "ambiguous" and le is not None and le.frame != "ambiguous":
                frame = le.frame
            evidence[key] = TargetEvidence(
                value=rv, spans=spans, frame=frame, confidence=round(conf, 3),
                enforced=conf >= enforce_confidence and not ambiguous,
                source=f"{re_.source if re_ else 'rules'} + {le.source if le else 'llm'}", note="rules and LLM agree")
            values[key], phrases[key] = rv, rules.phrases.get(key) or llm.phrases.get(key, "")
        elif rv is not None and lv is not None:
            base = re_ or TargetEvidence(value=rv)
            evidence[key] = base.model_copy(update={
                "enforced": False, "note": f"rules read {rv}, the LLM read {lv}: not enforced",
                "spans": sorted({*base.spans, *(le.spans if le else [])})})
            values[key], phrases[key] = rv, rules.phrases.get(key, "")
        elif rv is not None:
            if re_ is not None:
                evidence[key] = re_
            values[key], phrases[key] = rv, rules.phrases.get(key, "")
        elif lv is not None:
            conf = min(LLM_ONLY_CONFIDENCE, le.confidence if le else LLM_ONLY_CONFIDENCE)
            base = le or TargetEvidence(value=lv)
            evidence[key] = base.model_copy(update={"confidence": conf, "enforced": conf >= enforce_confidence,
                                                    "note": "only the LLM read it"})
            values[key], phrases[key] = lv, llm.phrases.get(key, "")
        elif re_ is not None:  # a recorded conflict with no value
            evidence[key] = re_
    return CompositionTargets(**values, phrases={k: v for k, v in phrases.items() if v}, evidence=evidence)
