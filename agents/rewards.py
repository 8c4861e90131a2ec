"""Within-group rewards (PortraitRL): z-scored objectives, weighted combination, NaSPO preference probability.

For a group of G candidates drawn for the same input, each objective is standardised within the group so an
easy objective (everyone scores 90) cannot drown a hard one; the weighted sum of the z-scores ranks the group,
and NaSPO turns it into the probability that a candidate is the preferred one (../shared/docs/methods.md).
Pure functions of numbers: used by group sampling, the pairs export and the reward server alike.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from portraitcraft.errors import PortraitcraftError

WEIGHT_TOLERANCE = 1e-6


class RewardError(PortraitcraftError, ValueError):
    """Objectives or weights that cannot be combined (named in the message)."""


def zscore_within_group(values: Sequence[float]) -> list[float]:
    """`(s - mean) / std` over the group, population std; a group with no spread gives zeros.

    Example:
        >>> zscore_within_group([1.0, 2.0, 3.0])
        [-1.224744871391589, 0.0, 1.224744871391589]
        >>> zscore_within_group([5.0, 5.0])
        [0.0, 0.0]
    """
    if not values:
        return []
    bad = [v for v in values if not math.isfinite(v)]
    if bad:
        raise RewardError(f"group scores must be finite numbers, got {bad[0]!r}")
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    if std < 1e-12:
        return [0.0 for _ in values]
    return [(v - mean) / std for v in values]


def renormalised_weights(weights: Mapping[str, float], present: Iterable[str]) -> dict[str, float]:
    """The one weight rule of every reward combination (group sampling, the reward server): the objectives
    present with a weight above 0, their weights rescaled to sum 1 ({} when none is left).

    Example:
        >>> renormalised_weights({"a": 0.3, "b": 0.3, "c": 0.4, "d": 0.0}, ["a", "b", "d"])
        {'a': 0.5, 'b': 0.5}
    """
    used = {k: float(weights.get(k, 0.0)) for k in present if float(weights.get(k, 0.0)) > 0}
    total = sum(used.values())
    return {k: w / total for k, w in used.items()} if total > 0 else {}


def combine_objectives(objectives: Mapping[str, Sequence[float]], weights: Mapping[str, float]) -> list[float]:
    """Weighted sum of each objective's within-group z-scores; the weights must sum to 1.

    Args:
        objectives (`Mapping[str, Sequence[float]]`): objective name -> one score per candidate (same length).
        weights (`Mapping[str, float]`): objective name -> weight >= 0; every objective needs a weight.

    Example:
        >>> combine_objectives({"a": [0, 1], "b": [10, 0]}, {"a": 0.5, "b": 0.5})
        [0.0, 0.0]
    """
    if not objectives:
        raise RewardError("no objectives to combine")
    sizes = {name: len(scores) for name, scores in objectives.items()}
    if len(set(sizes.values())) != 1:
        raise RewardError(f"objectives score different numbers of candidates: {sizes}")
    missing = sorted(set(objectives) - set(weights))
    if missing:
        raise RewardError(f"no weight for objective(s) {', '.join(missing)}")
    used = {name: float(weights[name]) for name in objectives}
    if any(w < 0 for w in used.values()):
        raise RewardError(f"weights must be >= 0, got {used}")
    if abs(sum(used.values()) - 1.0) > WEIGHT_TOLERANCE:
        raise RewardError(f"weights must sum to 1, got {sum(used.values()):.6f} ({used})")
    size = next(iter(sizes.values()))
    total = [0.0] * size
    for name, scores in objectives.items():
        for i, z in enumerate(zscore_within_group([float(s) for s in scores])):
            total[i] += used[name] * z
    return total


def naspo_probability(scores: Sequence[float]) -> list[float]:
    """NaSPO: `Adv_i = 0.5 + 0.5 * clip((s_i - mean) / std, -1, 1)`, the probability a candidate is preferred.

    Example:
        >>> naspo_probability([0.0, 1.0, 2.0, 3.0])
        [0.0, 0.27639320225002106, 0.7236067977499789, 1.0]
    """
    return [0.5 + 0.5 * max(-1.0, min(1.0, z)) for z in zscore_within_group(scores)]
