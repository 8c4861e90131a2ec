"""Calibration of the Track 1 vote on a validation split (methods.md, MSIIP).

- Per-attribute thresholds: the averaged 0-10 sub-scores are cut into Poor / Medium / Good at (t1, t2)
  instead of the benchmark's default (5, 7); each pair is searched on a grid to maximise level accuracy
  (ties go to the pair nearest the default).
- The linear relation overall = a * sum(13 sub-scores) + b, fitted by least squares from the predicted sums
  to the true overall scores (the default is the published 0.86 * sum - 8.92), used by the vote's optional
  consistency step.

`calib.json` holds {"thresholds": {attribute: [t1, t2]}, "linear": [a, b], "r2", "n_items", "report"}.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from portraitcraft.atomic import atomic_write_json
from portraitcraft.errors import DataError
from portraitcraft.ids import item_key
from portraitcraft.schemas import ATTRIBUTES, Level

DEFAULT_THRESHOLDS: tuple[float, float] = (5.0, 7.0)
DEFAULT_LINEAR: tuple[float, float] = (0.86, -8.92)
LEVEL_INDEX = {Level.POOR: 0, Level.MEDIUM: 1, Level.GOOD: 2}
GRID_STEP = 0.05


@dataclass
class Calibration:
    """Fitted per-attribute thresholds and the overall-vs-sum linear relation.

    Example:
        >>> cal = Calibration({"Sharpness": (4.5, 7.5)})
        >>> cal.thresholds_for("Sharpness"), cal.thresholds_for("Color Harmony")
        ((4.5, 7.5), (5.0, 7.0))
    """

    thresholds: dict[str, tuple[float, float]] = field(default_factory=dict)
    linear: tuple[float, float] = DEFAULT_LINEAR
    r2: float | None = None
    n_items: int = 0
    report: dict[str, Any] = field(default_factory=dict)

    def thresholds_for(self, attribute: str) -> tuple[float, float]:
        return tuple(self.thresholds.get(attribute, DEFAULT_THRESHOLDS))  # type: ignore[return-value]

    def to_json(self) -> dict[str, Any]:
        return {"thresholds": {a: list(t) for a, t in self.thresholds.items()}, "linear": list(self.linear),
                "r2": self.r2, "n_items": self.n_items, "report": self.report}

    def save(self, path: str | Path) -> Path:
        return atomic_write_json(path, self.to_json())

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, name: str = "calibration") -> Calibration:
        try:
            thresholds = {}
            for attr, pair in (data.get("thresholds") or {}).items():
                if attr not in ATTRIBUTES:
                    raise ValueError(f"unknown attribute {attr!r}")
                low, high = (float(v) for v in pair)
                if not low <= high:
                    raise ValueError(f"{attr}: thresholds {pair} are not ordered (t1 <= t2)")
                thresholds[attr] = (low, high)
            a, b = (float(v) for v in data.get("linear", DEFAULT_LINEAR))
        except (TypeError, ValueError) as exc:
            raise DataError(f"{name}: not a calibration file ({exc})") from None
        return cls(thresholds, (a, b), data.get("r2"), int(data.get("n_items", 0)), dict(data.get("report", {})))

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(f"{p}: calibration file does not exist") from None
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"{p}: not a readable JSON calibration file ({exc})") from None
        if not isinstance(data, dict):
            raise DataError(f"{p}: a calibration file is a JSON object")
        return cls.from_json(data, name=str(p))


def cut_levels(scores: np.ndarray, thresholds: tuple[float, float]) -> np.ndarray:
    """Level indices (0 Poor, 1 Medium, 2 Good) of scores cut at (t1, t2): s < t1 Poor, s < t2 Medium."""
    low, high = thresholds
    return np.where(scores < low, 0, np.where(scores < high, 1, 2))


def fit_thresholds(scores: Sequence[float], truth: Sequence[int], *, step: float = GRID_STEP,
                   default: tuple[float, float] = DEFAULT_THRESHOLDS) -> tuple[tuple[float, float], float]:
    """The (t1 <= t2) cut points maximising level accuracy, searched on a grid over [0, 10 + step].

    Args:
        scores (sequence of float): predicted 0-10 scores of one attribute.
        truth (sequence of int): true level indices (0 Poor, 1 Medium, 2 Good).
        step (float, optional): the grid step.
        default (tuple, optional): ties are broken towards this pair.

    Returns:
        ((t1, t2), accuracy).

    Example:
        >>> fit_thresholds([1, 2, 4.5, 5, 8, 9], [0, 0, 1, 1, 2, 2])[1]
        1.0
    """
    s = np.asarray(scores, dtype=float)
    y = np.asarray(truth, dtype=int)
    if s.size == 0 or s.size != y.size:
        raise ValueError(f"need as many scores as labels (got {s.size} and {y.size}), at least one")
    grid = np.round(np.arange(0.0, 10.0 + 2 * step, step), 6)
    below = s[None, :] < grid[:, None]  # [g, n]: score below the cut
    poor_below = (below & (y == 0)).sum(axis=1)
    medium_below = (below & (y == 1)).sum(axis=1)
    good_at_or_above = ((~below) & (y == 2)).sum(axis=1)
    # acc(i, j) = poor_below[i] + medium_below[j] - medium_below[i] + good_at_or_above[j], for i <= j
    correct = (poor_below - medium_below)[:, None] + (medium_below + good_at_or_above)[None, :]
    correct = np.where(np.triu(np.ones((grid.size, grid.size), dtype=bool)), correct, -1)
    best = correct.max()
    ii, jj = np.nonzero(correct == best)
    distance = np.abs(grid[ii] - default[0]) + np.abs(grid[jj] - default[1])
    k = int(np.argmin(distance))
    return (float(grid[ii[k]]), float(grid[jj[k]])), float(best) / s.size


def fit_linear(sums: Sequence[float], totals: Sequence[float]) -> tuple[tuple[float, float], float | None]:
    """Least-squares (a, b) of totals = a * sums + b, and R^2 (None when undefined).

    Example:
        >>> (a, b), r2 = fit_linear([10, 20, 30], [0.86 * 10 - 8.92, 0.86 * 20 - 8.92, 0.86 * 30 - 8.92])
        >>> round(a, 2), round(b, 2), round(r2, 3)
        (0.86, -8.92, 1.0)
    """
    x = np.asarray(sums, dtype=float)
    y = np.asarray(totals, dtype=float)
    if x.size < 2 or np.ptp(x) == 0:
        return DEFAULT_LINEAR, None
    a, b = np.polyfit(x, y, 1)
    residual = y - (a * x + b)
    total = ((y - y.mean()) ** 2).sum()
    r2 = None if total == 0 else float(1 - (residual**2).sum() / total)
    return (float(a), float(b)), r2


@dataclass
class CalibrationRow:
    """One validation item: the vote's averaged sub-scores and sum, and the truth."""

    key: str
    means: dict[str, float]
    truth_levels: dict[str, int]
    truth_total: float | None


