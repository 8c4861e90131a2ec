"""The editor: one round's findings -> ONE merged instruction and the action that applies it.

Actions:
- `reframe`: every detected finding is one a crop can fix (placement, vertical position, orientation: the
  geometric rules in `agents.reframe.REFRAMEABLE_RULES`), or a mirror image (a facing / gaze measured on the
  opposite side, `loop.mirror`): mirror and/or crop/pad the image, no model involved;
- `edit`: an instruction edit (Qwen-Image-Edit or img2img) of the current image;
- `regenerate`: a fresh draft with a new seed and the findings turned into spatial-first prompt statements,
  when edits in a row reach `loop.max_edits`, or when the drift guard fires.

Drift guard: after an edit, if the new image has more or heavier findings than the one it was edited from, or
the region-aware metrics (tools/fidelity.py, with the real person mask) show the background or the subject
drifted past the thresholds, the editor reverts to the best image so far and regenerates.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from portraitcraft.config import LoopConfig
from portraitcraft.errors import PortraitcraftError
from portraitcraft.schemas import CompositionTargets, Finding
from portraitcraft.tools.fidelity import edit_drift

Action = Literal["reframe", "edit", "regenerate"]
SOURCE_PRIORITY = {"geometry": 0, "heuristic": 1, "vlm": 2}
DEFAULT_REFRAMEABLE = frozenset({"horizontal", "vertical", "orientation"})
MIRRORABLE = frozenset({"facing", "gaze"})
"""Geometric rules a mirror image fixes when the measured side is the opposite of the expected one."""
MaskOf = Callable[[str], Any]
"""image path -> its person mask (HxW bool array) or None."""


def reframeable_rules() -> frozenset[str]:
    """The geometric rules a crop can fix (agents.reframe.REFRAMEABLE_RULES when the vision part is installed)."""
    try:
        from portraitcraft.agents.reframe import REFRAMEABLE_RULES
    except ImportError:
        return DEFAULT_REFRAMEABLE
    return frozenset(REFRAMEABLE_RULES)


def as_findings(dumps: Sequence[dict[str, Any] | Finding]) -> list[Finding]:
    return [f if isinstance(f, Finding) else Finding.model_validate(f) for f in dumps]


def detected(findings: Sequence[Finding], min_confidence: float) -> list[Finding]:
    return [f for f in findings if f.detected and f.confidence >= min_confidence]


def findings_score(findings: Sequence[Finding], min_confidence: float) -> float:
    """How bad an image is: the sum of severity x confidence over the detected findings (0 = passes)."""
    return float(sum(f.severity * f.confidence for f in detected(findings, min_confidence)))


def _axis(f: Finding, rule_axes: dict[str, str]) -> str:
    """Findings on one axis (the same geometric quantity or the same rule) can contradict each other."""
    return rule_axes.get(f.rule, f.rule)


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def merge_instructions(findings: Sequence[Finding], min_confidence: float,
                       rule_axes: dict[str, str] | None = None) -> tuple[str, list[Finding], list[dict[str, Any]]]:
    """ONE instruction from a round's detected findings.

    Order: severity (highest first), then source (geometry, heuristic, VLM), then confidence. Per axis (a
    geometric quantity such as `horizontal`, which the `placement` rule also judges; else the rule) only the
    first instruction is kept, so two findings can never ask for opposite moves; repeated texts are dropped.

    Returns (instruction, the findings used, the ones dropped with why).
    """
    axes = rule_axes or {}
    ordered = sorted(detected(findings, min_confidence),
                     key=lambda f: (-f.severity, SOURCE_PRIORITY.get(f.source, 3), -f.confidence))
    used: list[Finding] = []
    dropped: list[dict[str, Any]] = []
    seen_axes: dict[str, Finding] = {}
    seen_text: set[str] = set()
    for f in ordered:
        axis = _axis(f, axes)
        text = f.instruction.strip()
        if axis in seen_axes:
            keep = seen_axes[axis]
            why = "duplicate" if _norm(text) == _norm(keep.instruction) else "contradicts or repeats"
            dropped.append({"rule": f.rule, "source": f.source, "why": f"{why} {keep.rule} ({keep.source})"})
            continue
        if not text or _norm(text) in seen_text:
            dropped.append({"rule": f.rule, "source": f.source, "why": "no instruction" if not text else "duplicate"})
            seen_axes[axis] = f
            continue
        seen_axes[axis] = f
        seen_text.add(_norm(text))
        used.append(f)
    parts = [u.instruction.strip().rstrip(".") for u in used]
    return ("; ".join(parts) + "." if parts else ""), used, dropped


@dataclass
class EditPlan:
    """What to do after a failed round."""

    action: Action
    instruction: str
    base_round: int
    reason: str
    rules: list[str] = field(default_factory=list)
    dropped: list[dict[str, Any]] = field(default_factory=list)
    reframe: dict[str, Any] | None = None
    drift: dict[str, Any] | None = None
    prompt: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def best_round(rounds: Sequence[dict[str, Any]], min_confidence: float) -> int:
    """The index of the best critiqued round: passing first, then the lowest findings score, then the
    judge's score when rounds carry one, then the EARLIEST (fewer edits, less drift) -- never simply the last."""
    def key(i: int) -> tuple[float, float, float, int]:
        r = rounds[i]
        found = as_findings(r.get("findings") or [])
        judge = r.get("judge_score")
        return (0.0 if r.get("passed") else 1.0, findings_score(found, min_confidence),
                -(judge if isinstance(judge, int | float) else -math.inf), i)
    candidates = [i for i, r in enumerate(rounds) if r.get("findings") is not None]
    if not candidates:
        return 0
    return min(candidates, key=key)


