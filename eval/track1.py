"""Official Track 1 scoring: SRCC, PLCC, level accuracy, QA accuracy and their mean (the composite).

Matches the challenge report's Table 1 (docs/portraitcraft-data.md):
- SRCC and PLCC between predicted and expert `total_score` (raw Pearson, no logistic fit). Computed over
  the ground-truth items that have a usable predicted score; the rest are reported as missing/invalid.
- Level accuracy: exact matches over ALL N x 13 ground-truth labels; a missing item or an invalid label is
  wrong.
- QA accuracy: correct answer letters / N (missing = wrong). A train-format ground truth has no questions:
  `qa_acc` is then None and the composite is the mean of the three other metrics (`composite_over` says so).

Items are joined on the image basename. Predictions may be the official submission format
(`criteria: {attr: {"level": "A"}}`), `Track1Prediction` dumps (`levels: {attr: "Good"}`), or train-format
scores (`criteria: {attr: {"score": 6.5}}`, mapped with `Level.from_score`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from eval.correlation import correlation
from portraitcraft.data import MalformedLine, parse_items, read_records
from portraitcraft.errors import DataError
from portraitcraft.schemas import ANSWER_LETTERS, ATTRIBUTES, LEVEL_CODES, Level, level_from_score

N_ATTR = len(ATTRIBUTES)
_CODE_INDEX = {code: i for i, code in enumerate(LEVEL_CODES)}


@dataclass
class Track1Item:
    """One item reduced to what scoring needs. Level codes are "A"/"B"/"C"; None = missing or invalid."""

    image_path: str
    levels: dict[str, str | None]
    total_score: float | None
    answer: str | None


@dataclass
class AttributeStats:
    """Level accuracy of one attribute and its 3x3 confusion matrix (rows: truth A/B/C, columns: prediction)."""

    accuracy: float
    confusion: list[list[int]]
    invalid: int
    """Ground-truth labels whose prediction was missing or invalid (not in the matrix, counted wrong)."""


@dataclass
class Track1Report:
    srcc: float
    plcc: float
    level_acc: float
    qa_acc: float | None
    composite: float
    n: int
    n_matched: int
    composite_over: str
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    invalid_labels: int = 0
    invalid_scores: list[str] = field(default_factory=list)
    invalid_answers: int = 0
    ground_truth_problems: list[str] = field(default_factory=list)
    prediction_problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    per_attribute: dict[str, AttributeStats] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data for `--json` (contract keys: srcc, plcc, level_acc, qa_acc, composite, n)."""
        out: dict[str, Any] = {
            "srcc": self.srcc,
            "plcc": self.plcc,
            "level_acc": self.level_acc,
            "qa_acc": self.qa_acc,
            "composite": self.composite,
            "n": self.n,
            "n_matched": self.n_matched,
            "composite_over": self.composite_over,
            "missing": self.missing,
            "extra": self.extra,
            "duplicates": self.duplicates,
            "invalid_labels": self.invalid_labels,
            "invalid_scores": self.invalid_scores,
            "invalid_answers": self.invalid_answers,
            "ground_truth_problems": self.ground_truth_problems,
            "prediction_problems": self.prediction_problems,
            "warnings": self.warnings,
        }
        if self.per_attribute is not None:
            out["per_attribute"] = {
                name: {"accuracy": s.accuracy, "confusion": s.confusion, "invalid": s.invalid}
                for name, s in self.per_attribute.items()
            }
        return out


def composite_score(srcc: float, plcc: float, level_acc: float, qa_acc: float | None) -> float:
    """The challenge's composite ("Total Score"): the mean of the four metrics.

    Args:
        srcc (float): Spearman correlation of total scores.
        plcc (float): Pearson correlation of total scores.
        level_acc (float): level accuracy over all N x 13 labels.
        qa_acc (float or None): QA accuracy; None (no questions in the ground truth) gives the mean of the
            other three.

    Example:
        >>> round(composite_score(0.923, 0.922, 0.765, 0.985), 4)
        0.8988
    """
    parts = [srcc, plcc, level_acc] + ([] if qa_acc is None else [qa_acc])
    return float(sum(parts) / len(parts))


def _key(image_path: str) -> str:
    return PurePath(image_path.replace("\\", "/")).name


def _level_code(value: Any) -> str | None:
    """A level code from a code/name string, a {"level": ...} or {"score": ...} dict, or a 0-10 number."""
    if isinstance(value, dict):
        if "level" in value:
            value = value["level"]
        elif "score" in value:
            value = value["score"]
        else:
            return None
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return level_from_score(float(value)).code if math.isfinite(value) and 0 <= value <= 10 else None
    if isinstance(value, str):
        try:
            return Level.from_code(value).code
        except ValueError:
            return None
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def prediction_from_record(rec: Mapping[str, Any]) -> Track1Item:
    """Read one prediction leniently: anything unreadable becomes None (scored as wrong), never an error."""
    labels = rec.get("criteria")
    if not isinstance(labels, Mapping):
        labels = rec.get("levels")
    labels = labels if isinstance(labels, Mapping) else {}
    answer = rec.get("answer")
    answer = answer.strip().upper() if isinstance(answer, str) else None
    return Track1Item(
        image_path=str(rec.get("image_path", "")),
        levels={a: _level_code(labels.get(a)) for a in ATTRIBUTES},
        total_score=_number(rec.get("total_score")),
        answer=answer if answer in ANSWER_LETTERS else None,
    )


