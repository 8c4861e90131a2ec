"""Correlations that never crash on degenerate input: shared by Track 1 scoring and judge calibration.

A correlation is undefined when either side is constant or has fewer than two values; the benchmark's
scorer would then give nothing useful, so we score it 0 and say why instead of returning NaN.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
from scipy import stats

Method = Literal["spearman", "pearson", "kendall"]


def correlation(x: Sequence[float], y: Sequence[float], method: Method) -> tuple[float, str | None]:
    """A correlation coefficient and, when it is undefined, 0.0 with the reason.

    Args:
        x (sequence of float): predictions.
        y (sequence of float): references, same length as x.
        method (str): "spearman" (SRCC, average ranks for ties), "pearson" (PLCC) or "kendall" (tau-b).

    Example:
        >>> correlation([1, 2, 3], [1, 2, 2], "spearman")[0]
        0.8660254037844387
        >>> correlation([5, 5, 5], [1, 2, 3], "pearson")
        (0.0, 'pearson: the predictions are constant, so the correlation is undefined (scored 0)')
    """
    a = np.asarray(x, dtype=float)
    b = np.asarray(y, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"correlation needs two sequences of one length (got {a.size} and {b.size})")
    if a.size < 2:
        return 0.0, f"{method}: fewer than 2 paired values, so the correlation is undefined (scored 0)"
    for side, values in (("predictions", a), ("references", b)):
        if np.all(values == values[0]):
            return 0.0, f"{method}: the {side} are constant, so the correlation is undefined (scored 0)"
    func = {"spearman": stats.spearmanr, "pearson": stats.pearsonr, "kendall": stats.kendalltau}[method]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = float(func(a, b).statistic)
    if not math.isfinite(value):
        return 0.0, f"{method}: the correlation is not finite (scored 0)"
    return value, None