class Editor:
    """Decides the next action of the loop from the rounds so far (each a results-row history entry).

    Args:
        cfg (LoopConfig): max_edits, drift_guard and its thresholds.
        min_confidence (float): the critic's detection threshold.
        rule_axes (dict, optional): rule id -> the geometric key it also judges (from the rule set), so a VLM
            placement instruction and a geometric horizontal one count as one axis.
        can_edit (bool): whether an edit backend is configured (else edits become regenerations).
        can_reframe (bool): whether a reframer is available (portraitcraft.agents.reframe).
    """

    def __init__(self, cfg: LoopConfig, min_confidence: float, *, rule_axes: dict[str, str] | None = None,
                 can_edit: bool = True, can_reframe: bool = True, reframeable: frozenset[str] | None = None) -> None:
        self.cfg = cfg
        self.min_confidence = min_confidence
        self.rule_axes = rule_axes or {}
        self.can_edit = can_edit
        self.can_reframe = can_reframe
        self.reframeable = reframeable if reframeable is not None else reframeable_rules()

    def drift(self, before: str, after: str, mask: Any) -> dict[str, Any] | None:
        """Region-aware drift of an edit, or None when it stayed within the thresholds (or cannot be measured)."""
        if mask is None:
            return None
        try:
            report = edit_drift(before, after, np.asarray(mask, dtype=bool), resize=True, with_lpips=False)
        except (PortraitcraftError, ValueError) as exc:
            return {"error": str(exc), "drifted": False}
        reasons = []
        if report.psnr_background is not None and report.psnr_background < self.cfg.drift_min_psnr_background:
            reasons.append(f"background PSNR {report.psnr_background:.1f} dB < {self.cfg.drift_min_psnr_background:g}")
        if report.delta_e_person is not None and report.delta_e_person > self.cfg.drift_max_delta_e_person:
            reasons.append(f"person CIEDE2000 {report.delta_e_person:.1f} > {self.cfg.drift_max_delta_e_person:g}")
        if not reasons:
            return None
        return {"drifted": True, "reasons": reasons, "metrics": report.to_dict()}

    def decide(self, rounds: Sequence[dict[str, Any]], targets: CompositionTargets, *, prompt: str,
               mask_of: MaskOf | None = None, path_of: Callable[[str], str] = str) -> EditPlan:
        """The next action after the last round failed.

        Args:
            rounds: history entries so far, each {image, findings, action, ...}; the last one was just critiqued.
            targets: the description's composition targets (reframe goals and regeneration statements).
            prompt: the plan's generation prompt (a regeneration puts the findings' statements first).
            mask_of: image path -> person mask for the fidelity part of the drift guard.
            path_of: a round's image path -> a readable file path (rounds hold run-folder-relative paths).
        """
        k = len(rounds) - 1
        last = rounds[k]
        found = as_findings(last.get("findings") or [])
        instruction, used, dropped = merge_instructions(found, self.min_confidence, self.rule_axes)
        rules = [f.rule for f in used]
        best = best_round(rounds, self.min_confidence)
        if k > 0 and rounds[k - 1].get("action") == "edit" and self.cfg.drift_guard:
            prev = rounds[k - 1]
            worse = findings_score(found, self.min_confidence) > findings_score(
                as_findings(prev.get("findings") or []), self.min_confidence) or len(detected(
                    found, self.min_confidence)) > len(detected(as_findings(prev.get("findings") or []),
                                                                self.min_confidence))
            fidelity = self.drift(path_of(prev["image"]), path_of(last["image"]), mask_of(prev["image"])) \
                if mask_of else None
            if worse or (fidelity and fidelity.get("drifted")):
                why = "the edit left more or heavier findings" if worse else "; ".join(fidelity["reasons"])  # type: ignore[index]
                base = best_round(rounds[:k], self.min_confidence)
                base_found = as_findings(rounds[base].get("findings") or [])
                _, base_used, _ = merge_instructions(base_found, self.min_confidence, self.rule_axes)
                return EditPlan("regenerate", instruction, base, f"drift guard: {why}; reverted to round {base}",
                                rules=[f.rule for f in base_used], dropped=dropped,
                                drift=fidelity or {"drifted": False, "worse_findings": True},
                                prompt=self.regeneration_prompt(prompt, base_used, targets))
        mirror = self._mirror_fixes(found, used)
        if self.can_reframe and used and all((f.source == "geometry" and f.rule in self.reframeable)
                                             or (mirror and f.rule in MIRRORABLE) for f in used) and \
                not self._reframe_failed_on(last):
            goal = {k: getattr(targets, k) if targets.enforced(k) else None  # never steer by an unenforced target
                    for k in ("horizontal", "vertical", "orientation")} | {"mirror": mirror}
            why = ("a mirror image fixes the left/right facing or gaze (text and the subject's own sides mirror "
                   "too), a crop the rest") if mirror else "every detected finding is one a crop can fix"
            return EditPlan("reframe", instruction, k, why, rules=rules, dropped=dropped, reframe=goal)
        edits_in_a_row = 0
        for r in reversed(rounds[:k]):
            if r.get("action") != "edit":
                break
            edits_in_a_row += 1
        if not self.can_edit or edits_in_a_row >= self.cfg.max_edits:
            why = "no editor configured" if not self.can_edit else f"{edits_in_a_row} edits in a row"
            return EditPlan("regenerate", instruction, best, f"{why}: a fresh draft from the findings",
                            rules=rules, dropped=dropped, prompt=self.regeneration_prompt(prompt, used, targets))
        return EditPlan("edit", instruction, k, "an instruction edit of the current image", rules=rules,
                        dropped=dropped)

    def _mirror_fixes(self, found: Sequence[Finding], used: Sequence[Finding]) -> bool:
        """Whether mirroring the picture fixes a detected left/right facing or gaze without breaking another
        left/right measurement that is right now (`loop.mirror`)."""
        if not self.cfg.mirror:
            return False
        sided = [f for f in found if f.source == "geometry" and f.rule in MIRRORABLE and f.confidence >=
                 self.min_confidence and {f.expected, f.measured} <= {"left", "right"} and f.expected != f.measured]
        kept = [f for f in found if f.source == "geometry" and f.rule in MIRRORABLE and not f.detected
                and f.measured in ("left", "right")]
        return bool(sided) and not kept and all(f in sided for f in used if f.rule in MIRRORABLE)

    @staticmethod
    def _reframe_failed_on(entry: dict[str, Any]) -> bool:
        """A reframe is not tried again on an image that came from a reframe or where one already failed."""
        return bool(entry.get("reframe_error")) or entry.get("made_by") == "reframe"

    @staticmethod
    def regeneration_prompt(prompt: str, used: Sequence[Finding], targets: CompositionTargets) -> str:
        """Spatial statements first: the description's own phrase for each failed geometric key (else the
        finding's instruction), then the plan's prompt."""
        statements: list[str] = []
        for f in used:
            phrase = targets.phrases.get(f.rule) if f.source == "geometry" else None
            text = (phrase or f.instruction).strip().rstrip(".")
            if text and text not in statements:
                statements.append(text)
        return ". ".join([*statements, prompt]) if statements else prompt


__all__ = ["EditPlan", "Editor", "best_round", "findings_score", "merge_instructions", "reframeable_rules"]
