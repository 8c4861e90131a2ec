"""Group sampling with within-group rewards (PortraitRL): G candidates of one item scored on several
objectives, each z-scored within the group, combined with weights summing to 1, and turned into NaSPO
preference probabilities; preference pairs (best vs worst, or every ordered pair) carry them as labels.

Objectives per candidate (a round of a generate run, all drawn independently by `generate --group G`):
- `critic`: the critic's pass ratio, 1 - detected findings / findings (geometry, VLM rules, heuristics);
- `content`, `composition`: the judge's 0-100 scores when a judge scored the round.
An objective no candidate has is left out and the remaining weights are renormalised to sum to 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from portraitcraft.agents.rewards import RewardError, combine_objectives, naspo_probability, renormalised_weights

OBJECTIVES: tuple[str, ...] = ("critic", "content", "composition")
PairMode = Literal["best-worst", "all"]


def pass_ratio(findings: Sequence[Mapping[str, Any]], min_confidence: float = 0.5) -> float:
    """Share of findings NOT detected (at `min_confidence`); 1.0 for a round with no finding."""
    if not findings:
        return 1.0
    detected = sum(1 for f in findings if f.get("detected") and float(f.get("confidence", 1.0)) >= min_confidence)
    return 1.0 - detected / len(findings)


def objectives_of(rounds: Sequence[Mapping[str, Any]], min_confidence: float = 0.5) -> dict[str, list[float]]:
    """The measured objectives of a group's rounds: `critic` always, the judge's only when every round has it."""
    values: dict[str, list[float]] = {"critic": [pass_ratio(r.get("findings") or [], min_confidence) for r in rounds]}
    for key in ("content", "composition"):
        scores = [r.get(f"judge_{key}") for r in rounds]
        if all(isinstance(s, int | float) for s in scores):
            values[key] = [float(s) for s in scores]  # type: ignore[arg-type]
    return values


def group_rewards(rounds: Sequence[Mapping[str, Any]], weights: Mapping[str, float], *,
                  min_confidence: float = 0.5) -> dict[str, Any]:
    """Objectives, combined reward and NaSPO probability of each candidate in a group.

    Args:
        rounds: the group's candidates (generate `history` entries: `findings`, optional `judge_content` /
            `judge_composition`).
        weights: objective -> weight (>= 0); renormalised over the objectives measured for this group.

    Returns:
        `{"objectives": {name: [...]}, "weights": {name: w}, "reward": [...], "adv": [...]}`.

    Example:
        >>> r = group_rewards([{"findings": [{"detected": True}]}, {"findings": [{"detected": False}]}],
        ...                   {"critic": 1.0})
        >>> r["adv"]
        [0.0, 1.0]
    """
    if len(rounds) < 2:
        raise RewardError(f"a group needs at least 2 candidates, got {len(rounds)}")
    measured = objectives_of(rounds, min_confidence)
    used = renormalised_weights(weights, measured)
    if not used:
        raise RewardError(f"no positive weight for any measured objective ({', '.join(measured)}); "
                          f"weights given: {dict(weights)}")
    reward = combine_objectives({k: measured[k] for k in used}, used)
    return {"objectives": measured, "weights": used, "reward": reward, "adv": naspo_probability(reward)}


def preference_label(adv_chosen: float, adv_rejected: float) -> float:
    """P(chosen preferred) from the two NaSPO probabilities: the mean of "chosen is a positive" and "rejected is
    a negative", so two equally good candidates give 0.5 and a clear best vs a clear worst gives 1.0."""
    return (adv_chosen + (1.0 - adv_rejected)) / 2.0


def group_pairs(rewards: Mapping[str, Any], mode: PairMode = "best-worst") -> list[tuple[int, int, float]]:
    """`(chosen, rejected, label)` index pairs: the best vs the worst candidate, or every pair with a strictly
    higher reward first. Ties give no pair."""
    reward, adv = rewards["reward"], rewards["adv"]
    order = sorted(range(len(reward)), key=lambda i: (-reward[i], i))
    if mode == "best-worst":
        best, worst = order[0], order[-1]
        return [(best, worst, preference_label(adv[best], adv[worst]))] if reward[best] > reward[worst] else []
    return [(i, j, preference_label(adv[i], adv[j])) for i in order for j in order if reward[i] > reward[j]]
