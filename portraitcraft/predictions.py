"""The one Track 1 prediction reader, and the one fallback for items without a usable prediction.

`read_track1_predictions` feeds both `portraitcraft data submit track1` and `portraitcraft eval track1`, so a
file submits and scores the same. Accepted record shapes (all keyed by `item_key(image_path)`):

- the official submission shape: `criteria: {attr: {"level": "A"}}` (also `{attr: "A"}`);
- `Track1Prediction` dumps: `levels: {attr: "Good"}` (codes or names, any case);
- train-shaped scores: `criteria: {attr: {"score": 6.5}}`, mapped with the benchmark's level rule.

A record is usable only when it is complete: all 13 attributes with a valid level, a finite numeric
`total_score` in 0-100 (a string is not a number), and an answer A-D (any case). Anything else, a duplicate
of an earlier item, or a malformed JSONL line is an `ItemProblem` naming the item; nothing is dropped
silently. What happens to unusable and missing items is the caller's choice: refuse, or `fill_predictions`:
an unusable record that names its item is repaired FIELD BY FIELD (only the unusable levels become B, an
unusable total the median of the usable totals, an unusable answer A; the rest is kept), and an item with no
record at all gets `FALLBACK` whole (every level B, answer A, the median total, 50 when there are none).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from portraitcraft.data import MalformedLine, problems_from_validation, read_records
from portraitcraft.ids import earlier_duplicate, item_key
from portraitcraft.schemas import (
    ANSWER_LETTERS,
    ATTRIBUTES,
    ImagePath,
    ItemProblem,
    LevelField,
    Track1Prediction,
    level_from_score,
)

FALLBACK = {"level": "B", "answer": "A"}
"""Used for an item with no usable prediction when the caller allows it: every attribute Medium (B),
answer A, total_score the median of the usable predicted totals (50 when there are none)."""
FALLBACK_TOTAL = 50


@dataclass
class Track1Predictions:
    """Usable predictions keyed by item key (the first of duplicates), and one problem per unusable record."""

    by_key: dict[str, Track1Prediction] = field(default_factory=dict)
    problems: list[ItemProblem] = field(default_factory=list)
    n_records: int = 0
    partial: dict[str, PartialPrediction] = field(default_factory=dict)
    """Unusable records that still name their item: the fields that ARE usable, for a field-by-field repair."""

    @property
    def unusable_keys(self) -> set[str]:
        """Keys named by a problem record that have no usable prediction."""
        return {item_key(p.image_path) for p in self.problems if p.image_path} - set(self.by_key)


@dataclass
class PartialPrediction:
    """What is usable in a prediction record that failed validation; None marks an unusable field."""

    image_path: str
    levels: dict[str, str | None]
    total_score: float | None
    answer: str | None

    def unusable_fields(self) -> list[str]:
        """The fields a repair fills, named as in the file (`criteria.Sharpness`, `total_score`, `answer`)."""
        out = [f"criteria.{name}" for name, level in self.levels.items() if level is None]
        return out + [name for name in ("total_score", "answer") if getattr(self, name) is None]


_LEVEL = TypeAdapter(LevelField)
_IMAGE_PATH = TypeAdapter(ImagePath)


def _salvage(rec: Mapping[str, Any], require_answer: bool) -> PartialPrediction | None:
    """The usable fields of a record that failed validation (None when it names no usable image_path)."""
    try:
        image_path = _IMAGE_PATH.validate_python(rec.get("image_path"))
    except ValidationError:
        return None
    shaped = _prediction_record(rec, require_answer)
    labels = shaped.get("levels") if isinstance(shaped.get("levels"), Mapping) else {}
    levels: dict[str, str | None] = {}
    for name in ATTRIBUTES:
        try:
            levels[name] = _LEVEL.validate_python(labels[name]).code if name in labels else None
        except (ValidationError, TypeError):
            levels[name] = None
    total = shaped.get("total_score")
    usable_total = isinstance(total, int | float) and not isinstance(total, bool) and math.isfinite(total) \
        and 0 <= total <= 100
    answer = shaped.get("answer")
    return PartialPrediction(image_path, levels, float(total) if usable_total else None,
                             answer if answer in ANSWER_LETTERS else None)


def _label(value: Any) -> Any:
    """A level code from `{"level": x}`, `{"score": s}` or a bare value; anything else passes on to fail."""
    if isinstance(value, Mapping):
        if "level" in value:
            return value["level"]
        if "score" in value:
            score = value["score"]
            if isinstance(score, int | float) and not isinstance(score, bool) and math.isfinite(score) \
                    and 0 <= score <= 10:
                return level_from_score(float(score)).code
            return f"score {score!r}"
    return value


def _prediction_record(rec: Mapping[str, Any], require_answer: bool) -> dict[str, Any]:
    out = {k: rec[k] for k in ("image_path", "total_score", "answer", "scores") if k in rec}
    if not require_answer and "answer" not in out:
        out["answer"] = FALLBACK["answer"]  # never scored: the ground truth has no questions
    labels = rec["levels"] if "levels" in rec else rec.get("criteria")
    if isinstance(labels, Mapping):
        out["levels"] = {name: _label(v) for name, v in labels.items()}
    elif labels is not None:
        out["levels"] = labels
    if isinstance(out.get("answer"), str):
        out["answer"] = out["answer"].strip().upper()
    return out


def parse_track1_predictions(records: Sequence[Any], *, require_answer: bool = True) -> Track1Predictions:
    """Validate prediction records (see the module docstring), listing every unusable one.

    Args:
        records (sequence): the records as read.
        require_answer (bool, optional, defaults to True): False when the answers are never used (a
            ground truth without questions): a record without `answer` is then usable.
    """
    out = Track1Predictions(n_records=len(records))
    seen: dict[str, int] = {}
    for index, rec in enumerate(records):
        if not isinstance(rec, Mapping):
            problem = rec.message if isinstance(rec, MalformedLine) else \
                f"expected a JSON object, got {type(rec).__name__}"
            out.problems.append(ItemProblem(index, "", "item", problem))
            continue
        image_path = rec.get("image_path") if isinstance(rec.get("image_path"), str) else ""
        try:
            pred = Track1Prediction.model_validate(_prediction_record(rec, require_answer))
        except ValidationError as exc:
            out.problems.extend(problems_from_validation(exc, index, image_path))
            partial = _salvage(rec, require_answer)
            if partial is not None:
                out.partial.setdefault(item_key(partial.image_path), partial)
            continue
        earlier = earlier_duplicate(seen, pred.image_path, index)
        if earlier is not None:
            out.problems.append(ItemProblem(index, pred.image_path, "image_path",
                                            f"duplicate of prediction {earlier} (the first one is used)"))
            continue
        out.by_key[item_key(pred.image_path)] = pred
    return out


def read_track1_predictions(source: str | Path | Sequence[Any], *, require_answer: bool = True) -> Track1Predictions:
    """Read predictions from a JSON array, JSONL or submission zip path (or records already read)."""
    records = read_records(source) if isinstance(source, str | Path) else list(source)
    return parse_track1_predictions(records, require_answer=require_answer)


def fallback_total(totals: Iterable[float]) -> float:
    """The fallback total: the median of the given usable totals, rounded; 50 when there are none."""
    values = list(totals)
    return float(round(statistics.median(values))) if values else float(FALLBACK_TOTAL)


@dataclass
class FilledPredictions:
    """One prediction per item after the repair, and what was filled.

    `filled` lists the items with no usable field at all (every field from `FALLBACK`); `filled_fields`
    maps each repaired item's image_path to the fields that were filled (`["all"]` for a filled item).
    """

    by_key: dict[str, Track1Prediction]
    filled: list[str]
    filled_fields: dict[str, list[str]]


def fill_predictions(
    items: Sequence[tuple[str, str]], by_key: Mapping[str, Track1Prediction],
    partial: Mapping[str, PartialPrediction] | None = None,
) -> FilledPredictions:
    """One prediction per `(key, image_path)` item: the usable one; else the record repaired field by field
    (an unusable level -> B, an unusable total -> the median of the usable totals, an unusable answer -> A:
    what the official metric counts wrong is only that field); else, with no record, `FALLBACK` whole.
    """
    partial = {k: v for k, v in (partial or {}).items() if k not in by_key}
    keys = {k for k, _ in items}
    total = fallback_total([by_key[k].total_score for k in keys if k in by_key]
                           + [p.total_score for k, p in partial.items() if k in keys and p.total_score is not None])
    out = FilledPredictions({}, [], {})
    for key, image_path in items:
        pred = by_key.get(key)
        if pred is None and key in partial:
            part = partial[key]
            pred = Track1Prediction(
                image_path=image_path,
                levels={a: part.levels[a] or FALLBACK["level"] for a in ATTRIBUTES},
                total_score=total if part.total_score is None else part.total_score,
                answer=part.answer or FALLBACK["answer"])
            out.filled_fields[image_path] = part.unusable_fields()
        elif pred is None:
            pred = Track1Prediction(image_path=image_path, levels=dict.fromkeys(ATTRIBUTES, FALLBACK["level"]),
                                    total_score=total, answer=FALLBACK["answer"])
            out.filled.append(image_path)
            out.filled_fields[image_path] = ["all"]
        out.by_key[key] = pred
    return out


__all__ = [
    "FALLBACK",
    "FilledPredictions",
    "PartialPrediction",
    "Track1Predictions",
    "fallback_total",
    "fill_predictions",
    "parse_track1_predictions",
    "read_track1_predictions",
]