def _truth_rows(records: Sequence[Any]) -> dict[str, tuple[dict[str, int], float | None]]:
    """Ground truth by `item_key`: train-format scores (cut at 5/7) or labelled test levels."""
    from portraitcraft.data import detect_kind, parse_items

    kind = detect_kind(records)
    if kind not in ("track1_train", "track1_test"):
        raise DataError(f"ground truth must be a Track 1 train or labelled test file, found a {kind} file")
    parsed = parse_items(records, kind)
    out: dict[str, tuple[dict[str, int], float | None]] = {}
    for item in parsed.items:
        levels = {a: LEVEL_INDEX[lv] for a, lv in item.levels.items() if lv is not None}
        total = float(item.total_score) if kind == "track1_train" or not item.is_placeholder else None
        out[item_key(item.image_path)] = (levels, total)
    return out


def join_rows(votes: Sequence[Mapping[str, Any]], truth_records: Sequence[Any]) -> tuple[list[CalibrationRow],
                                                                                         list[str]]:
    """Join votes-file rows (by item key) with the ground truth; returns (rows, problems)."""
    truth = _truth_rows(truth_records)
    rows: list[CalibrationRow] = []
    problems: list[str] = []
    for index, row in enumerate(votes):
        key = item_key(str(row.get("image_path", "")))
        vote = row.get("vote") or {}
        means = vote.get("attribute_means") or {}
        if not key or row.get("status") != "finished" or len(means) != len(ATTRIBUTES):
            problems.append(f"votes row {index} ({key or '?'}): no finished vote with 13 attribute means")
            continue
        if key not in truth:
            problems.append(f"votes row {index} ({key}): not in the ground truth")
            continue
        levels, total = truth[key]
        rows.append(CalibrationRow(key, {a: float(means[a]) for a in ATTRIBUTES}, levels, total))
    return rows, problems


