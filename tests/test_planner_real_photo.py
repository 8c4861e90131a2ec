"""The demo flow of issue 20 on a real photograph: the description's targets, read with their evidence, steer
the critic and the reframer. `generate --init-images` on the astronaut photo with the flag sentence reframes
her to the left third and passes; the run's pairs export feeds `train dpo`. A target the text only implies
is shown but never enforced, so the same photo passes unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest
from generate_fixtures import ScriptedDrawer
from PIL import Image
from test_generate_graph import rows_by_id, run

from portraitcraft.agents.planner.targets import extract_targets
from portraitcraft.schemas import Track2Spec

pytest.importorskip("mediapipe")
skimage_data = pytest.importorskip("skimage.data")
pytest_plugins = ["diffusion_fixtures"]

ROOT = Path(__file__).resolve().parent.parent
FLAG = "The astronaut sits on the left third of the frame, the flag filling the space to the right."


def astronaut_folder(tmp_path: Path) -> Path:
    init = tmp_path / "init"
    init.mkdir()
    Image.fromarray(skimage_data.astronaut()).save(init / "astronaut.png")  # subject centred, square frame
    return init


async def test_the_flag_sentence_reframes_her_to_the_left_third_and_the_pairs_feed_dpo(
        tmp_path: Path, tiny_zimage: Path) -> None:
    spec = Track2Spec(image_path="astronaut.png", content="An astronaut in a white suit beside a flag.",
                      composition=FLAG)
    targets = extract_targets(spec.content, spec.composition)
    assert targets.horizontal == "left" and targets.enforced("horizontal")
    drawer = ScriptedDrawer()
    _, folder = await run(tmp_path, [spec], drawer, init_images=astronaut_folder(tmp_path), analyze=None,
                          geometry=None, reframe=True, targets=targets, sections={"critic": {"geometry": True}})
    row = rows_by_id(folder)["astronaut"]
    first, last = row["history"][0], row["history"][-1]
    fired = {f["rule"]: f for f in first["findings"] if f["detected"]}
    assert fired["horizontal"]["expected"] == "left" and fired["horizontal"]["measured"] == "center"
    assert first["action"] == "reframe" and last["made_by"] == "reframe" and last["passed"] and row["passed"]
    final = next(f for f in last["findings"] if f["rule"] == "horizontal")
    assert final["measured"] == "left" and not final["detected"]
    assert drawer.calls == []  # no model was needed

    from test_train import make_cfg

    from portraitcraft.tools.pairs_export import export_pairs
    from portraitcraft.train.data import read_pairs
    from portraitcraft.train.runner import run_training

    report = export_pairs([folder.root], tmp_path / "pairs", fmt="pickapic", pose_fn=None)
    assert report.written == 1
    pairs = read_pairs(tmp_path / "pairs" / "pairs.parquet")
    assert pairs.total == 1
    result = run_training("dpo", pairs, make_cfg(tiny_zimage, tmp_path / "cache", seed=1), tmp_path / "dpo",
                          max_steps=1)
    assert result.steps == 1


async def test_an_implied_placement_is_shown_not_enforced_and_the_photo_passes_unchanged(tmp_path: Path) -> None:
    spec = Track2Spec(image_path="astronaut.png", content="An astronaut in a white suit beside a flag.",
                      composition="Generous negative space opens on the right side of the frame.")
    targets = extract_targets(spec.content, spec.composition)
    assert targets.horizontal == "left" and not targets.enforced("horizontal")
    _, folder = await run(tmp_path, [spec], ScriptedDrawer(), init_images=astronaut_folder(tmp_path),
                          analyze=None, geometry=None, reframe=True, targets=targets,
                          sections={"critic": {"geometry": True}})
    row = rows_by_id(folder)["astronaut"]
    shown = [f for f in row["history"][0]["findings"] if f["rule"] == "horizontal"]
    assert len(shown) == 1 and not shown[0]["detected"] and shown[0]["evidence"].startswith("not enforced")
    assert row["passed"] and row["rounds"] == 0 and len(row["history"]) == 1