def load_predictions(source: str | Path | Sequence[Any]) -> tuple[dict[str, Track1Item], list[str], list[str]]:
    """Predictions keyed by image basename, the duplicated keys, and the records that could not be used.

    Args:
        source: a JSON array / JSONL / submission zip path, or already-read records.
    """
    records = read_records(source) if isinstance(source, str | Path) else list(source)
    preds: dict[str, Track1Item] = {}
    duplicates: list[str] = []
    problems: list[str] = []
    for index, rec in enumerate(records):
        if isinstance(rec, MalformedLine):
            problems.append(f"prediction {index}: {rec.message}")
            continue
        if not isinstance(rec, Mapping) or not isinstance(rec.get("image_path"), str) or not rec["image_path"]:
            problems.append(f"prediction {index}: no image_path (expected an object with image_path)")
            continue
        key = _key(rec["image_path"])
        if key in preds:
            duplicates.append(key)
            problems.append(f"prediction {index} ({key}): duplicate image, the first one is scored")
            continue
        preds[key] = prediction_from_record(rec)
    return preds, duplicates, problems


def load_ground_truth(source: str | Path | Sequence[Any]) -> tuple[dict[str, Track1Item], bool, list[str]]:
    """Ground truth keyed by image basename, whether it has QA answers, and the items left out (and why).

    A labelled test file gives levels, total and answer; a train-format file gives levels mapped from its
    0-10 scores with `Level.from_score` and no answers.

    Raises:
        DataError: the file is not Track 1 data, or every item is an unlabelled template placeholder.
    """
    records = read_records(source) if isinstance(source, str | Path) else list(source)
    try:
        parsed = parse_items(records)
    except DataError as exc:  # kind detection does not know the file's name
        raise DataError(f"ground truth {source}: {exc}") from None
    if parsed.kind not in ("track1_train", "track1_test"):
        raise DataError(f"ground truth {source}: expected Track 1 items, found a {parsed.kind} file")
    problems = [str(p) for p in parsed.problems]
    gt: dict[str, Track1Item] = {}
    has_qa = parsed.kind == "track1_test"
    for index, item in zip(parsed.indices, parsed.items, strict=True):
        key = _key(item.image_path)
        if parsed.kind == "track1_train":
            levels = {a: lv.code for a, lv in item.levels.items()}
            gt[key] = Track1Item(item.image_path, levels, float(item.total_score), None)
            continue
        if any(lv is None for lv in item.levels.values()) or item.answer not in ANSWER_LETTERS:
            problems.append(f"item {index} ({item.image_path}): holds the template placeholder 'x', not labels")
            continue
        levels = {a: lv.code for a, lv in item.levels.items() if lv is not None}
        gt[key] = Track1Item(item.image_path, levels, float(item.total_score), item.answer)
    if not gt:
        why = "every item is an unlabelled template placeholder" if parsed.items else "no valid item"
        raise DataError(f"ground truth {source}: nothing to score against ({why})")
    return gt, has_qa, problems


