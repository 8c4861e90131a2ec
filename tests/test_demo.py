"""The README's main-job command runs end to end on the bundled examples (offline, tiny random Z-Image)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from PIL import Image

pytest_plugins = ["diffusion_fixtures"]
ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.diffusion
def test_demo_writes_both_submissions(tmp_path: Path, tiny_zimage: Path) -> None:
    env = {**os.environ, "PORTRAITCRAFT_TINY_MODELS": str(tiny_zimage.parent)}
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "demo.py"), "--out", str(tmp_path), "--name", "d",
                           "--examples", str(ROOT / "examples")], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    run = tmp_path / "d"
    rows = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    specs = json.loads((ROOT / "examples" / "track_2_test.json").read_text())
    assert [r["status"] for r in rows] == ["finished"] * len(specs)
    with zipfile.ZipFile(run / "submission.zip") as zf:
        assert sorted(zf.namelist()) == sorted(s["image_path"] for s in specs)
    for row in rows:
        with Image.open(run / "submission" / next(s["image_path"] for s in specs if s["image_path"].startswith(
                row["id"]))) as im:
            assert im.size == (row["width"], row["height"])
    with zipfile.ZipFile(run / "track1_submission.zip") as zf:
        assert zf.namelist() == ["track_1_test.json"]
    assert "composite" in proc.stdout
    # the per-item outputs feed the next command as they are
    from console_script import run_script

    sub = run_script("data", "submit", "track2", ROOT / "examples" / "track_2_test.json", "--images", run / "items",
                     "--out", tmp_path / "again", "--json")
    assert sub.code == 0, sub.output
    assert json.loads(sub.stdout)["n_images"] == len(specs)
    rerun = subprocess.run([sys.executable, str(ROOT / "scripts" / "demo.py"), "--out", str(tmp_path), "--name", "d",
                            "--examples", str(ROOT / "examples")], capture_output=True, text=True, env=env,
                           cwd=ROOT, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert (run / "results.jsonl").read_text().count("\n") == len(specs)  # resumed: nothing drawn twice
    assert "finished before" in rerun.stdout
