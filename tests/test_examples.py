"""The bundled examples teach something: varied Track 1 answers and levels, and they are what
scripts/make_examples.py writes (deterministic)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from portraitcraft.eval.track1 import score_track1
from portraitcraft.schemas import ATTRIBUTES

ROOT = Path(__file__).resolve().parent.parent


def test_track1_examples_are_varied(examples_dir: Path) -> None:
    labels = json.loads((examples_dir / "track_1_test_labels.json").read_text())
    assert len({r["answer"] for r in labels}) >= 3
    assert len({r["question"] for r in labels}) >= 3
    assert len({r["criteria"][a]["level"] for r in labels for a in ATTRIBUTES}) == 3
    constant = [{"image_path": r["image_path"], "levels": dict.fromkeys(ATTRIBUTES, "B"), "total_score": 50,
                 "answer": "A"} for r in labels]
    report = score_track1(constant, examples_dir / "track_1_test_labels.json")
    assert report.qa_acc is not None and report.qa_acc <= 0.5  # a constant answer no longer scores 1.000


def test_examples_are_what_the_script_writes(examples_dir: Path, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_examples.py"), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for name in ("track_1_train.json", "track_1_test.json", "track_1_test_labels.json", "track_2_train.json",
                 "track_2_test.json", "descriptions.txt"):
        assert (tmp_path / name).read_text() == (examples_dir / name).read_text(), name