def score_items(
    preds: Mapping[str, Track1Item],
    gt: Mapping[str, Track1Item],
    *,
    has_qa: bool,
    per_attribute: bool = False,
) -> Track1Report:
    """Score predictions against ground truth, both keyed by image basename (see the module docstring)."""
    keys = list(gt)
    n = len(keys)
    missing = [k for k in keys if k not in preds]
    extra = sorted(k for k in preds if k not in gt)
    warnings: list[str] = []
    if missing:
        warnings.append(f"{len(missing)} of {n} ground-truth items have no prediction (scored as wrong)")
    if extra:
        warnings.append(f"{len(extra)} predictions match no ground-truth item (ignored)")

    # Level labels as an (N, 13) code-index matrix; -1 marks a missing/invalid prediction.
    truth = np.array([[_CODE_INDEX[gt[k].levels[a]] for a in ATTRIBUTES] for k in keys], dtype=np.int8)
    guess = np.full((n, N_ATTR), -1, dtype=np.int8)
    for row, k in enumerate(keys):
        p = preds.get(k)
        if p is not None:
            guess[row] = [_CODE_INDEX.get(p.levels.get(a) or "", -1) for a in ATTRIBUTES]
    matched_rows = np.array([k in preds for k in keys], dtype=bool)
    invalid_labels = int((guess[matched_rows] < 0).sum())
    level_acc = float((guess == truth).mean()) if n else 0.0
    if invalid_labels:
        warnings.append(f"{invalid_labels} predicted levels are missing or invalid (scored wrong)")

    paired = [(preds[k].total_score, gt[k].total_score) for k in keys if k in preds]
    invalid_scores = [k for k in keys if k in preds and preds[k].total_score is None]
    if invalid_scores:
        warnings.append(f"{len(invalid_scores)} predictions have no usable total_score (left out of SRCC/PLCC)")
    xs = [p for p, _ in paired if p is not None]
    ys = [t for p, t in paired if p is not None]
    srcc, why_s = correlation(xs, ys, "spearman")
    plcc, why_p = correlation(xs, ys, "pearson")
    warnings += [w for w in (why_s, why_p) if w]

    qa_acc: float | None = None
    invalid_answers = 0
    if has_qa:
        answers = [preds[k].answer if k in preds else None for k in keys]
        invalid_answers = sum(1 for k, a in zip(keys, answers, strict=True) if k in preds and a is None)
        qa_acc = sum(a == gt[k].answer for k, a in zip(keys, answers, strict=True)) / n if n else 0.0
        if invalid_answers:
            warnings.append(f"{invalid_answers} predicted answers are missing or not A-D (scored wrong)")
        composite_over = "srcc, plcc, level_acc, qa_acc"
    else:
        composite_over = "srcc, plcc, level_acc (the ground truth has no questions, so qa_acc is null)"
        warnings.append("the ground truth has no QA answers: qa_acc is null and the composite averages 3 metrics")

    report = Track1Report(
        srcc=srcc,
        plcc=plcc,
        level_acc=level_acc,
        qa_acc=qa_acc,
        composite=composite_score(srcc, plcc, level_acc, qa_acc),
        n=n,
        n_matched=len(paired),
        composite_over=composite_over,
        missing=missing,
        extra=extra,
        invalid_labels=invalid_labels,
        invalid_scores=invalid_scores,
        invalid_answers=invalid_answers,
        prediction_problems=_item_problems(preds, keys, has_qa),
        warnings=warnings,
    )
    if per_attribute:
        report.per_attribute = attribute_stats(truth, guess)
    return report


def _item_problems(preds: Mapping[str, Track1Item], keys: Sequence[str], has_qa: bool) -> list[str]:
    """One line per matched prediction with something unusable, naming the item and the fields."""
    out: list[str] = []
    for k in keys:
        p = preds.get(k)
        if p is None:
            continue
        bad = [a for a in ATTRIBUTES if p.levels.get(a) is None]
        what = []
        if bad:
            shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
            what.append(f"{len(bad)} missing or invalid level(s) ({shown}), scored wrong")
        if p.total_score is None:
            what.append("total_score missing or not a finite number, left out of SRCC/PLCC")
        if has_qa and p.answer is None:
            what.append("answer missing or not one of A-D, scored wrong")
        if what:
            out.append(f"{k}: " + "; ".join(what))
    return out


def attribute_stats(truth: np.ndarray, guess: np.ndarray) -> dict[str, AttributeStats]:
    """Per-attribute accuracy and confusion from (N, 13) code-index matrices (-1 = invalid prediction)."""
    out: dict[str, AttributeStats] = {}
    for j, name in enumerate(ATTRIBUTES):
        t, g = truth[:, j], guess[:, j]
        valid = g >= 0
        confusion = np.zeros((3, 3), dtype=int)
        np.add.at(confusion, (t[valid], g[valid]), 1)
        accuracy = float((t == g).mean()) if t.size else 0.0
        out[name] = AttributeStats(accuracy, confusion.tolist(), int((~valid).sum()))
    return out


def score_track1(
    predictions: str | Path | Sequence[Any],
    ground_truth: str | Path | Sequence[Any],
    *,
    per_attribute: bool = False,
) -> Track1Report:
    """Score a Track 1 prediction file against a ground truth.

    Args:
        predictions (path or records): JSON array, JSONL or the submission zip (or records already read).
        ground_truth (path or records): the labelled test file, or a train-format file (no QA).
        per_attribute (bool, optional, defaults to False): add per-attribute accuracy and confusion matrices.

    Example:
        >>> report = score_track1("submission.zip", "track_1_test_labels.json")  # doctest: +SKIP
        >>> report.composite  # doctest: +SKIP
        0.8986
    """
    gt, has_qa, gt_problems = load_ground_truth(ground_truth)
    preds, duplicates, pred_problems = load_predictions(predictions)
    report = score_items(preds, gt, has_qa=has_qa, per_attribute=per_attribute)
    report.duplicates = duplicates
    report.ground_truth_problems = gt_problems
    report.prediction_problems = pred_problems + report.prediction_problems
    if gt_problems:
        report.warnings.insert(0, f"{len(gt_problems)} ground-truth items were left out (see ground_truth_problems)")
    if duplicates:
        report.warnings.append(f"{len(duplicates)} duplicated predictions (the first of each is scored)")
    return report
