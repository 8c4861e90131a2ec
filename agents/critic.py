"""The critic: an image + its description + a rule set -> `Finding`s and a verdict.

Three sources, run concurrently:
- the VLM, asked every applicable rule (prompts/rules/*.md): one request per rule, or `batch_size` rules per
  request; in `logprob` mode a yes/no answer whose token probabilities give the confidence;
- the geometric critic (real pose / mask / gaze measurements vs the description's targets);
- model-free heuristics (tools/image_checks.py: sharpness, clipping, horizon tilt).

Where the VLM and a CONFIDENT geometric measurement judge the same rule (placement, facing, gaze, crop level,
people count, orientation), geometry decides and the disagreement is recorded. The image passes when no
finding is detected at or above `min_confidence`. A failed VLM call is recorded, never fatal.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, Field

from portraitcraft.config import CriticConfig
from portraitcraft.errors import PortraitcraftError
from portraitcraft.prompts.loader import render_prompt
from portraitcraft.prompts.rules import Rule
from portraitcraft.schemas import CompositionTargets, Finding
from portraitcraft.tools.image_checks import measure, verdicts

VIEWER_FRAME_GEOMETRY = {"horizontal", "facing", "gaze"}
Analyze = Callable[[str | Path], Any]
"""image path -> an Analysis (portraitcraft.tools.vision.analyze)."""
GeometryCritic = Callable[[CompositionTargets, Any], list[Finding]]
"""(targets, analysis) -> geometric findings (portraitcraft.agents.geometry_critic.critique_geometry)."""


class RuleVerdict(BaseModel):
    """The VLM's answer for one rule."""

    detected: bool
    evidence: str = Field("", max_length=400)
    instruction: str = Field("", max_length=400)


class RuleVerdictWithId(RuleVerdict):
    rule: str


class BatchVerdicts(BaseModel):
    """The VLM's answer for several rules at once."""

    verdicts: list[RuleVerdictWithId]


class VLM(Protocol):
    """What the critic needs of portraitcraft.tools.vlm.VLMClient."""

    async def ask(self, prompt: str, images: Sequence[Any] = (), *, schema: type[Any], system: str | None = None,
                  **kwargs: Any) -> Any: ...

    async def choice_probs(self, prompt: str, images: Sequence[Any] = (), *, choices: Sequence[str],
                           system: str | None = None, samples_if_no_logprobs: int = 8, **kwargs: Any) -> Any: ...


@dataclass
class Critique:
    """One image's critique.

    Attributes:
        findings: the effective findings (geometry where it decided, VLM elsewhere, heuristics).
        passed: no finding detected at or above the threshold.
        disagreements: VLM vs geometry conflicts, each {rule, geometry, vlm_detected, geometry_detected,
            decided_by, expected, measured}.
        failures: checks that could not run, each {source, rule, error}.
        vlm_calls / vlm_seconds: requests made for this image and their summed latency.
        analysis: the vision measurements (`Analysis.to_json()`) or None; heuristics: the raw measurements.
    """

    findings: list[Finding]
    passed: bool
    disagreements: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    vlm_calls: int = 0
    vlm_seconds: float = 0.0
    analysis: dict[str, Any] | None = None
    heuristics: dict[str, Any] | None = None
    analysis_object: Any = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {"findings": [f.model_dump(mode="json") for f in self.findings], "passed": self.passed,
                "disagreements": self.disagreements, "failures": self.failures, "vlm_calls": self.vlm_calls,
                "vlm_seconds": round(self.vlm_seconds, 4), "analysis": self.analysis, "heuristics": self.heuristics}


def detected_findings(findings: Sequence[Finding], min_confidence: float) -> list[Finding]:
    """The findings that count: detected with at least `min_confidence`."""
    return [f for f in findings if f.detected and f.confidence >= min_confidence]


