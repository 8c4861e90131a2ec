from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from portraitcraft.config import load_config
from portraitcraft.errors import InputError
from portraitcraft.runs import ResultsLog, RunFolder, atomic_write_json

WRITER = """
import sys
from portraitcraft.runs import ResultsLog
log = ResultsLog(sys.argv[1])
i = 0
while True:
    log.append({"id": f"item-{i}", "status": "finished", "payload": "x" * 200000})
    i += 1
"""


def test_killed_writer_never_leaves_a_partial_line(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    for _round in range(3):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)])
        deadline = time.monotonic() + 30
        while (not path.exists() or path.stat().st_size < 2_000_000) and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        log = ResultsLog(path)  # reopening repairs a torn tail, if the kill left one
        raw = path.read_bytes()
        assert raw.endswith(b"\n")
        rows = [json.loads(line) for line in raw.splitlines()]
        assert rows and all(r["status"] == "finished" and len(r["payload"]) == 200000 for r in rows)
        assert log.rows() == rows


def test_torn_tail_is_trimmed_and_appends_continue(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_bytes(b'{"id": "a", "status": "finished"}\n{"id": "b", "sta')
    log = ResultsLog(path)
    assert log.repaired_bytes == len(b'{"id": "b", "sta')
    log.append({"id": "c", "status": "failed", "error": "boom"})
    assert [r["id"] for r in log] == ["a", "c"]
    assert log.done_ids() == {"a"} and log.done_ids(None) == {"a", "c"}


def test_run_folder_manifest_has_no_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUDGE_KEY", "sk-very-secret")
    cfg = load_config(overrides={"judge": {"api_key_env": "JUDGE_KEY", "extra": {"api_key": "sk-inline"}}})
    run = RunFolder.create(tmp_path, "demo", config=cfg, command=["portraitcraft", "generate", "--api-key=sk-x"])
    manifest = json.loads((run.root / "manifest.json").read_text())
    text = json.dumps(manifest)
    assert "sk-very-secret" not in text and "sk-inline" not in text
    assert manifest["config"]["judge"]["api_key_env"] == "JUDGE_KEY"
    assert manifest["packages"]["pydantic"] and manifest["started"]
    with pytest.raises(InputError, match="already exists"):
        RunFolder.create(tmp_path, "demo", config=cfg)
    again = RunFolder.create(tmp_path, "demo", config=cfg, resume=True)
    assert json.loads((again.root / "manifest.json").read_text())["started"] == manifest["started"]


def test_item_files_cannot_escape(tmp_path: Path) -> None:
    run = RunFolder(tmp_path / "run")
    for raw in ("../../evil", "/etc/passwd", "a\x00b", "x" * 500):
        path = run.item_file(raw, "../draft.png")
        assert path.resolve().is_relative_to((tmp_path / "run" / "items").resolve())
    assert run.item_dir("a/b") != run.item_dir("a_b")


def test_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    atomic_write_json(tmp_path / "x.json", {"a": 1})
    atomic_write_json(tmp_path / "x.json", {"a": 2})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": 2}
    assert os.listdir(tmp_path) == ["x.json"]
