"""Paired statistics for `portraitcraft compare`: the exact McNemar test and seeded paired bootstrap intervals.

Every function takes per-item values of two runs on the SAME items (index i is one item in both), so the
item-to-item variation cancels: a real gain shows up with far fewer items than two independent samples need.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_BOOT = 10_000
"""Bootstrap resamples (`compare --boot`)."""
_CHUNK = 2_000
"""Resamples drawn at once (bounds memory at 2,000 x n item indices)."""


@dataclass(frozen=True)
class Tally:
    """Per-item outcomes of run B against run A: B better (wins), equal (ties), worse (losses)."""

    wins: int
    ties: int
    losses: int


def tally(a: Sequence[float], b: Sequence[float], *, higher_is_better: bool = True) -> Tally:
    """Count the items where B beats, ties or loses to A.

    Example:
        >>> tally([0, 1, 1, 0], [1, 1, 0, 1])
        Tally(wins=2, ties=1, losses=1)
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = (y - x) if higher_is_better else (x - y)
    return Tally(int((diff > 0).sum()), int((diff == 0).sum()), int((diff < 0).sum()))


def mcnemar_exact(a_passed: Sequence[bool], b_passed: Sequence[bool]) -> float:
    """Two-sided exact McNemar p-value: a binomial test of the discordant pairs against 1/2.

    Only items where exactly one run passed carry information; with none the p-value is 1.

    Example:
        >>> mcnemar_exact([False] * 3, [True] * 3)  # B passes 3 items A failed, loses none
        0.25
    """
    from scipy.stats import binomtest  # here: scipy.stats takes seconds to import

    x, y = np.asarray(a_passed, dtype=bool), np.asarray(b_passed, dtype=bool)
    if x.shape != y.shape:
        raise ValueError(f"paired outcomes need equal lengths, got {x.size} and {y.size}")
    b_only, a_only = int((~x & y).sum()), int((x & ~y).sum())
    if b_only + a_only == 0:
        return 1.0
    return float(binomtest(b_only, b_only + a_only, 0.5).pvalue)


def resample_indices(n: int, boot: int, seed: int) -> list[np.ndarray]:
    """The bootstrap's item indices, drawn once per comparison and reused for every metric (seeded numpy)."""
    rng = np.random.default_rng(seed)
    chunks, left = [], boot
    while left > 0:
        size = min(_CHUNK, left)
        chunks.append(rng.integers(0, n, size=(size, n)))
        left -= size
    return chunks


def percentile_ci(stats: np.ndarray) -> tuple[float, float] | None:
    """The 2.5th and 97.5th percentiles of the finite resampled statistics (None when none is finite)."""
    finite = stats[np.isfinite(stats)]
    if finite.size == 0:
        return None
    lo, hi = np.percentile(finite, [2.5, 97.5])
    return float(lo), float(hi)


def paired_bootstrap_ci(
    a: Sequence[float], b: Sequence[float], *, boot: int = DEFAULT_BOOT, seed: int = 0,
    indices: list[np.ndarray] | None = None,
) -> tuple[float, float] | None:
    """95% percentile interval of mean(B) - mean(A), resampling ITEMS (both runs' values of an item together).

    Args:
        a, b (sequence of float): per-item values of the two runs, same items in the same order.
        boot (int, optional, defaults to 10000): resamples.
        seed (int, optional, defaults to 0): numpy seed (same seed, same interval).
        indices (list of arrays, optional): precomputed `resample_indices` (shared across metrics).

    Example:
        >>> lo, hi = paired_bootstrap_ci([0, 0, 1, 0] * 5, [1, 0, 1, 1] * 5, boot=2000, seed=1)
        >>> lo > 0 and hi <= 1
        True
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"paired values need equal lengths, got {x.size} and {y.size}")
    if x.size == 0:
        return None
    diff = y - x
    return _boot(lambda idx: diff[idx].mean(axis=1), x.size, boot, seed, indices)


def paired_ratio_ci(
    a_num: Sequence[float], a_den: Sequence[float], b_num: Sequence[float], b_den: Sequence[float], *,
    boot: int = DEFAULT_BOOT, seed: int = 0, indices: list[np.ndarray] | None = None,
) -> tuple[float, float] | None:
    """95% interval of sum(b_num)/sum(b_den) - sum(a_num)/sum(a_den) over paired item resamples (e.g. cost per
    passed image: cost / passed). Resamples where a denominator is 0 are left out."""
    arrays = [np.asarray(v, dtype=float) for v in (a_num, a_den, b_num, b_den)]
    n = arrays[0].size
    if n == 0:
        return None

    def stat(idx: np.ndarray) -> np.ndarray:
        an, ad, bn, bd = (v[idx].sum(axis=1) for v in arrays)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where((ad > 0) & (bd > 0), bn / bd - an / ad, np.nan)

    return _boot(stat, n, boot, seed, indices)


def bootstrap_ci(values: Sequence[float], *, boot: int = DEFAULT_BOOT, seed: int = 0) -> tuple[float, float] | None:
    """95% percentile interval of one run's mean (the chart's interval around a run's pass rate)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return None
    return _boot(lambda idx: x[idx].mean(axis=1), x.size, boot, seed, None)


def _boot(stat: Callable[[np.ndarray], np.ndarray], n: int, boot: int, seed: int,
          indices: list[np.ndarray] | None) -> tuple[float, float] | None:
    chunks = indices if indices is not None else resample_indices(n, boot, seed)
    return percentile_ci(np.concatenate([stat(idx) for idx in chunks]))


__all__ = [
    "DEFAULT_BOOT",
    "Tally",
    "bootstrap_ci",
    "mcnemar_exact",
    "paired_bootstrap_ci",
    "paired_ratio_ci",
    "percentile_ci",
    "resample_indices",
    "tally",
]
