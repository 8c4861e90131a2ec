"""The reframe path on a real photograph: the geometric critic (real mediapipe) finds the placement and frame
faults, the reframing editor fixes them with a crop, the critic passes; plus best-of-n / one-shot at the same
image budget as the loop, with the cost of each final image."""

from __future__ import annotations

from pathlib import Path

import pytest
from generate_fixtures import ScriptedDrawer
from PIL import Image
from test_generate_graph import rows_by_id, run

from portraitcraft.schemas import Track2Spec

pytest.importorskip("mediapipe")
skimage_data = pytest.importorskip("skimage.data")


async def test_reframe_fixes_a_real_photo_until_the_critic_passes(tmp_path: Path) -> None:
    from portraitcraft.agents.planner.targets import extract_targets

    init = tmp_path / "init"
    init.mkdir()
    Image.fromarray(skimage_data.astronaut()).save(init / "astronaut.png")  # subject centred, square frame
    spec = Track2Spec(image_path="astronaut.png", content="An astronaut in an orange suit with a flag.",
                      composition="The astronaut is placed on the right third of a vertical frame.")
    drawer = ScriptedDrawer()
    _, folder = await run(tmp_path, [spec], drawer, init_images=init, analyze=None, geometry=None, reframe=True,
                          targets=extract_targets(spec.content, spec.composition),
                          sections={"critic": {"geometry": True}})
    row = rows_by_id(folder)["astronaut"]
    first, last = row["history"][0], row["history"][-1]
    fired = {f["rule"]: f for f in first["findings"] if f["detected"]}
    assert fired["horizontal"]["expected"] == "right" and fired["horizontal"]["measured"] == "center"
    assert fired["orientation"]["measured"] == "square"
    assert first["action"] == "reframe" and last["made_by"] == "reframe" and last["passed"]
    assert row["passed"] and row["rounds"] == 1 and row["cost"]["reframes"] == 1
    assert drawer.calls == []  # no model was needed
    with Image.open(folder.root / row["final_image"]) as im:
        assert im.width < im.height


@pytest.mark.parametrize("strategy", ["best-of-n", "one-shot"])
async def test_strategies_share_the_image_budget(tmp_path: Path, strategy: str) -> None:
    # Drafts land right, right, left, right...: best-of-n keeps sampling to its budget and keeps the best.
    drawer = ScriptedDrawer(drafts=[0.8, 0.8, 0.2, 0.8])
    spec = Track2Spec(image_path="s.png", content="a woman", composition="left third")
    _, folder = await run(tmp_path, [spec], drawer, strategy=strategy, sections={
        "critic": {"geometry": True}, "loop": {"max_rounds": 3}})
    row = rows_by_id(folder)["s"]
    if strategy == "one-shot":
        assert row["rounds"] == 0 and row["verdict"] == "one-shot" and not row["passed"]
        assert row["cost"]["generations"] == 1
        return
    assert row["rounds"] == 3 and row["verdict"] == "samples-done"  # max_rounds + 1 images, like the loop
    assert [h["made_by"] for h in row["history"]] == ["draft", "regenerate", "regenerate", "regenerate"]
    assert row["cost"]["generations"] == 4 and row["cost"].get("edits", 0) == 0
    assert row["final_round"] == 2 and row["passed"]
    prompts = {c[2]["prompt"] for c in drawer.calls}
    assert len(prompts) == 1  # independent samples of the same prompt, no critic feedback
    assert len({c[2]["seed"] for c in drawer.calls}) == 4


