"""Official Track 1 scoring: SRCC, PLCC, level accuracy, QA accuracy and their mean (the composite).

Matches the challenge report's Table 1 (docs/portraitcraft-data.md):
- SRCC and PLCC between predicted and expert `total_score` (raw Pearson, no logistic fit), over ALL N items.
- Level accuracy: exact matches over all N x 13 ground-truth labels.
- QA accuracy: correct answer letters / N. A train-format ground truth has no questions: `qa_acc` is then
  None and the composite is the mean of the three other metrics (`composite_over` says so).

An unusable prediction never helps the score: predictions are read by the one reader
(`portraitcraft.predictions`, the same one `data submit track1` uses), and by default a file with any
unusable prediction (a NaN, infinite or string total, a bad level or answer, a duplicate, a malformed line)
or any ground-truth item without a prediction is REFUSED, listing every such item. With `allow_invalid`
those items are filled exactly as the submission writer fills them, FIELD BY FIELD (an unusable level -> B,
an unusable total -> the median of the usable totals, an unusable answer -> A; an item with no record at all
gets all three) and scored over all N; the report names them and their fields (`filled`, `filled_fields`).
Items join on `portraitcraft.ids.item_key` (the basename, `\\` normalised).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from portraitcraft.data import parse_items, read_records
from portraitcraft.errors import DataError
from portraitcraft.eval.correlation import correlation
from portraitcraft.ids import item_key
from portraitcraft.predictions import FALLBACK, fill_predictions, read_track1_predictions
from portraitcraft.schemas import ANSWER_LETTERS, ATTRIBUTES, LEVEL_CODES, ItemProblem, Track1Prediction

N_ATTR = len(ATTRIBUTES)
_CODE_INDEX = {code: i for i, code in enumerate(LEVEL_CODES)}
MAX_LISTED = 200
"""How many unusable items a refusal lists in full (the count is always given)."""


@dataclass
class TruthItem:
    """One ground-truth item reduced to what scoring needs: level codes "A"/"B"/"C", total, answer or None."""

    image_path: str
    levels: dict[str, str]
    total_score: float
    answer: str | None


@dataclass
class AttributeStats:
    """Level accuracy of one attribute and its 3x3 confusion matrix (rows: truth A/B/C, columns: prediction)."""

    accuracy: float
    confusion: list[list[int]]


@dataclass
class Track1Report:
    srcc: float
    plcc: float
    level_acc: float
    qa_acc: float | None
    composite: float
    n: int
    n_matched: int
    """Ground-truth items scored with their own usable prediction (the rest were filled)."""
    composite_over: str
    n_filled: int = 0
    filled: list[str] = field(default_factory=list)
    filled_fields: dict[str, list[str]] = field(default_factory=dict)
    """image_path -> the fields filled (`criteria.<attr>`, `total_score`, `answer`; `all` for a missing item)."""
    """Ground-truth items scored with the fallback (missing or unusable prediction; only with allow_invalid)."""
    missing: list[str] = field(default_factory=list)
    """Ground-truth items no prediction record names at all (a subset of `filled`)."""
    extra: list[str] = field(default_factory=list)
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
            "n_filled": self.n_filled,
            "filled": self.filled,
            "filled_fields": self.filled_fields,
            "missing": self.missing,
            "extra": self.extra,
            "ground_truth_problems": self.ground_truth_problems,
            "prediction_problems": self.prediction_problems,
            "warnings": self.warnings,
        }
        if self.per_attribute is not None:
            out["per_attribute"] = {
                name: {"accuracy": s.accuracy, "confusion": s.confusion} for name, s in self.per_attribute.items()
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


def load_ground_truth(source: str | Path | Sequence[Any]) -> tuple[dict[str, TruthItem], bool, list[str]]:
    """Ground truth keyed by `item_key`, whether it has QA answers, and the items left out (and why).

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
    gt: dict[str, TruthItem] = {}
    has_qa = parsed.kind == "track1_test"
    for index, item in zip(parsed.indices, parsed.items, strict=True):
        key = item_key(item.image_path)
        if parsed.kind == "track1_train":
            levels = {a: lv.code for a, lv in item.levels.items()}
            gt[key] = TruthItem(item.image_path, levels, float(item.total_score), None)
            continue
        if any(lv is None for lv in item.levels.values()) or item.answer not in ANSWER_LETTERS:
            problems.append(f"item {index} ({item.image_path}): holds the template placeholder 'x', not labels")
            continue
        levels = {a: lv.code for a, lv in item.levels.items() if lv is not None}
        gt[key] = TruthItem(item.image_path, levels, float(item.total_score), item.answer)
    if not gt:
        why = "every item is an unlabelled template placeholder" if parsed.items else "no valid item"
        raise DataError(f"ground truth {source}: nothing to score against ({why})")
    return gt, has_qa, problems


