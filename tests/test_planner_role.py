"""The planner role: Spec -> Plan, wired from the config."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from portraitcraft.agents.planner import Plan, Planner, item_seed, policy_from_config
from portraitcraft.agents.planner.canvas_policy import rule_policy
from portraitcraft.config import PlannerConfig, load_config
from portraitcraft.errors import InputError
from portraitcraft.schemas import Track2Spec

SPEC = Track2Spec(
    image_path="images_03/unsplash_people_00001_0a1b2c3d4e5f.jpg",
    content="A surfer walks along the coastline at dusk. She is placed on the left third.",
    composition="Soft light from the right. Waves lead the eye toward the horizon on the right.",
)


def test_plan_carries_canvas_prompt_seed_and_reasons() -> None:
    plan = Planner(seed=7).plan(SPEC)
    assert isinstance(plan, Plan)
    assert plan.id == SPEC.id
    assert plan.width == 1024 > plan.height and plan.height % 16 == 0
    assert plan.prompt.startswith("Generate an image based on the following description.")
    assert "[Content]\nShe is placed on the left third. A surfer walks" in plan.prompt
    assert plan.seed == 7
    assert "negative_prompt" not in plan.model_dump()  # the draft call uses generator.negative_prompt
    assert any("'coastline'" in r for r in plan.reasons) and "landscape" in plan.reasons[-1]
    assert plan.warnings == [] and plan.prompt_tokens > 20


def test_seed_modes() -> None:
    other = SPEC.model_copy(update={"id": "another"})
    fixed = Planner(PlannerConfig(seed_mode="fixed"), seed=3)
    assert fixed.plan(SPEC).seed == fixed.plan(other).seed == 3
    per_item = Planner(PlannerConfig(seed_mode="per_item"), seed=3)
    assert per_item.plan(SPEC).seed == item_seed(3, SPEC.id) == per_item.plan(SPEC).seed
    assert per_item.plan(other).seed != per_item.plan(SPEC).seed
    assert item_seed(4, SPEC.id) != item_seed(3, SPEC.id)
    assert 0 <= item_seed(3, SPEC.id) < 2**32


def test_from_config_wires_every_setting() -> None:
    cfg = load_config(overrides={
        "planner": {"long_side": 1584, "trigger_word": "AES_COMP", "spatial_first": False},
        "run": {"seed": 11},
        "generator": {"negative_prompt": "lowres"},
    })
    plan = Planner.from_config(cfg).plan(SPEC)
    assert (plan.width, plan.seed) == (1584, 11)
    assert plan.prompt.startswith("AES_COMP, Generate")
    assert "[Content]\nA surfer walks along the coastline at dusk." in plan.prompt


def test_config_policy_path_selects_the_fitted_policy(tmp_path: Path) -> None:
    policy = rule_policy([2 / 3, 1.5]).model_copy(update={"method": "fitted"})
    path = policy.save(tmp_path / "policy.json")
    planner = Planner(PlannerConfig(policy=str(path)))
    assert planner.policy.method == "fitted" and planner.policy.classes == [0.666667, 1.0, 1.5]
    plan = planner.plan(SPEC)
    assert plan.reasons[-1].startswith("fitted policy") and (plan.width, plan.height) == (1024, 688)
    assert policy_from_config(PlannerConfig()).method == "rule"
    with pytest.raises(InputError, match=r"missing\.json"):
        Planner(PlannerConfig(policy=str(tmp_path / "missing.json")))


def test_truncation_warning_reaches_plan_and_log(caplog: pytest.LogCaptureFixture) -> None:
    long_spec = SPEC.model_copy(update={"content": "A red coat in the rain. " * 40})
    with caplog.at_level(logging.WARNING, logger="portraitcraft.agents.planner"):
        plan = Planner(PlannerConfig(max_prompt_tokens=64, condense="off")).plan(long_spec)
    assert len(plan.warnings) == 1 and "max_prompt_tokens=64" in plan.warnings[0]
    assert any(SPEC.id in r.getMessage() and "max_prompt_tokens=64" in r.getMessage() for r in caplog.records)


def test_config_rejects_bad_aspect_ratios() -> None:
    from portraitcraft.config import ConfigError

    with pytest.raises(ConfigError, match="aspect_ratios"):
        load_config(overrides={"planner": {"aspect_ratios": [0.0, 1.5]}})
    with pytest.raises(ConfigError, match="aspect_ratios"):
        load_config(overrides={"planner": {"aspect_ratios": []}})


def test_a_policy_file_of_the_first_format_still_loads(tmp_path: Path) -> None:
    """Format /1 spelled `method` as `kind`; files fitted before the rename keep working."""
    from portraitcraft.agents.planner.canvas_policy import load_policy

    data = rule_policy([2 / 3, 1.5]).model_dump(mode="json")
    data.pop("method")
    data.update({"format": "portraitcraft.canvas_policy/1", "kind": "fitted"})
    path = tmp_path / "old.json"
    path.write_text(json.dumps(data))
    assert load_policy(path).method == "fitted"