def level_accuracy(rows: Sequence[CalibrationRow], calibration: Calibration | None) -> float:
    """Level accuracy over every (item, attribute) with a true label, cut at the calibration's thresholds."""
    hits = total = 0
    for attr in ATTRIBUTES:
        labelled = [r for r in rows if attr in r.truth_levels]
        if not labelled:
            continue
        scores = np.array([r.means[attr] for r in labelled])
        truth = np.array([r.truth_levels[attr] for r in labelled])
        cut = calibration.thresholds_for(attr) if calibration else DEFAULT_THRESHOLDS
        hits += int((cut_levels(scores, cut) == truth).sum())
        total += truth.size
    return hits / total if total else float("nan")


def fit_calibration(rows: Sequence[CalibrationRow], *, holdout: float = 0.0, seed: int = 0) -> Calibration:
    """Fit thresholds per attribute and the linear relation; with `holdout`, report accuracy on held-out rows.

    Args:
        rows (sequence of CalibrationRow): joined validation items.
        holdout (float, optional): the fraction of rows kept out of the fit to measure it (0 = fit on all).
        seed (int, optional): the shuffle seed of the holdout split.

    Raises:
        DataError: no rows to fit on.
    """
    rows = list(rows)
    if not rows:
        raise DataError("no validation item joins the votes file with the ground truth: nothing to fit on")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_held = round(holdout * len(rows)) if len(rows) > 1 else 0
    held = [rows[i] for i in order[:n_held]]
    fit = [rows[i] for i in order[n_held:]] or held
    thresholds: dict[str, tuple[float, float]] = {}
    per_attribute: dict[str, Any] = {}
    for attr in ATTRIBUTES:
        labelled = [r for r in fit if attr in r.truth_levels]
        if not labelled:
            continue
        pair, acc = fit_thresholds([r.means[attr] for r in labelled], [r.truth_levels[attr] for r in labelled])
        thresholds[attr] = pair
        per_attribute[attr] = {"thresholds": list(pair), "fit_accuracy": acc}
    with_totals = [r for r in fit if r.truth_total is not None]
    linear, r2 = fit_linear([sum(r.means.values()) for r in with_totals], [r.truth_total for r in with_totals])
    cal = Calibration(thresholds, linear, r2, len(fit))
    report: dict[str, Any] = {
        "n_fit": len(fit), "n_holdout": len(held),
        "fit_accuracy_default": level_accuracy(fit, None), "fit_accuracy_calibrated": level_accuracy(fit, cal),
        "per_attribute": per_attribute, "linear_items": len(with_totals),
    }
    if held:
        report["holdout_accuracy_default"] = level_accuracy(held, None)
        report["holdout_accuracy_calibrated"] = level_accuracy(held, cal)
    cal.report = report
    return cal


__all__ = [
    "DEFAULT_LINEAR",
    "DEFAULT_THRESHOLDS",
    "Calibration",
    "CalibrationRow",
    "cut_levels",
    "fit_calibration",
    "fit_linear",
    "fit_thresholds",
    "join_rows",
    "level_accuracy",
]