def score_items(
    preds: Mapping[str, Track1Prediction],
    gt: Mapping[str, TruthItem],
    *,
    has_qa: bool,
    per_attribute: bool = False,
) -> Track1Report:
    """Score complete predictions against ground truth, both keyed by `item_key`.

    Raises:
        ValueError: a ground-truth item has no prediction (decide first: refuse, or `fill_predictions`).
    """
    keys = list(gt)
    n = len(keys)
    absent = [k for k in keys if k not in preds]
    if absent:
        raise ValueError(f"score_items needs a prediction for every item; {len(absent)} have none ({absent[:5]})")
    truth = np.array([[_CODE_INDEX[gt[k].levels[a]] for a in ATTRIBUTES] for k in keys], dtype=np.int8)
    guess = np.array([[_CODE_INDEX[preds[k].levels[a].code] for a in ATTRIBUTES] for k in keys], dtype=np.int8)
    level_acc = float((guess == truth).mean()) if n else 0.0
    xs = [preds[k].total_score for k in keys]
    ys = [gt[k].total_score for k in keys]
    warnings: list[str] = []
    srcc, why_s = correlation(xs, ys, "spearman")
    plcc, why_p = correlation(xs, ys, "pearson")
    warnings += [w for w in (why_s, why_p) if w]
    qa_acc: float | None = None
    if has_qa:
        qa_acc = sum(preds[k].answer == gt[k].answer for k in keys) / n if n else 0.0
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
        n_matched=n,
        composite_over=composite_over,
        warnings=warnings,
    )
    if per_attribute:
        report.per_attribute = attribute_stats(truth, guess)
    return report


def attribute_stats(truth: np.ndarray, guess: np.ndarray) -> dict[str, AttributeStats]:
    """Per-attribute accuracy and confusion from (N, 13) code-index matrices."""
    out: dict[str, AttributeStats] = {}
    for j, name in enumerate(ATTRIBUTES):
        t, g = truth[:, j], guess[:, j]
        confusion = np.zeros((3, 3), dtype=int)
        np.add.at(confusion, (t, g), 1)
        accuracy = float((t == g).mean()) if t.size else 0.0
        out[name] = AttributeStats(accuracy, confusion.tolist())
    return out


def _refusal(source: Any, problems: Sequence[ItemProblem], missing: Sequence[str]) -> DataError:
    n_unusable = len({p.index for p in problems})
    lines = [*map(str, problems), *(f"{path}: no prediction" for path in missing)]
    shown = lines[:MAX_LISTED] + ([f"... and {len(lines) - MAX_LISTED} more"] if len(lines) > MAX_LISTED else [])
    return DataError(
        f"{source}: {n_unusable} unusable prediction(s) and {len(missing)} item(s) without a prediction; "
        "an unusable prediction is never left out of the score. Fix them, or pass --allow-invalid to score "
        f"them as the submission writer fills them (every level {FALLBACK['level']}, answer "
        f"{FALLBACK['answer']}, total the median):\n" + "\n".join(shown)
    )


def score_track1(
    predictions: str | Path | Sequence[Any],
    ground_truth: str | Path | Sequence[Any],
    *,
    per_attribute: bool = False,
    allow_invalid: bool = False,
) -> Track1Report:
    """Score a Track 1 prediction file against a ground truth (see the module docstring).

    Args:
        predictions (path or records): JSON array, JSONL or the submission zip (or records already read).
        ground_truth (path or records): the labelled test file, or a train-format file (no QA).
        per_attribute (bool, optional, defaults to False): add per-attribute accuracy and confusion matrices.
        allow_invalid (bool, optional, defaults to False): fill unusable and missing predictions with the
            submission fallback instead of refusing the file.

    Raises:
        DataError: unreadable files, or (without allow_invalid) any unusable or missing prediction, each
            listed.

    Example:
        >>> report = score_track1("submission.zip", "track_1_test_labels.json")  # doctest: +SKIP
        >>> report.composite  # doctest: +SKIP
        0.8986
    """
    gt, has_qa, gt_problems = load_ground_truth(ground_truth)
    read = read_track1_predictions(predictions, require_answer=has_qa)
    problems = [str(p) for p in read.problems]
    unusable = read.unusable_keys
    missing = [t.image_path for k, t in gt.items() if k not in read.by_key and k not in unusable]
    if (problems or missing) and not allow_invalid:
        source = predictions if isinstance(predictions, str | Path) else "predictions"
        raise _refusal(source, read.problems, missing)
    repair = fill_predictions([(k, t.image_path) for k, t in gt.items()], read.by_key, read.partial)
    filled_paths = list(repair.filled_fields)
    report = score_items(repair.by_key, gt, has_qa=has_qa, per_attribute=per_attribute)
    report.n_matched = report.n - len(filled_paths)
    report.n_filled, report.filled, report.missing = len(filled_paths), filled_paths, missing
    report.filled_fields = repair.filled_fields
    report.extra = sorted(k for k in read.by_key if k not in gt)
    report.ground_truth_problems = gt_problems
    report.prediction_problems = problems
    notes = []
    if gt_problems:
        notes.append(f"{len(gt_problems)} ground-truth items were left out (see ground_truth_problems)")
    if filled_paths:
        notes.append(f"{len(filled_paths)} of {report.n} items had unusable or missing fields, filled field by field "
                     f"(level {FALLBACK['level']}, answer {FALLBACK['answer']}, the median total; see filled_fields)")
    if report.extra:
        notes.append(f"{len(report.extra)} predictions match no ground-truth item (ignored)")
    report.warnings = notes + report.warnings
    return report
