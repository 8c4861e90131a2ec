"""Group sampling rewards on hand-computed groups."""

from __future__ import annotations

import math

import pytest

from portraitcraft.agents.group import group_pairs, group_rewards, pass_ratio, preference_label
from portraitcraft.agents.rewards import RewardError


def _round(detected: int, total: int, content: float | None = None, composition: float | None = None) -> dict:
    findings = [{"detected": i < detected, "confidence": 0.9} for i in range(total)]
    out: dict = {"findings": findings}
    if content is not None:
        out["judge_content"], out["judge_composition"] = content, composition
    return out


def test_pass_ratio_counts_confident_detections_only() -> None:
    assert pass_ratio([{"detected": True, "confidence": 0.2}, {"detected": True}], 0.5) == 0.5
    assert pass_ratio([]) == 1.0


def test_group_rewards_hand_computed() -> None:
    # critic pass ratios [0.5, 1.0, 0.0] -> z = [0, k, -k] with k = sqrt(1.5); content [60, 80, 70] -> z = [-k, k, 0]
    rounds = [_round(1, 2, 60, 50), _round(0, 2, 80, 50), _round(2, 2, 70, 50)]
    out = group_rewards(rounds, {"critic": 0.5, "content": 0.25, "composition": 0.25})
    k = math.sqrt(1.5)
    # composition has no spread: z = 0, its weight still counts (weights are not renormalised away)
    assert out["reward"] == pytest.approx([-0.25 * k, 0.75 * k, -0.5 * k])
    std = k * math.sqrt((0.25**2 + 0.75**2 + 0.5**2) / 3)  # the rewards' mean is 0
    expected = [0.5 + 0.5 * max(-1.0, min(1.0, r / std)) for r in out["reward"]]
    assert out["adv"] == pytest.approx(expected)
    assert out["adv"][1] == 1.0 and out["adv"][2] < out["adv"][0] < 0.5


def test_missing_judge_objectives_are_left_out_and_weights_renormalised() -> None:
    out = group_rewards([_round(1, 2), _round(0, 2)], {"critic": 0.5, "content": 0.5})
    assert out["weights"] == {"critic": 1.0}
    assert out["adv"] == [0.0, 1.0]


def test_pairs_best_worst_and_all() -> None:
    rewards = {"reward": [0.1, 0.9, -1.0], "adv": [0.55, 1.0, 0.0]}
    assert group_pairs(rewards) == [(1, 2, 1.0)]
    pairs = group_pairs(rewards, "all")
    assert [(i, j) for i, j, _ in pairs] == [(1, 0), (1, 2), (0, 2)]
    assert pairs[0][2] == pytest.approx(preference_label(1.0, 0.55)) == pytest.approx(0.725)
    assert group_pairs({"reward": [0.0, 0.0], "adv": [0.5, 0.5]}) == []


def test_bad_groups_are_named() -> None:
    with pytest.raises(RewardError, match="at least 2"):
        group_rewards([_round(0, 1)], {"critic": 1.0})
    with pytest.raises(RewardError, match="no positive weight"):
        group_rewards([_round(0, 1), _round(1, 1)], {"content": 1.0})