def merge_findings(
    vlm: Sequence[Finding], geometry: Sequence[Finding], heuristic: Sequence[Finding], rules: Sequence[Rule], *,
    geometry_min_confidence: float,
) -> tuple[list[Finding], list[dict[str, Any]]]:
    """Combine the three sources: a confident geometric finding replaces the VLM's verdict on its rule.

    Returns (effective findings, disagreements).
    """
    by_id = {r.id: r for r in rules}
    geo = {f.rule: f for f in geometry}
    effective: list[Finding] = list(geometry)
    disagreements: list[dict[str, Any]] = []
    for finding in vlm:
        rule = by_id.get(finding.rule)
        measured = geo.get(rule.geometry) if rule is not None and rule.geometry else None
        if measured is None or measured.confidence < geometry_min_confidence:
            effective.append(finding)
            continue
        if measured.detected != finding.detected:
            disagreements.append({
                "rule": finding.rule, "geometry": measured.rule, "vlm_detected": finding.detected,
                "vlm_confidence": finding.confidence, "geometry_detected": measured.detected,
                "geometry_confidence": measured.confidence, "decided_by": "geometry",
                "expected": measured.expected, "measured": measured.measured, "vlm_evidence": finding.evidence,
            })
    effective.extend(heuristic)
    return effective, disagreements


