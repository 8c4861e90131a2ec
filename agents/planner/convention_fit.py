"""Fitting the reading convention of subject-frame sides (`portraitcraft plan fit-convention`).

"Gazing to her left" is the viewer's right under the `strict` reading (a subject facing the camera) and the
viewer's left under the `loose` one; the benchmark's own descriptions often mean the loose one. Only the
train items where the two readings disagree say anything: for each, the vision models (tools.vision.analyze:
pose, face and gaze, all in the viewer's frame) measure the subject's gaze, facing or placement on the item's
real image, and the reading the measurement agrees with gets a vote. The convention with more votes wins
(ties: strict), and the counts are stored in the policy (`CanvasPolicy.convention`) as its evidence.

Items whose image is missing or unreadable, or where no person is found, are counted, not fatal.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from portraitcraft.agents.planner.targets import extract
from portraitcraft.data import load, resolve_image
from portraitcraft.errors import PortraitcraftError

FRAME_KEYS = ("gaze", "facing", "horizontal")
MAX_EXAMPLES = 20


class ConventionVote(BaseModel):
    """One informative statement: what each reading asks and what the image shows."""

    id: str
    key: str
    phrase: str
    strict: str
    loose: str
    measured: str | None
    vote: str = Field(description="strict | loose | neither")


class ConventionReport(BaseModel):
    """The fitted convention and its evidence (stored as `CanvasPolicy.convention`)."""

    value: str = Field(description="strict | loose")
    strict: int = Field(0, description="statements whose image agrees with the strict reading")
    loose: int = Field(0, description="statements whose image agrees with the loose reading")
    neither: int = Field(0, description="statements the image agrees with neither reading (or cannot measure)")
    n_records: int = 0
    informative: int = Field(0, description="items with a statement the two readings read apart")
    analysed: int = 0
    no_person: int = 0
    missing: int = 0
    unreadable: int = 0
    per_key: dict[str, dict[str, int]] = Field(default_factory=dict)
    examples: list[ConventionVote] = Field(default_factory=list)


Analyzer = Callable[[Path], Any]


def fit_convention(train: str | Path, images: str | Path, *, analyze: Analyzer | None = None,
                   limit: int | None = None) -> ConventionReport:
    """Measure which reading of subject-frame sides the train descriptions follow.

    Args:
        train (str | Path): a Track 2 train file (JSON array / JSONL).
        images (str | Path): its image folder (root, then images_00..images_10).
        analyze (callable, optional): image path -> an object with `.subject` (SubjectFeatures or None);
            defaults to portraitcraft.tools.vision.analyze (the real pose/face models).
        limit (int, optional): stop after this many informative items (the analysis is the slow part).
    """
    if analyze is None:
        from portraitcraft.tools.vision import analyze as vision_analyze

        analyze = vision_analyze
    parsed = load(train, "track2", strict=False)
    report = ConventionReport(value="strict", n_records=parsed.n_records)
    per_key: dict[str, dict[str, int]] = {k: {"strict": 0, "loose": 0, "neither": 0} for k in FRAME_KEYS}
    for spec in parsed.items:
        if limit is not None and report.informative >= limit:
            break
        strict = extract(spec.content, spec.composition, convention="strict")
        loose = extract(spec.content, spec.composition, convention="loose")
        keys = [k for k in FRAME_KEYS
                if getattr(strict.targets, k) is not None and getattr(loose.targets, k) is not None
                and getattr(strict.targets, k) != getattr(loose.targets, k)]
        if not keys:
            continue
        report.informative += 1
        path = resolve_image(images, spec.image_path)
        if path is None:
            report.missing += 1
            continue
        try:
            subject = analyze(path).subject
        except (PortraitcraftError, OSError, ValueError):
            report.unreadable += 1
            continue
        report.analysed += 1
        if subject is None:
            report.no_person += 1
            continue
        for key in keys:
            want_strict, want_loose = getattr(strict.targets, key), getattr(loose.targets, key)
            measured = getattr(subject, key, None)
            vote = "strict" if measured == want_strict else "loose" if measured == want_loose else "neither"
            per_key[key][vote] += 1
            setattr(report, vote, getattr(report, vote) + 1)
            if len(report.examples) < MAX_EXAMPLES:
                report.examples.append(ConventionVote(
                    id=spec.id, key=key, phrase=strict.targets.phrases.get(key, ""), strict=want_strict,
                    loose=want_loose, measured=measured, vote=vote))
    report.per_key = {k: v for k, v in per_key.items() if any(v.values())}
    report.value = "loose" if report.loose > report.strict else "strict"
    return report
