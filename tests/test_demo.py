"""The README's main command: real photos critique-corrected by the geometric critic and the reframing editor
(plain crops on the planned canvas with their provenance; what no crop reaches stays open as "needs
outpainting"), the tiny random model drafting to its round budget, a Track 1 baseline; a re-run resumes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest_plugins = ["diffusion_fixtures"]
ROOT = Path(__file__).resolve().parent.parent


def rows(run: Path) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, (run / "results.jsonl").read_text().splitlines())}


@pytest.mark.diffusion
def test_demo_reframes_real_photos_to_a_pass_and_drafts_to_the_budget(tmp_path: Path, tiny_zimage: Path) -> None:
    pytest.importorskip("mediapipe")
    env = {**os.environ, "PORTRAITCRAFT_TINY_MODELS": str(tiny_zimage.parent), "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, str(ROOT / "scripts" / "demo.py"), "--out", str(tmp_path), "--name", "d",
           "--draft-items", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    photos = rows(tmp_path / "d" / "photos-run")
    assert set(photos) == {"astronaut", "camera", "grace_hopper"}
    sources = tmp_path / "d" / "photos"
    for row in photos.values():
        first = row["history"][0]
        fired = {f["rule"] for f in first["findings"] if f["detected"] and f["source"] == "geometry"}
        assert {"horizontal", "orientation"} <= fired, row["id"]
        if row["id"] == "camera":  # he faces the other way: a mirror image fixes it
            assert "facing" in fired and row["history"][0]["edit"]["reframe"]["mirror"] is True
        assert first["action"] == "reframe" and row["status"] == "done"
        final = row["history"][row["final_round"]]
        record = final["reframe"]
        assert final["made_by"] == "reframe" and record["fill"] == "none" and record["padding"] == [0, 0, 0, 0]
        # what a crop cannot reach stays open, marked; what it can, passes
        assert row["passed"] == (not row["needs_outpainting"]) and row["needs_outpainting"] in ([], ["horizontal"])
        with Image.open(tmp_path / "d" / "photos-run" / row["final_image"]) as im:
            meta = json.loads(im.info["portraitcraft:reframe"])
            final_pixels = np.asarray(im.convert("RGB"), float)
            size = im.size
        assert meta == record  # the submission keeps the final round's provenance
        plan = row["canvas"]
        assert abs(size[0] / size[1] - plan["width"] / plan["height"]) < 0.01 * plan["width"] / plan["height"]
        x0, y0, x1, y1 = record["crop_box"]
        assert size[0] <= x1 - x0 and size[1] <= y1 - y0  # never larger than the crop in source pixels
        with Image.open(sources / f"{row['id']}.png") as src:
            src = src.convert("RGB")
            if record["mirrored"]:
                src = src.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            crop = np.asarray(src.crop((x0, y0, x1, y1)).resize(size, Image.Resampling.LANCZOS), float)
        assert np.abs(crop - final_pixels).mean() < 1.0  # a plain crop of the source: nothing invented
    assert photos["camera"]["passed"] and photos["grace_hopper"]["needs_outpainting"] == ["horizontal"]
    drafts = rows(tmp_path / "d" / "draft-run")
    [draft] = drafts.values()
    assert draft["status"] == "done" and not draft["passed"] and draft["verdict"] == "max-rounds"
    assert draft["rounds"] == 1 and draft["cost"]["generations"] >= 1
    assert (tmp_path / "d" / "track1_submission.zip").is_file() and "composite" in proc.stdout
    assert (tmp_path / "d" / "photos-run" / "report.html").is_file()
    rerun = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert len((tmp_path / "d" / "photos-run" / "results.jsonl").read_text().splitlines()) == 3  # resumed
