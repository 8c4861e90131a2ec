"""The generate graph end to end with scripted parts: trajectories, the stop rule, the drift guard, geometry
over the VLM, failed items beside finished ones, critic faults."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fake_vlm import make_client
from generate_fixtures import (
    ScriptedDrawer,
    figure_analysis,
    figure_analysis_image,
    figure_geometry,
    image_from_body,
    placement_vlm,
)
from PIL import Image

from portraitcraft.config import load_config
from portraitcraft.data import load_track2
from portraitcraft.graphs.generate import build_graph, stop_verdict
from portraitcraft.graphs.generate_run import build_context, run_items
from portraitcraft.runs import RunFolder
from portraitcraft.schemas import CompositionTargets, Track2Spec

LEFT = CompositionTargets(horizontal="left", phrases={"horizontal": "on the left third"})


@pytest.mark.parametrize(("strategy", "passed", "corrections", "max_rounds", "expected"), [
    ("loop", True, 0, 3, "passed"),
    ("loop", False, 0, 3, None),
    ("loop", False, 2, 3, None),
    ("loop", False, 3, 3, "max-rounds"),
    ("loop", True, 3, 3, "passed"),
    ("loop", False, 0, 0, "max-rounds"),
    ("one-shot", False, 0, 3, "one-shot"),
    ("one-shot", True, 0, 3, "passed"),
    ("best-of-n", True, 0, 3, None),
    ("best-of-n", False, 3, 3, "samples-done"),
])
def test_stop_rule(strategy: str, passed: bool, corrections: int, max_rounds: int, expected: str | None) -> None:
    assert stop_verdict(strategy=strategy, passed=passed, corrections=corrections, max_rounds=max_rounds) == expected


def test_graph_edges_are_visible() -> None:
    mermaid = build_graph().compile().get_graph().draw_mermaid()
    for edge in ("plan -.-> draft", "critique -.-> edit", "edit -.-> critique", "critique -.-> finalize"):
        assert edge in mermaid


def config(tmp_path: Path, **sections: Any) -> Any:
    base: dict[str, Any] = {"critic": {"enabled": False, "geometry": False}, "planner": {"long_side": 96},
                            "loop": {"max_rounds": 3}, "run": {"cache_dir": str(tmp_path / "cache")}}
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value}
    return load_config(overrides=base)


async def run(tmp_path: Path, specs: list[Track2Spec], drawer: Any, *, vlm: Any = None, name: str = "r",
              targets: CompositionTargets = LEFT, **kw: Any) -> tuple[dict[str, Any], RunFolder]:
    sections = kw.pop("sections", {})
    cfg = config(tmp_path, **sections)
    folder = RunFolder.create(tmp_path / "runs", name, config=cfg, resume=True)
    ctx = build_context(cfg, folder, drawer=drawer, vlm=vlm, analyze=kw.pop("analyze", figure_analysis),
                        geometry=kw.pop("geometry", figure_geometry), reframe=kw.pop("reframe", False),
                        targets_of=lambda s, p: targets, **kw)
    summary = await run_items(ctx, specs, kw.pop("problems", ()))
    return summary, folder


def rows_by_id(folder: RunFolder) -> dict[str, dict[str, Any]]:
    rows = folder.results.rows()
    assert len(rows) == len({r["id"] for r in rows}), "an item was written twice"
    return {r["id"]: r for r in rows}


async def test_examples_end_to_end_with_the_fake_vlm(tmp_path: Path, fake_vlm: Any, examples_dir: Path) -> None:
    fake_vlm.script.default(fn=placement_vlm("right"))
    specs = load_track2(examples_dir / "track_2_test.json")
    drawer = ScriptedDrawer(drafts=[0.8], edits=[0.2] * 10)
    async with make_client(fake_vlm) as vlm:
        summary, folder = await run(tmp_path, specs, drawer, vlm=vlm,
                                    sections={"critic": {"enabled": True, "rules": ["placement"]}})
    assert summary["n_items"] == 4 and summary["n_done"] == 4 and summary["pass_rate"] == 1.0
    assert summary["mean_rounds"] == 1.0
    rows = rows_by_id(folder)
    for spec in specs:
        row = rows[spec.id]
        assert row["status"] == "done" and row["passed"] and row["rounds"] == 1 and row["verdict"] == "passed"
        draft, edited = row["history"]
        assert [f["rule"] for f in draft["findings"] if f["detected"]] == ["placement"]
        assert draft["action"] == "edit" and draft["instruction"] == "move the woman to the left third."
        assert edited["passed"] and edited["action"] is None and edited["made_by"] == "edit"
        assert (folder.root / draft["image"]).is_file() and (folder.root / edited["image"]).is_file()
        final = folder.root / "submission" / spec.output_name
        assert row["final_image"] == f"submission/{spec.output_name}" and final.is_file()
        assert Image.open(final).format == "JPEG"
        assert row["cost"]["generations"] == 1 and row["cost"]["edits"] == 1 and row["cost"]["vlm_calls"] == 2
    edits = [c for c in drawer.calls if c[0] == "edit"]
    assert len(edits) == 4 and all(c[2]["instruction"] == "move the woman to the left third." for c in edits)
    pairs = [json.loads(line) for line in (folder.root / "pairs.jsonl").read_text().splitlines()]
    assert {p["id"] for p in pairs} == {s.id for s in specs}
    assert all(p["chosen_round"] == 1 and p["rejected_round"] == 0 and p["rules_fired"] == ["placement"]
               for p in pairs)
    assert sorted(drawer.done) == sorted(s.id for s in specs)


async def test_max_rounds_stop_keeps_the_best_not_the_last(tmp_path: Path) -> None:
    # draft on the right (placement fails); edits drift to the centre: still failing, never better.
    drawer = ScriptedDrawer(drafts=[0.8], edits=[0.8, 0.8, 0.8])
    spec = Track2Spec(image_path="a.png", content="a woman", composition="on the left third")
    summary, folder = await run(tmp_path, [spec], drawer, sections={
        "critic": {"geometry": True}, "loop": {"max_rounds": 2, "max_edits": 5, "drift_guard": False}})
    row = rows_by_id(folder)["a"]
    assert row["rounds"] == 2 and row["verdict"] == "max-rounds" and not row["passed"]
    assert [h["action"] for h in row["history"]] == ["edit", "edit", None]
    assert row["final_round"] == 0  # equally bad everywhere: the earliest, not the last
    assert summary["pass_rate"] == 0.0 and summary["mean_rounds"] == 2.0


async def test_drift_guard_reverts_and_regenerates(tmp_path: Path) -> None:
    # The draft is on the right; the edit repaints the whole picture (background drift) without fixing it.
    drawer = ScriptedDrawer(drafts=[0.8, 0.2], edits=[None])
    spec = Track2Spec(image_path="b.png", content="a woman", composition="on the left third")
    _, folder = await run(tmp_path, [spec], drawer, sections={"critic": {"geometry": True}})
    row = rows_by_id(folder)["b"]
    actions = [(h["made_by"], h["action"]) for h in row["history"]]
    assert actions == [("draft", "edit"), ("edit", "regenerate"), ("regenerate", None)]
    assert "drift guard" in row["history"][1]["reason"] and "background PSNR" in row["history"][1]["reason"]
    assert row["passed"] and row["final_round"] == 2
    regen = [c for c in drawer.calls if c[0] == "generate"][1]
    assert regen[2]["prompt"].startswith("on the left third. ")  # the failed target's phrase goes first


async def test_geometry_overrules_a_wrong_vlm(tmp_path: Path, fake_vlm: Any) -> None:
    # The VLM claims the placement is fine; geometry measures the figure on the right: geometry decides.
    fake_vlm.script.default({"detected": False, "evidence": "she is on the left", "instruction": ""})
    drawer = ScriptedDrawer(drafts=[0.8], edits=[0.2])
    spec = Track2Spec(image_path="c.png", content="a woman", composition="on the left third")
    async with make_client(fake_vlm) as vlm:
        _, folder = await run(tmp_path, [spec], drawer, vlm=vlm, sections={
            "critic": {"enabled": True, "geometry": True, "rules": ["placement"]}})
    row = rows_by_id(folder)["c"]
    draft = row["history"][0]
    [d] = draft["disagreements"]
    assert d["rule"] == "placement" and d["decided_by"] == "geometry" and d["vlm_detected"] is False
    assert draft["action"] == "edit" and "left" in draft["instruction"]
    assert row["passed"] and row["history"][1]["disagreements"] == []


async def test_bad_items_fail_beside_finished_ones(tmp_path: Path) -> None:
    init = tmp_path / "init"
    init.mkdir()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(init / "good.png")
    (init / "broken.png").write_bytes(b"not a png")
    specs = [Track2Spec(image_path="good.png", content="a woman", composition="left"),
             Track2Spec(image_path="broken.png", content="a man", composition="left"),
             Track2Spec(image_path="missing.png", content="a man", composition="left"),
             Track2Spec(image_path="empty.png", content="  ", composition="")]
    summary, folder = await run(tmp_path, specs, ScriptedDrawer(edits=[0.2]), init_images=init)
    rows = rows_by_id(folder)
    assert rows["good"]["status"] == "done"
    assert rows["broken"]["status"] == "failed" and "broken.png" in rows["broken"]["error"]
    assert rows["missing"]["status"] == "failed" and "no init image 'missing.png'" in rows["missing"]["error"]
    assert rows["empty"]["status"] == "failed" and "description is empty" in rows["empty"]["error"]
    assert summary["n_done"] == 1 and summary["n_failed"] == 3
    assert not (folder.root / "submission" / "broken.png").exists()


async def test_critic_faults_are_recorded_and_the_run_completes(tmp_path: Path, fake_vlm: Any) -> None:
    # One request at a time, two attempts each: the first four requests fail in four different ways.
    fake_vlm.script.fault("status", status=500, times=2).fault("timeout", seconds=6, times=2)
    fake_vlm.script.fault("malformed", times=2).push("garbage, not JSON").push("still garbage")
    fake_vlm.script.default(fn=placement_vlm("right"))
    specs = [Track2Spec(image_path=f"i{i}.png", content="a woman", composition="left third") for i in range(6)]
    drawer = ScriptedDrawer(drafts=[0.8], edits=[0.2] * 20)
    async with make_client(fake_vlm, max_retries=1, timeout=2.5, max_concurrency=1) as vlm:  # slack for a loaded box
        summary, folder = await run(tmp_path, specs, drawer, vlm=vlm, sections={
            "critic": {"enabled": True, "rules": ["placement"]}, "run": {"concurrency": 1}})
    rows = rows_by_id(folder)
    assert summary["n_done"] == 6 and summary["n_failed"] == 0
    failures = [f["error"] for i in range(4) for h in rows[f"i{i}"]["history"] for f in h["failures"]]
    assert len(failures) == 4
    assert "500" in failures[0] and "tim" in failures[1].lower() and "VLMAnswerError" in failures[3]
    for i in range(4):  # a failed check is recorded, not a finding: the item goes on
        assert rows[f"i{i}"]["status"] == "done" and rows[f"i{i}"]["history"][0]["failures"]
    for i in (4, 5):  # the endpoint recovered: the normal trajectory
        assert [h["action"] for h in rows[f"i{i}"]["history"]] == ["edit", None] and rows[f"i{i}"]["passed"]


async def test_judge_ranks_rounds_that_never_passed(tmp_path: Path, fake_vlm: Any) -> None:
    from portraitcraft.agents.judge import Judge
    from portraitcraft.config import JudgeConfig

    def reply(body: dict[str, Any]) -> dict[str, Any]:
        text = json.dumps(body["messages"])
        if "content_score" in json.dumps({k: v for k, v in body.items() if k != "messages"}):  # the judge's schema
            where = figure_analysis_image(image_from_body(body)).horizontal
            score = 80 if where == "center" else 30  # the judge prefers the centred edit
            return {"content_reason": "ok", "content_score": score, "composition_reason": "ok",
                    "composition_score": score}
        assert "failure mode" in text
        return {"detected": True, "evidence": "always wrong", "instruction": "move her"}

    fake_vlm.script.default(fn=reply)
    drawer = ScriptedDrawer(drafts=[0.8], edits=[0.5, 0.8])
    spec = Track2Spec(image_path="j.png", content="a woman", composition="left third")
    async with make_client(fake_vlm) as vlm:
        judge = Judge(JudgeConfig(mode="sampled", samples=1, base_url=fake_vlm.base_url, model=fake_vlm.model), vlm)
        _, folder = await run(tmp_path, [spec], drawer, vlm=vlm, judge=judge, sections={
            "critic": {"enabled": True, "rules": ["placement"]}, "loop": {"max_rounds": 2, "max_edits": 5,
                                                                            "drift_guard": False}})
    row = rows_by_id(folder)["j"]
    assert not row["passed"] and [h.get("judge_score") for h in row["history"]] == [30, 80, 30]
    assert row["final_round"] == 1 and row["cost"]["judge_calls"] == 3


def test_live_board_counts_items() -> None:
    from portraitcraft.cli.generate import Board, summary_table

    board = Board(3, ScriptedDrawer(), None)
    for item in ("a", "b", "c"):
        board.event("start", {"id": item})
    board.event("finalize", {"id": "a", "status": "done", "passed": True, "rounds": 1})
    board.event("finalize", {"id": "b", "status": "failed", "passed": False, "rounds": 0})
    assert (board.done, board.failed, board.passed, board.in_flight) == (1, 1, 1, {"c"})
    row = [c._cells[0] for c in board.render().columns]
    assert row == ["3", "1", "1", "1", "100%", "1.00", "-", "-"]
    table = summary_table({"n_items": 3, "pass_rate": 0.5, "cost_per_final_image": {"edits": 1.0}})
    assert table.row_count == 8
