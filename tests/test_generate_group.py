"""`generate --group G`: G independent candidates per item, within-group rewards, NaSPO-labelled pairs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fake_vlm import make_client
from generate_fixtures import ScriptedDrawer, figure_analysis_image, image_from_body
from test_generate_graph import rows_by_id, run

from portraitcraft.agents.rewards import combine_objectives, naspo_probability
from portraitcraft.schemas import Track2Spec

SPEC = Track2Spec(image_path="g.png", content="a woman", composition="on the left third")
GROUP = {"loop": {"group_size": 3, "strategy": "best-of-n", "max_rounds": 2}, "critic": {"geometry": True}}


async def test_group_without_judge_ranks_by_the_critic(tmp_path: Path) -> None:
    drawer = ScriptedDrawer(drafts=[0.8, 0.2, 0.5])  # right, left (the target), centre
    _, folder = await run(tmp_path, [SPEC], drawer, strategy="best-of-n", sections=GROUP)
    row = rows_by_id(folder)["g"]
    assert [c[0] for c in drawer.calls] == ["generate"] * 3
    group = row["group"]
    # four findings per candidate (geometry's horizontal + three model-free checks: sharpness, exposure,
    # visible-fill); only `horizontal` fires
    assert group["objectives"] == {"critic": [1 - 1 / 4, 1.0, 1 - 1 / 4]} and group["weights"] == {"critic": 1.0}
    assert group["adv"] == pytest.approx(naspo_probability([1 - 1 / 4, 1.0, 1 - 1 / 4]))
    [pair] = [json.loads(x) for x in (folder.root / "pairs.jsonl").read_text().splitlines()]
    assert (pair["chosen_round"], pair["rejected_round"], pair["source"]) == (1, 2, "group")
    assert pair["label"] == round((group["adv"][1] + 1 - group["adv"][2]) / 2, 6) > 0.9
    assert pair["rules_fired"] == ["horizontal"]


async def test_group_with_judge_uses_all_objectives(tmp_path: Path, fake_vlm: Any) -> None:
    from portraitcraft.agents.judge import Judge
    from portraitcraft.config import JudgeConfig

    score = {"left": 90, "center": 50, "right": 20}

    def reply(body: dict[str, Any]) -> dict[str, Any]:
        if "content_score" in json.dumps({k: v for k, v in body.items() if k != "messages"}):
            s = score[figure_analysis_image(image_from_body(body)).horizontal]
            return {"content_reason": "ok", "content_score": s, "composition_reason": "ok", "composition_score": s}
        raise AssertionError("only the judge is asked")

    fake_vlm.script.default(fn=reply)
    drawer = ScriptedDrawer(drafts=[0.8, 0.2, 0.5])
    async with make_client(fake_vlm) as vlm:
        judge = Judge(JudgeConfig(mode="sampled", samples=1, base_url=fake_vlm.base_url, model=fake_vlm.model), vlm)
        _, folder = await run(tmp_path, [SPEC], drawer, judge=judge, strategy="best-of-n",
                              sections={**GROUP, "loop": {**GROUP["loop"], "group_pairs": "all"}})
    row = rows_by_id(folder)["g"]
    group = row["group"]
    assert group["objectives"]["content"] == [20.0, 90.0, 50.0], group
    assert group["objectives"]["critic"] == [1 - 1 / 4, 1.0, 1 - 1 / 4], group  # 1 of 4 findings fires
    assert group["weights"] == {"critic": 0.4, "content": 0.3, "composition": 0.3}
    measured = {"critic": [1 - 1 / 4, 1.0, 1 - 1 / 4], "content": [20, 90, 50], "composition": [20, 90, 50]}
    expected = combine_objectives(measured, {"critic": 0.4, "content": 0.3, "composition": 0.3})
    assert group["reward"] == pytest.approx(expected)
    pairs = [json.loads(x) for x in (folder.root / "pairs.jsonl").read_text().splitlines()]
    assert [(p["chosen_round"], p["rejected_round"]) for p in pairs] == [(1, 2), (1, 0), (2, 0)]
    assert all(0.5 < p["label"] <= 1.0 for p in pairs)
    assert pairs[0]["chosen_content"] == 90.0 and pairs[0]["rejected_content"] == 50.0
    assert row["cost"]["judge_calls"] == 3


def test_group_refuses_one_shot_through_the_console_script(tmp_path: Path) -> None:
    from console_script import run_script_many

    refused, too_small = run_script_many([
        ["generate", "--prompt", "a woman on the left", "--group", "3", "--strategy", "one-shot", "--out",
         tmp_path / "g"],
        ["generate", "--prompt", "x", "--group", "1", "--out", tmp_path / "h"]])
    assert refused.code == 2 and "--group" in refused.stderr and "one-shot" in refused.stderr
    assert too_small.code == 2
