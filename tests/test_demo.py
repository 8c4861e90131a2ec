"""The README's main command: real photos critique-corrected by the geometric critic and the reframing editor
(all pass), the tiny random model drafting to its round budget, a Track 1 baseline; a re-run resumes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
    for row in photos.values():
        first, last = row["history"][0], row["history"][-1]
        fired = {f["rule"] for f in first["findings"] if f["detected"] and f["source"] == "geometry"}
        assert {"horizontal", "orientation"} <= fired, row["id"]
        if row["id"] == "camera":  # he faces the other way: a mirror image fixes it
            assert "facing" in fired and row["history"][0]["edit"]["reframe"]["mirror"] is True
        assert first["action"] == "reframe" and last["made_by"] == "reframe" and last["passed"]
        assert row["passed"] and row["status"] == "done"
        with Image.open(tmp_path / "d" / "photos-run" / row["final_image"]) as im:
            w, h = im.size
        assert (w < h) if row["targets"]["orientation"] == "portrait" else (w == h)
    drafts = rows(tmp_path / "d" / "draft-run")
    [draft] = drafts.values()
    assert draft["status"] == "done" and not draft["passed"] and draft["verdict"] == "max-rounds"
    assert draft["rounds"] == 1 and draft["cost"]["generations"] >= 1
    assert (tmp_path / "d" / "track1_submission.zip").is_file() and "composite" in proc.stdout
    assert (tmp_path / "d" / "photos-run" / "report.html").is_file()
    rerun = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert len((tmp_path / "d" / "photos-run" / "results.jsonl").read_text().splitlines()) == 3  # resumed
