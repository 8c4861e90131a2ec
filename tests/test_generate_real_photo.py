"""The reframe path on a real photograph: the geometric critic (real mediapipe) finds the placement and frame
faults, the reframing editor fixes them with a crop, the critic passes; plus best-of-n / one-shot at the same
image budget as the loop, with the cost of each final image."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from generate_fixtures import ScriptedDrawer
from PIL import Image
from test_generate_graph import rows_by_id, run

from portraitcraft.schemas import Track2Spec
from portraitcraft.tools.provenance import REFRAME_KEY, read_provenance

pytest.importorskip("mediapipe")
skimage_data = pytest.importorskip("skimage.data")


async def real_photo_run(tmp_path: Path, composition: str) -> tuple[dict, Path, ScriptedDrawer]:
    from portraitcraft.agents.planner.targets import extract_targets

    init = tmp_path / "init"
    init.mkdir()
    Image.fromarray(skimage_data.astronaut()).save(init / "astronaut.png")  # subject centred, square frame
    spec = Track2Spec(image_path="astronaut.png", content="An astronaut in an orange suit with a flag.",
                      composition=composition)
    drawer = ScriptedDrawer()
    _, folder = await run(tmp_path, [spec], drawer, init_images=init, analyze=None, geometry=None, reframe=True,
                          targets=extract_targets(spec.content, spec.composition),
                          sections={"critic": {"geometry": True}, "planner": {"long_side": 256}})
    return rows_by_id(folder)["astronaut"], folder.root, drawer


def plain_crop_of(final: Image.Image, source: Image.Image, record: dict) -> bool:
    """The final image is the source's crop box (mirrored first when recorded), downscaled: nothing invented."""
    if record["mirrored"]:
        source = source.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    x0, y0, x1, y1 = record["crop_box"]
    assert 0 <= x0 < x1 <= source.width and 0 <= y0 < y1 <= source.height and record["padding"] == [0, 0, 0, 0]
    expected = source.crop((x0, y0, x1, y1)).resize(final.size, Image.Resampling.LANCZOS)
    diff = np.abs(np.asarray(expected, float) - np.asarray(final.convert("RGB"), float))
    return float(diff.mean()) < 1.0


async def test_reframe_fixes_a_real_photo_until_the_critic_passes(tmp_path: Path) -> None:
    # centred already; the frame must become vertical: a pad-free 9:16 crop exists
    row, root, drawer = await real_photo_run(tmp_path, "The astronaut stands in the centre of a vertical frame.")
    first, last = row["history"][0], row["history"][-1]
    fired = {f["rule"]: f for f in first["findings"] if f["detected"]}
    assert fired["orientation"]["measured"] == "square" and "horizontal" not in fired
    assert first["action"] == "reframe" and last["made_by"] == "reframe" and last["passed"]
    assert row["passed"] and row["rounds"] == 1 and row["cost"]["reframes"] == 1 and row["needs_outpainting"] == []
    assert drawer.calls == []  # no model was needed
    record = last["reframe"]
    assert record["fill"] == "none" and not record["needs_outpainting"]
    assert record["resized"] == "none" or record["resized"].startswith("downscaled")  # the plan is at the photo scale
    with Image.open(root / row["final_image"]) as im:
        plan = row["canvas"]
        assert im.size == (plan["width"], plan["height"]) and im.width < im.height  # the planned canvas
        assert abs(im.width / im.height - 9 / 16) < 0.01 * 9 / 16
        x0, _, x1, _ = record["crop_box"]
        assert im.width <= x1 - x0  # never larger than the crop in source pixels
        assert plain_crop_of(im, Image.fromarray(skimage_data.astronaut()), record)
        assert json.loads(read_provenance(root / row["final_image"])[REFRAME_KEY]) == record


async def test_a_placement_no_crop_reaches_stays_open_as_needs_outpainting(tmp_path: Path) -> None:
    # the right third of a 9:16 frame: every pad-free crop cuts her elbow or leaves her centre
    row, root, _ = await real_photo_run(tmp_path, "The astronaut is placed on the right third of a vertical frame.")
    reframed = row["history"][1]
    assert row["history"][0]["action"] == "reframe" and reframed["made_by"] == "reframe"
    record = reframed["reframe"]
    assert record["needs_outpainting"] and record["fill"] == "none" and record["padding"] == [0, 0, 0, 0]
    assert not row["passed"] and row["needs_outpainting"] == ["horizontal"]
    assert row["final_round"] == 1  # the best crop, not a blurred strip nor the later edits
    with Image.open(root / row["final_image"]) as im:
        assert im.width < im.height and plain_crop_of(im, Image.fromarray(skimage_data.astronaut()), record)
    from portraitcraft.graphs.generate_report import write_report

    report = write_report(root).read_text()
    assert "needs outpainting: horizontal" in report and "NEEDS OUTPAINTING" in report


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


