"""How well a judge agrees with human raters: Spearman, Kendall (tau-b), Pearson and MAE per score.

The judge CSV is `portraitcraft eval track2 --out` (image_path, content, composition, auto, ...); the human
CSV has image_path and `score` (one overall rating per row, several raters averaged) and optionally
content/composition/auto. "overall" pairs the judge's auto (or score) with the human score (or auto); each
of content/composition/auto present in BOTH files is compared as a sub-score as well.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from portraitcraft.errors import DataError
from portraitcraft.eval.correlation import correlation
from portraitcraft.eval.score_tables import ScoreTable, read_score_csv

SUB_SCORES: tuple[str, ...] = ("content", "composition", "auto")
JUDGE_OVERALL: tuple[str, ...] = ("auto", "score")
HUMAN_OVERALL: tuple[str, ...] = ("score", "auto")


@dataclass
class Agreement:
    """Agreement between paired judge and human scores."""

    judge_column: str
    human_column: str
    n: int
    spearman: float
    kendall: float
    pearson: float
    mae: float | None
    warnings: list[str] = field(default_factory=list)


@dataclass
class CalibrationReport:
    overall: Agreement | None
    per_score: dict[str, Agreement]
    n_judge: int
    n_human: int
    only_in_judge: list[str]
    only_in_human: list[str]
    problems: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "overall": asdict(self.overall) if self.overall else None,
            "per_score": {k: asdict(v) for k, v in self.per_score.items()},
            "n_judge": self.n_judge,
            "n_human": self.n_human,
            "only_in_judge": self.only_in_judge,
            "only_in_human": self.only_in_human,
            "problems": self.problems,
        }


def agreement(judge: dict[str, float], human: dict[str, float], judge_column: str, human_column: str) -> Agreement:
    """Agreement over the images scored on both sides (dicts keyed by image basename).

    Example:
        >>> a = agreement({"x": 10.0, "y": 20.0, "z": 30.0}, {"x": 12.0, "y": 18.0, "z": 35.0}, "auto", "score")
        >>> a.spearman, a.mae
        (1.0, 3.0)
    """
    keys = sorted(set(judge) & set(human))
    x = [judge[k] for k in keys]
    y = [human[k] for k in keys]
    out: dict[str, float] = {}
    warnings: list[str] = []
    for method in ("spearman", "kendall", "pearson"):
        out[method], why = correlation(x, y, method)
        if why:
            warnings.append(why)
    mae = float(np.mean(np.abs(np.subtract(x, y)))) if keys else None
    return Agreement(judge_column, human_column, len(keys), out["spearman"], out["kendall"], out["pearson"], mae,
                     warnings)


def _examples(ids: set[str]) -> str:
    return ", ".join(sorted(ids)[:3]) or "none"


def _first(table: ScoreTable, names: tuple[str, ...]) -> str | None:
    return next((n for n in names if n in table.columns), None)


def calibrate(judge_csv: str | Path, human_csv: str | Path) -> CalibrationReport:
    """Compare a judge's scores with human scores (see the module docstring for the column rules).

    Args:
        judge_csv (str | Path): the judge's per-image scores (`eval track2 --out`).
        human_csv (str | Path): human ratings, several rows per image allowed.

    Raises:
        DataError: unreadable CSVs, no score column the two files share, or no image scored in both.

    Example:
        >>> calibrate("judge.csv", "human.csv").overall.spearman  # doctest: +SKIP
        0.71
    """
    judge = read_score_csv(judge_csv, (*SUB_SCORES, "score"))
    human = read_score_csv(human_csv, ("score", *SUB_SCORES))
    overall = None
    j_col, h_col = _first(judge, JUDGE_OVERALL), _first(human, HUMAN_OVERALL)
    if j_col and h_col:
        overall = agreement(judge.column(j_col), human.column(h_col), j_col, h_col)
    per_score = {
        col: agreement(judge.column(col), human.column(col), col, col)
        for col in SUB_SCORES
        if col in judge.columns and col in human.columns
    }
    if overall is None and not per_score:
        raise DataError(
            f"{judge_csv} ({', '.join(judge.columns)}) and {human_csv} ({', '.join(human.columns)}) "
            "share no score column to compare"
        )
    judge_ids = {k for col in judge.columns for k in judge.column(col)}
    human_ids = {k for col in human.columns for k in human.column(col)}
    if not judge_ids & human_ids:
        raise DataError(
            f"{judge_csv} ({len(judge_ids)} images) and {human_csv} ({len(human_ids)} images) share no image "
            f"with scores to compare (images are matched by file name; e.g. {_examples(judge_ids)} vs "
            f"{_examples(human_ids)})"
        )
    return CalibrationReport(
        overall=overall,
        per_score=per_score,
        n_judge=len(judge_ids),
        n_human=len(human_ids),
        only_in_judge=sorted(judge_ids - human_ids),
        only_in_human=sorted(human_ids - judge_ids),
        problems=judge.problems + human.problems,
    )
