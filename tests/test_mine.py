"""Failure-mode mining: geometry discrepancies, side checks, clustering, and an end-to-end run with the fake VLM."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from fake_vlm import make_client
from PIL import Image

from portraitcraft.agents.miner import MinedDiscrepancy, aggregate, check_sides, cluster_texts, geometric_discrepancies
from portraitcraft.graphs.mine import run_mining
from portraitcraft.prompts.rules import lint_rules, load_rules
from portraitcraft.schemas import SubjectFeatures, Track2Spec


def _features(**kw: Any) -> SubjectFeatures:
    base = dict(box=(0.2, 0.1, 0.6, 0.9), centroid=(0.4, 0.5), horizontal="center", vertical="upper",
                thirds_distance=0.1, headroom=0.1, crop_level="half-body", facing="camera", gaze="camera", people=1)
    return SubjectFeatures(**{**base, **kw})


def test_geometric_discrepancies_take_the_real_image_as_truth() -> None:
    real = _features(horizontal="left", facing="right", crop_level="full-body")
    gen = _features(horizontal="right", facing="right", crop_level="close-up")
    found = geometric_discrepancies("x", real, gen)
    assert {d.key for d in found} == {"horizontal", "crop_level"}
    placement = next(d for d in found if d.key == "horizontal")
    assert "viewer's left" in placement.instruction and "right" in placement.difference
    assert [d.key for d in geometric_discrepancies("x", real, None)] == ["subject"]
    assert geometric_discrepancies("x", None, gen) == []


def test_vlm_side_statements_are_checked_against_geometry() -> None:
    said = [MinedDiscrepancy("x", "placement", "the subject stands on the left", "move right", "vlm"),
            MinedDiscrepancy("x", "lighting", "light is harsher", "soften", "vlm")]
    check_sides(said, _features(horizontal="left"), _features(horizontal="left"))
    assert [d.check for d in said] == ["contradicted", None]
    check_sides(said, _features(horizontal="left"), _features(horizontal="right"))
    assert said[0].check == "confirmed"
    check_sides(said, _features(horizontal="left"), None)
    assert said[0].check == "unchecked"


def test_clustering_groups_paraphrases() -> None:
    texts = ["gaze: the subject looks at the camera instead of away", "gaze: subject looks into the camera",
             "lighting: the light comes from the wrong side", "lighting: light from the wrong side, flat shadows",
             "hands: extra finger on the hand"]
    labels = cluster_texts(texts)
    assert labels[0] == labels[1] and labels[2] == labels[3]
    assert len({labels[0], labels[2], labels[4]}) == 3


def test_aggregate_counts_distinct_items_and_drops_contradicted() -> None:
    found = [MinedDiscrepancy(i, "horizontal", "h", "move", "geometry", key="horizontal") for i in "abc"]
    found += [MinedDiscrepancy("a", "gaze", "looks at the camera", "look left", "vlm", check="contradicted"),
              MinedDiscrepancy("b", "gaze", "looks at the camera", "look left", "vlm", check="contradicted")]
    modes = aggregate(found, 4)
    assert [(m.geometry, m.count, m.frequency) for m in modes] == [("horizontal", 3, 0.75)]
    assert modes[0].id.startswith("mined-01-")


@dataclass
class _Analysis:
    subject: SubjectFeatures | None


def _stub_analyze(path: str) -> _Analysis:
    """Stands in for portraitcraft.tools.vision.analyze: the feature the file name says ('left', 'right', 'none')."""
    name = Path(path).stem
    if "none" in name:
        return _Analysis(None)
    return _Analysis(_features(horizontal="left" if "left" in name else "right"))


def _write(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (32, 24, 3), dtype=np.uint8)).save(path)


@pytest.fixture()
def dataset(tmp_path: Path) -> tuple[list[Track2Spec], Path, Path]:
    items = []
    for i in range(5):
        items.append(Track2Spec(image_path=f"p{i}.png", content=f"person {i}", composition="on the left third"))
    real, gen = tmp_path / "real", tmp_path / "gen"
    for i in range(5):
        _write(real / f"p{i}.png", i)
        _write(gen / f"p{i}.png", 100 + i)
    return [*items[:4], Track2Spec(image_path="missing.png", content="x", composition="y")], real, gen


def _reply(body: dict[str, Any]) -> dict[str, Any]:
    text = json.dumps(body["messages"])
    if "Name this failure mode" in text:
        return {"title": "Gaze at the camera", "category": "gaze",
                "question": "Does the subject look at the camera although the description says otherwise?",
                "instruction": "Make the subject look toward the viewer's left.",
                "guidance": "Pass: eyes turned away as described. Fail: eyes meet the lens."}
    return {"discrepancies": [
        {"aspect": "gaze", "difference": "the subject looks straight into the camera",
         "instruction": "make the subject look to the viewer's left"},
        {"aspect": "placement", "difference": "the subject stands on the left of the frame",
         "instruction": "move the subject to the right"}]}


def test_mining_end_to_end_with_fake_vlm(fake_vlm: Any, dataset: Any, tmp_path: Path) -> None:
    items, real, gen = dataset

    def analyze(path: str) -> _Analysis:
        # real images measure "left"; generated ones "right" (a side error geometry sees)
        return _stub_analyze(path.replace("real.", "left.").replace("generated.", "right."))

    fake_vlm.script.default(fn=_reply)
    out = tmp_path / "mine"

    async def go() -> Any:
        async with make_client(fake_vlm) as vlm:
            return await run_mining(items, images=real, counterparts=gen, out=out, analyze=analyze, vlm=vlm)

    summary = asyncio.run(go())
    assert (summary.n_sampled, summary.n_done, summary.n_failed) == (5, 4, 1)
    assert "missing.png" in summary.errors[0] and "image not found under" in summary.errors[0]
    titles = {m["title"]: m for m in summary.modes}
    assert titles["Subject on the wrong side"]["count"] == 4
    assert titles["Gaze at the camera"]["named_by"] == "llm"
    assert summary.contradicted == 0  # geometry also saw the side error: the VLM placement claim is confirmed
    rules = sorted((out / "rules").glob("*.md"))
    assert len(rules) == len(summary.modes) >= 2
    for rule in rules:
        front = yaml.safe_load(rule.read_text().split("---")[1])
        assert front["id"] == rule.stem
    loaded, problems = lint_rules(out / "rules")
    assert problems == [] and len(loaded) == len(rules)
    by_id = {r.id: r for r in load_rules(out / "rules")}  # the critic's loader: shipped set + the mined rules
    side = next(r for r in by_id.values() if r.geometry == "horizontal" and r.id.startswith("mined-"))
    assert side.applies_when == ["horizontal"]
    assert side.render_instruction(expected="left") == "Move the subject to the left of the frame (the viewer's left)."
    assert "gaze" in by_id  # shipped rules are still there
    pairs = [json.loads(x) for x in (out / "pairs.jsonl").read_text().splitlines()]
    assert len(pairs) == 4 and all((out / p["chosen"]).is_file() and p["source"] == "mine" for p in pairs)
    assert "Subject on the wrong side" in (out / "mining_report.md").read_text()

    # resume: nothing is redone, no new discrepancy requests (only naming)
    before = len([r for r in fake_vlm.chat_requests if "Name this failure" not in json.dumps(r.body)])
    asyncio.run(go())
    after = len([r for r in fake_vlm.chat_requests if "Name this failure" not in json.dumps(r.body)])
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert after == before
    assert sorted(r["id"] for r in rows if r["status"] == "done") == ["p0", "p1", "p2", "p3"]


def test_mining_without_vlm_is_geometry_only(dataset: Any, tmp_path: Path) -> None:
    items, real, gen = dataset
    summary = asyncio.run(run_mining(items, images=real, counterparts=gen, out=tmp_path / "m",
                                     analyze=lambda p: _stub_analyze(p.replace("real.", "left.")), vlm=None))
    assert [m["geometry"] for m in summary.modes] == ["horizontal"]
    assert summary.modes[0]["named_by"] == "rules"


def test_mining_draws_missing_counterparts_with_the_generator(dataset: Any, tmp_path: Path) -> None:
    """No --counterparts: every sampled item is drawn through the Drawer, planned as generate plans drafts."""
    from generate_fixtures import ScriptedDrawer

    from portraitcraft.agents.planner import Planner
    from portraitcraft.config import load_config

    items, real, _ = dataset
    drawer = ScriptedDrawer(drafts=[0.8])
    planner = Planner.from_config(load_config(overrides={"planner": {"long_side": 64}}))
    out = tmp_path / "drawn"
    summary = asyncio.run(run_mining(items, images=real, counterparts=None, out=out, vlm=None, drawer=drawer,
                                     planner=planner, analyze=lambda p: _stub_analyze(p.replace("real.", "left."))))
    assert [c[0] for c in drawer.calls] == ["generate"] * 5 and sorted(drawer.done) == sorted(i.id for i in items)
    plans = {i.id: planner.plan(i) for i in items}
    assert {c[1]: c[2]["seed"] for c in drawer.calls} == {k: p.seed for k, p in plans.items()}
    assert sorted(p.name for p in (out / "counterparts").iterdir()) == sorted(i.image_path for i in items)
    assert summary.n_done == 4 and summary.n_failed == 1  # the item without a real image still fails, named
    # a re-run draws nothing again
    asyncio.run(run_mining(items, images=real, counterparts=None, out=out, vlm=None, drawer=drawer, planner=planner,
                           analyze=lambda p: _stub_analyze(p)))
    assert len(drawer.calls) == 5
