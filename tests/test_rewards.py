"""Within-group rewards on hand-computed groups."""

from __future__ import annotations

import math

import pytest

from portraitcraft.agents.rewards import RewardError, combine_objectives, naspo_probability, zscore_within_group


def test_zscore_hand_computed() -> None:
    # mean 4, population std sqrt(((2)^2 + 0 + 2^2) / 3) = sqrt(8/3)
    z = zscore_within_group([2.0, 4.0, 6.0])
    s = math.sqrt(8 / 3)
    assert z == pytest.approx([-2 / s, 0.0, 2 / s])


def test_combination_keeps_hard_objective_from_being_drowned() -> None:
    # "easy": everyone near 90; "hard": a real spread. Raw sums would rank by the easy one's tiny noise.
    easy = [90.0, 91.0, 89.0]
    hard = [10.0, 40.0, 70.0]
    combined = combine_objectives({"easy": easy, "hard": hard}, {"easy": 0.5, "hard": 0.5})
    ze = zscore_within_group(easy)
    zh = zscore_within_group(hard)
    assert combined == pytest.approx([0.5 * a + 0.5 * b for a, b in zip(ze, zh, strict=True)])
    k = math.sqrt(1.5)  # z of [90, 91, 89] is [0, k, -k]; of [10, 40, 70] is [-k, 0, k]
    assert combined == pytest.approx([-0.5 * k, 0.5 * k, 0.0])


def test_naspo_hand_computed_and_clipped() -> None:
    # group [0, 0, 0, 4]: mean 1, std sqrt(3); z = [-1/sqrt3]*3 + [3/sqrt3 -> clipped to 1]
    adv = naspo_probability([0.0, 0.0, 0.0, 4.0])
    low = 0.5 + 0.5 * (-1 / math.sqrt(3))
    assert adv == pytest.approx([low, low, low, 1.0])
    assert all(0.0 <= a <= 1.0 for a in adv)


@pytest.mark.parametrize(
    ("objectives", "weights", "message"),
    [
        ({"a": [1, 2]}, {"a": 0.7}, "sum to 1"),
        ({"a": [1, 2], "b": [1]}, {"a": 0.5, "b": 0.5}, "different numbers"),
        ({"a": [1, 2], "b": [1, 3]}, {"a": 1.0}, "no weight for objective(s) b"),
        ({"a": [1, float("nan")]}, {"a": 1.0}, "finite"),
    ],
)
def test_bad_combinations_are_named(objectives: dict, weights: dict, message: str) -> None:
    with pytest.raises(RewardError, match=message.replace("(", r"\(").replace(")", r"\)")):
        combine_objectives(objectives, weights)
