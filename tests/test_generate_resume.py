"""Resume after SIGKILL: every item ends exactly once in results.jsonl, nothing finished is redone, no half
files; and the CLI contract (--json summary keys, --prompt, --ids, --limit, --resume) end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKER = ROOT / "tests" / "generate_worker.py"


def start(out: Path, n: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, str(WORKER), str(out), str(n)], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def result_ids(out: Path) -> list[str]:
    path = out / "results.jsonl"
    return [json.loads(line)["id"] for line in path.read_text().splitlines()] if path.exists() else []


def test_resume_after_sigkill(tmp_path: Path) -> None:
    out = tmp_path / "run"
    n = 8
    proc = start(out, n)
    deadline = time.monotonic() + 120
    while len(result_ids(out)) < 2:  # some items finished, others in flight
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
        assert time.monotonic() < deadline, "the worker made no progress"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    before = result_ids(out)
    assert 2 <= len(before) < n
    proc = start(out, n)
    assert proc.wait(timeout=180) == 0, proc.stderr.read().decode()[-3000:] if proc.stderr else ""
    after = result_ids(out)
    assert sorted(after) == sorted(f"item{i:02d}" for i in range(n))  # every item exactly once
    assert after[:len(before)] == before
    [calls_file] = out.glob("calls-*.json")
    redrawn = {c[1] for c in json.loads(calls_file.read_text())}
    assert not redrawn & set(before), "an item finished before the kill was drawn again"
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert all(r["status"] == "done" and r["passed"] for r in rows)
    leftovers = [p for p in out.rglob("*") if p.is_file() and p.name not in (".id", ".lock")  # id marker, lock
                 and (p.name.startswith(".") or p.suffix == ".tmp")]
    assert leftovers == [], leftovers
    for r in rows:
        for h in r["history"]:
            assert (out / h["image"]).stat().st_size > 0


def cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}"}
    return subprocess.run([sys.executable, "-m", "portraitcraft.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def test_cli_contract_errors(tmp_path: Path) -> None:
    res = cli(["generate", "--prompt", "x", str(ROOT / "examples" / "track_2_test.json")], tmp_path)
    assert res.returncode != 0 and "not both" in res.stderr
    res = cli(["generate", str(ROOT / "examples" / "track_2_test.json"), "--strategy", "many"], tmp_path)
    assert res.returncode != 0 and "--strategy 'many'" in res.stderr
    res = cli(["generate", str(ROOT / "examples" / "track_2_test.json"), "--ids", "nope"], tmp_path)
    assert res.returncode != 0 and "no item with id nope" in res.stderr
    res = cli(["generate", "--help"], tmp_path)
    for flag in ("--config", "--out", "--rules", "--max-rounds", "--limit", "--ids", "--resume", "--prompt",
                 "--init-images", "--strategy", "--json"):
        assert flag in res.stdout


def test_cli_json_summary_ids_limit_and_resume(tmp_path: Path) -> None:
    from generate_fixtures import paint

    specs = json.loads((ROOT / "examples" / "track_2_test.json").read_text())
    init = tmp_path / "init"
    init.mkdir()
    for spec in specs:
        paint(96, 128, 0.3).save(init / spec["image_path"])
    base = ["generate", str(ROOT / "examples" / "track_2_test.json"),
            "--config", str(ROOT / "configs" / "offline.toml"), "--init-images", str(init), "--max-rounds", "0",
            "--out", str(tmp_path / "run"), "--json"]
    first_id = Path(specs[1]["image_path"]).stem
    res = cli([*base, "--ids", first_id], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads(res.stdout)
    assert {"n_items", "n_done", "n_failed", "pass_rate", "mean_rounds", "gpu_utilisation"} <= set(summary)
    assert summary["n_items"] == 1 and summary["n_done"] == 1 and summary["mean_rounds"] == 0
    res = cli([*base, "--limit", "3"], tmp_path)
    assert res.returncode != 0 and "--resume" in res.stderr  # the folder exists: no silent overwrite
    res = cli([*base, "--limit", "3", "--resume"], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads(res.stdout)
    assert summary["n_items"] == 3 and summary["n_done"] + summary["n_failed"] == 3
    ids = [json.loads(line)["id"] for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert sorted(ids) == sorted(Path(s["image_path"]).stem for s in specs[:3])  # the --ids item not redone
    report = (tmp_path / "run" / "report.html").read_text()
    assert 'src="items/' in report and 'src="submission/' in report