class Critic:
    """Critiques images against a rule set with a VLM (optional), the geometric critic and heuristics.

    Args:
        rules (list[Rule]): the rule set (portraitcraft.prompts.rules.load_rules).
        cfg (CriticConfig): thresholds, mode, batch size, which sources run.
        vlm (VLM, optional): a portraitcraft.tools.vlm.VLMClient; None (or cfg.enabled False) = no VLM.
        analyze (callable, optional): image -> Analysis; defaults to portraitcraft.tools.vision.analyze when importable.
        geometry (callable, optional): (targets, analysis) -> findings; defaults to
            portraitcraft.agents.geometry_critic.critique_geometry when importable.

    Example:
        >>> critic = Critic(load_rules(), cfg.critic, vlm=client)                      # doctest: +SKIP
        >>> critique = await critic.critique("round_0.png", content, composition, targets)  # doctest: +SKIP
    """

    def __init__(self, rules: Sequence[Rule], cfg: CriticConfig, *, vlm: VLM | None = None,
                 analyze: Analyze | None = None, geometry: GeometryCritic | None = None) -> None:
        self.rules = list(rules)
        self.cfg = cfg
        self.vlm = vlm if cfg.enabled else None
        self.analyze = analyze
        self.geometry = geometry
        self.by_geometry = {r.geometry: r for r in self.rules if r.geometry}
        self.by_heuristic = {r.heuristic: r for r in self.rules if r.heuristic}
        self.geometry_note: str | None = None
        if cfg.geometry and (analyze is None or geometry is None):
            self._default_geometry()
        self._system = render_prompt("critic/system.md")

    def _default_geometry(self) -> None:
        try:
            from portraitcraft.agents.geometry_critic import critique_geometry
            from portraitcraft.tools.vision import analyze
        except ImportError as exc:  # the vision extra (mediapipe / rtmlib) is not installed
            self.geometry_note = f"geometric critic unavailable ({exc})"
            return
        self.analyze = self.analyze or analyze
        self.geometry = self.geometry or critique_geometry

    def applicable(self, targets: CompositionTargets | None, content: str, composition: str) -> list[Rule]:
        text = f"{content}\n{composition}"
        return [r for r in self.rules if r.applies(targets, text)]

    async def critique(self, image: str | Path, content: str, composition: str,
                       targets: CompositionTargets | None) -> Critique:
        """Critique one image file. Never raises for a failed check: it lands in `failures`."""
        rules = self.applicable(targets, content, composition)
        failures: list[dict[str, Any]] = []
        timing: dict[str, float] = {"calls": 0, "seconds": 0.0}
        vlm_task = self._ask_vlm(str(image), content, composition, targets, rules, failures, timing)
        geo_task = self._geometry(str(image), targets or CompositionTargets(), failures)
        heur_task = self._heuristics(str(image), rules, failures)
        vlm_findings, (geo_findings, analysis), (heur_findings, measured) = await asyncio.gather(
            vlm_task, geo_task, heur_task)
        findings, disagreements = merge_findings(vlm_findings, geo_findings, heur_findings, self.rules,
                                                 geometry_min_confidence=self.cfg.geometry_min_confidence)
        passed = not detected_findings(findings, self.cfg.min_confidence)
        return Critique(findings=findings, passed=passed, disagreements=disagreements, failures=failures,
                        vlm_calls=int(timing["calls"]), vlm_seconds=timing["seconds"],
                        analysis=analysis.to_json() if analysis is not None and hasattr(analysis, "to_json") else None,
                        heuristics=measured, analysis_object=analysis)

    # ------------------------------------------------------------------ sources

    async def _geometry(self, image: str, targets: CompositionTargets,
                        failures: list[dict[str, Any]]) -> tuple[list[Finding], Any]:
        if not self.cfg.geometry or self.analyze is None or self.geometry is None:
            if self.cfg.geometry and self.geometry_note:
                failures.append({"source": "geometry", "rule": "*", "error": self.geometry_note})
            return [], None
        try:
            analysis = await asyncio.to_thread(self.analyze, image)
            found = self.geometry(targets, analysis)
        except (PortraitcraftError, OSError, ValueError, RuntimeError) as exc:
            failures.append({"source": "geometry", "rule": "*", "error": f"{type(exc).__name__}: {exc}"})
            return [], None
        return [self._complete(f, self.by_geometry.get(f.rule), targets) for f in found], analysis

    async def _heuristics(self, image: str, rules: Sequence[Rule],
                          failures: list[dict[str, Any]]) -> tuple[list[Finding], dict[str, Any] | None]:
        if not self.cfg.heuristics:
            return [], None
        try:
            checks = await asyncio.to_thread(measure, image)
        except (PortraitcraftError, OSError, ValueError) as exc:
            failures.append({"source": "heuristic", "rule": "*", "error": f"{type(exc).__name__}: {exc}"})
            return [], None
        active = {r.id for r in rules}
        out: list[Finding] = []
        for v in verdicts(checks, min_sharpness=self.cfg.min_sharpness, max_clipped=self.cfg.max_clipped,
                          max_tilt_deg=self.cfg.max_tilt_deg):
            rule = self.by_heuristic.get(v.check)
            if rule is None or rule.id not in active:
                continue
            out.append(Finding(rule=rule.id, detected=v.detected, confidence=v.confidence, evidence=v.evidence,
                               expected=v.threshold, measured=v.measured, source="heuristic",
                               severity=rule.severity,
                               instruction=rule.render_instruction(measured=v.measured, evidence=v.evidence)
                               if v.detected else ""))
        return out, checks.to_json()

    async def _ask_vlm(self, image: str, content: str, composition: str, targets: CompositionTargets | None,
                       rules: Sequence[Rule], failures: list[dict[str, Any]],
                       timing: dict[str, float]) -> list[Finding]:
        if self.vlm is None or not rules:
            return []
        if self.cfg.mode == "logprob" or self.cfg.batch_size == 1:
            asks = [self._ask_one(image, content, composition, targets, r) for r in rules]
            groups = [[r] for r in rules]
        else:
            groups = [list(rules[i:i + self.cfg.batch_size]) for i in range(0, len(rules), self.cfg.batch_size)]
            asks = [self._ask_batch(image, content, composition, targets, g) for g in groups]
        results = await asyncio.gather(*(self._timed(a, timing) for a in asks), return_exceptions=True)
        out: list[Finding] = []
        for group, result in zip(groups, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result
                for r in group:
                    failures.append({"source": "vlm", "rule": r.id, "error": f"{type(result).__name__}: {result}"})
                continue
            found, missing = result
            out.extend(found)
            for rule_id in missing:
                failures.append({"source": "vlm", "rule": rule_id, "error": "the batched reply had no verdict"})
        return out

    @staticmethod
    async def _timed(call: Awaitable[Any], timing: dict[str, float]) -> Any:
        start = time.perf_counter()
        try:
            return await call
        finally:
            timing["calls"] += 1
            timing["seconds"] += time.perf_counter() - start

    async def _ask_one(self, image: str, content: str, composition: str, targets: CompositionTargets | None,
                       rule: Rule) -> tuple[list[Finding], list[str]]:
        assert self.vlm is not None
        if self.cfg.mode == "logprob":
            prompt = render_prompt("critic/rule_yesno.md", rule=rule, content=content, composition=composition)
            dist = await self.vlm.choice_probs(prompt, [image], choices=["yes", "no"], system=self._system,
                                               samples_if_no_logprobs=1)
            p_yes = float(dist.probs.get("yes", 0.0))
            detected = p_yes >= 0.5
            verdict = RuleVerdict(detected=detected, evidence=f"P(yes) = {p_yes:.3f} ({dist.source})")
            return [self._finding(rule, verdict, targets, p_yes if detected else 1 - p_yes)], []
        prompt = render_prompt("critic/rule.md", rule=rule, content=content, composition=composition)
        verdict = await self.vlm.ask(prompt, [image], schema=RuleVerdict, system=self._system)
        return [self._finding(rule, verdict, targets, 1.0)], []

    async def _ask_batch(self, image: str, content: str, composition: str, targets: CompositionTargets | None,
                         rules: Sequence[Rule]) -> tuple[list[Finding], list[str]]:
        assert self.vlm is not None
        prompt = render_prompt("critic/batch.md", rules=rules, content=content, composition=composition)
        reply = await self.vlm.ask(prompt, [image], schema=BatchVerdicts, system=self._system)
        got = {v.rule: v for v in reply.verdicts}
        found = [self._finding(r, got[r.id], targets, 1.0) for r in rules if r.id in got]
        return found, [r.id for r in rules if r.id not in got]

    # ------------------------------------------------------------------ finding assembly

    def _finding(self, rule: Rule, verdict: RuleVerdict, targets: CompositionTargets | None,
                 confidence: float) -> Finding:
        expected = getattr(targets, rule.geometry, None) if targets is not None and rule.geometry in \
            CompositionTargets.model_fields else None
        instruction = ""
        if verdict.detected:
            instruction = verdict.instruction.strip() or rule.render_instruction(
                expected=expected, phrase=_phrase(targets, rule), evidence=verdict.evidence or None)
        return Finding(rule=rule.id, detected=verdict.detected, confidence=round(min(max(confidence, 0.0), 1.0), 4),
                       evidence=verdict.evidence, expected=expected, instruction=instruction, source="vlm",
                       severity=rule.severity,
                       frame="viewer" if rule.geometry in VIEWER_FRAME_GEOMETRY or rule.category == "chirality"
                       else None)

    @staticmethod
    def _complete(finding: Finding, rule: Rule | None, targets: CompositionTargets) -> Finding:
        """Fill a geometric finding's severity and (when detected and empty) its instruction from its rule."""
        if rule is None:
            return finding
        update: dict[str, Any] = {"severity": rule.severity}
        if finding.detected and not finding.instruction:
            update["instruction"] = rule.render_instruction(expected=finding.expected, measured=finding.measured,
                                                            phrase=_phrase(targets, rule), evidence=finding.evidence)
        return finding.model_copy(update=update)


def _phrase(targets: CompositionTargets | None, rule: Rule) -> str | None:
    if targets is None or not rule.geometry:
        return None
    return targets.phrases.get(rule.geometry)


__all__ = ["BatchVerdicts", "Critic", "Critique", "RuleVerdict", "detected_findings", "merge_findings"]
