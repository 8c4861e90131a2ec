"""The geometric critic: composition targets vs what the vision models measured -> findings.

Exact where a VLM guesses: placement, crop level, facing, gaze, people and orientation are compared in the
VIEWER's frame (`frame="viewer"`), with the expected and measured values in each finding and an edit
instruction worded from prompts/geometry/instructions.json. Only targets that are set produce a finding
(detected True or False); a picture with no person gets the one finding `subject`.

Enforcement gate: a target whose evidence is not enforced (below `[vision] enforce_confidence`, an ambiguous
frame, a rules/LLM disagreement: agents/planner/targets.py) is never checked: it gets a finding that is not
detected, with confidence 0 (so it decides nothing) and evidence saying "not enforced" and why, so the report
and `inspect` show it.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from portraitcraft.prompts.loader import load_prompt
from portraitcraft.schemas import CompositionTargets, Finding
from portraitcraft.tools.vision.analysis import Analysis
from portraitcraft.tools.vision.composition import LOWER_CUT, UPPER_CUT

RULES: tuple[str, ...] = ("horizontal", "vertical", "crop_level", "facing", "gaze", "people", "orientation")
"""The geometric rule keys, in the order findings are returned (then `subject` when no person is seen)."""
SQUARE_TOLERANCE = 0.05
"""Width/height within 1 +- this is square."""
SEVERITY = {"subject": 5, "horizontal": 4, "people": 4, "crop_level": 3, "facing": 3, "gaze": 3, "vertical": 3,
            "orientation": 2}


@functools.cache
def _instructions() -> dict[str, Any]:
    return json.loads(load_prompt("geometry/instructions.json"))


def instruction(rule: str, expected: str | int) -> str:
    """The edit instruction that asks for `expected` on `rule` (viewer's frame).

    Example:
        >>> instruction("horizontal", "left").startswith("Move the subject to the left third")
        True
    """
    text = _instructions()[rule]
    if rule == "people":
        return text.format(n=expected, persons="person" if expected == 1 else "people")
    return text if isinstance(text, str) else text[str(expected)]


def orientation_of(width: int, height: int) -> str:
    ratio = width / height
    return "square" if abs(ratio - 1) <= SQUARE_TOLERANCE else "landscape" if ratio > 1 else "portrait"


def _margin_confidence(value: float) -> float:
    """Far from the 5/12 and 7/12 cuts -> sure; on a cut -> a coin toss."""
    margin = min(abs(value - LOWER_CUT), abs(value - UPPER_CUT))
    return min(1.0, 0.55 + 4.0 * margin)


def critique_geometry(targets: CompositionTargets, analysis: Analysis) -> list[Finding]:
    """Compare each set target with the measured features.

    Args:
        targets (CompositionTargets): what the description asks (None fields are not checked).
        analysis (Analysis): `portraitcraft.tools.vision.analyze` of the image.

    Returns:
        list[Finding]: one per set target (rule = the target key; `source="geometry"`), plus `subject` when no
        person is found. Confidence shrinks with the subject's keypoint visibility.

    Example:
        >>> from portraitcraft.tools.vision.analysis import Analysis
        >>> [f.rule for f in critique_geometry(CompositionTargets(horizontal="left"), Analysis(64, 64, [], None, None))]
        ['subject']
    """
    out: list[Finding] = [_not_enforced(key, targets) for key in RULES
                          if getattr(targets, key) is not None and not targets.enforced(key)]
    targets = targets.model_copy(update={key: None for key in RULES if not targets.enforced(key)})
    if targets.orientation is not None:
        measured = orientation_of(analysis.width, analysis.height)
        out.append(_finding("orientation", targets.orientation, measured, 1.0, targets,
                            f"the image is {analysis.width}x{analysis.height} ({measured})"))
    subject = analysis.subject
    if subject is None:
        if targets.people is not None and targets.people > 0:
            out.append(_finding("people", targets.people, 0, 0.8, targets, "no person found"))
        out.append(Finding(rule="subject", detected=True, confidence=0.8, evidence="no person found by the pose, "
                           "face or mask models", expected="a person", measured="none", frame="viewer",
                           instruction=instruction("subject", ""), source="geometry", severity=SEVERITY["subject"]))
        return _ordered(out)
    seen = 0.5 + 0.5 * analysis.keypoint_visibility()
    if targets.horizontal is not None:
        x = subject.centroid[0]
        out.append(_finding("horizontal", targets.horizontal, subject.horizontal,
                            seen * _margin_confidence(x), targets,
                            f"subject centroid at x={x:.2f} of the width (left < 0.42 < center < 0.58 < right)"))
    if targets.vertical is not None:
        y = subject.face_center[1] if subject.face_center else subject.centroid[1]
        what = "face centre" if subject.face_center else "centroid"
        out.append(_finding("vertical", targets.vertical, subject.vertical,
                            seen * _margin_confidence(y), targets,
                            f"subject {what} at y={y:.2f} of the height (upper < 0.42 < middle < 0.58 < lower)"))
    if targets.crop_level is not None:
        out.append(_measured_or_unknown("crop_level", targets.crop_level, subject.crop_level, 0.85 * seen, targets,
                                        f"joints in frame show a {subject.crop_level} shot",
                                        "too few joints seen to tell the crop level"))
    if targets.facing is not None:
        out.append(_measured_or_unknown("facing", targets.facing, subject.facing, 0.75 * seen, targets,
                                        f"shoulders, nose and head turn read {subject.facing}",
                                        "neither shoulders nor head turn measurable"))
    if targets.gaze is not None:
        face = analysis.face
        how = ("irises between the eye corners and head yaw" if face is not None and face.source == "mesh"
               else "head yaw (irises not resolved)")
        conf = 0.75 if face is not None and face.source == "mesh" else 0.55
        out.append(_measured_or_unknown("gaze", targets.gaze, subject.gaze, conf, targets,
                                        f"{how} read {subject.gaze}", "no face seen: gaze not measured"))
    if targets.people is not None:
        conf = 0.7 if analysis.backend == "mediapipe" else 0.85
        out.append(_finding("people", targets.people, subject.people, conf, targets,
                            f"{subject.people} found ({analysis.people_note})"))
    return _ordered(out)


def _not_enforced(rule: str, targets: CompositionTargets) -> Finding:
    """The finding of a target the critic does not enforce: shown, never detected, deciding nothing."""
    ev = targets.evidence.get(rule)
    why = (f"confidence {ev.confidence:.2f}, frame {ev.frame}" + (f"; {ev.note}" if ev.note else "")) if ev else ""
    phrase = targets.phrases.get(rule)
    return Finding(rule=rule, detected=False, confidence=0.0,
                   evidence=f"not enforced ({why})" + (f'; asked by "{phrase}"' if phrase else ""),
                   expected=getattr(targets, rule), measured=None, frame="viewer", instruction="", source="geometry",
                   severity=SEVERITY[rule])


def _ordered(findings: list[Finding]) -> list[Finding]:
    order = {r: i for i, r in enumerate((*RULES, "subject"))}
    return sorted(findings, key=lambda f: order.get(f.rule, len(order)))


def _finding(rule: str, expected: str | int, measured: str | int, confidence: float, targets: CompositionTargets,
             evidence: str) -> Finding:
    phrase = targets.phrases.get(rule)
    detected = expected != measured
    return Finding(
        rule=rule, detected=detected, confidence=round(max(0.0, min(1.0, confidence)), 3),
        evidence=evidence + (f'; asked by "{phrase}"' if phrase else ""),
        expected=expected, measured=measured, frame="viewer",
        instruction=instruction(rule, expected) if detected else "",
        source="geometry", severity=SEVERITY[rule],
    )


def _measured_or_unknown(rule: str, expected: str, measured: str | None, confidence: float,
                         targets: CompositionTargets, evidence: str, unknown: str) -> Finding:
    if measured is None:  # cannot be measured: not a violation, and said with little confidence
        finding = _finding(rule, expected, expected, 0.2, targets, unknown)
        return finding.model_copy(update={"measured": None})
    return _finding(rule, expected, measured, confidence, targets, evidence)
