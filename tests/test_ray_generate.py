"""`portraitcraft generate` on the examples with `[run] executor = "ray"` (a local Ray the run starts on
127.0.0.1, two CPU actors, the tiny random Z-Image): SIGKILLed mid-run and resumed, it ends with the same
results rows and byte-identical images as the in-process lane, and leaves no process behind."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")

from ray_helpers import descendants, not_on_loopback, wait_gone  # noqa: E402

pytest_plugins = ["diffusion_fixtures"]
pytestmark = [pytest.mark.ray, pytest.mark.diffusion, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parent.parent
N_ITEMS = 2
RAY_SETS = ["run.executor=\"ray\"", "ray.actors=2", "ray.gpus_per_actor=0", "ray.num_cpus=2",
            "ray.object_store_gb=0.08"]
VOLATILE = ("timings", "cost")  # wall-clock figures; everything else must match


def command(out: Path, model: Path, sets: list[str], *extra: str) -> list[str]:
    args = [sys.executable, "-m", "portraitcraft.cli", "generate", str(ROOT / "examples" / "track_2_test.json"),
            "--config", str(ROOT / "configs" / "offline.toml"), "--limit", str(N_ITEMS), "--max-rounds", "1",
            "--out", str(out), "--json", *extra]
    for s in [f"generator.model={json.dumps(str(model))}", f"editor.model={json.dumps(str(model))}",
              "planner.long_side=64", "run.concurrency=1", *sets]:
        args += ["--set", s]
    return args


def env() -> dict[str, str]:
    # one intra-op thread in the driver too: CPU float results depend on it, and Ray actors run with one
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0"}


def rows(out: Path) -> dict[str, dict[str, Any]]:
    path = out / "results.jsonl"
    if not path.exists():
        return {}
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {r["id"]: {k: v for k, v in r.items() if k not in VOLATILE} for r in lines}


def images(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for sub in ("items", "submission") for p in (out / sub).rglob("*")
            if p.is_file()}


def test_a_ray_run_killed_and_resumed_matches_the_lane(tmp_path: Path, tiny_zimage: Path) -> None:
    lane_out, ray_out = tmp_path / "lane", tmp_path / "ray"
    # the lane's reference run goes alongside the Ray run (one thread each: the results do not depend on it)
    logs = {name: (tmp_path / f"{name}.out").open("wb") for name in ("lane", "lane.err")}
    lane = subprocess.Popen(command(lane_out, tiny_zimage, []), env=env(), cwd=tmp_path, stdout=logs["lane"],
                            stderr=logs["lane.err"])
    try:
        check_ray_run(tmp_path, ray_out, tiny_zimage)
        assert lane.wait(timeout=400) == 0, (tmp_path / "lane.err.out").read_text()[-3000:]
    finally:
        if lane.poll() is None:
            lane.kill()
        for fh in logs.values():
            fh.close()
    want_rows, want_images = rows(lane_out), images(lane_out)
    assert len(want_rows) == N_ITEMS and all(r["status"] == "done" for r in want_rows.values())
    assert json.loads((tmp_path / "lane.out").read_text())["gpu"]["executor"] == "lane"
    got_rows = rows(ray_out)
    lines = (ray_out / "results.jsonl").read_text().splitlines()
    assert len(lines) == N_ITEMS  # every item exactly once
    assert got_rows == want_rows
    got_images = images(ray_out)
    assert sorted(got_images) == sorted(want_images)
    assert all(got_images[k] == want_images[k] for k in want_images), "an image differs from the lane's"


def check_ray_run(tmp_path: Path, ray_out: Path, tiny_zimage: Path) -> None:
    """The Ray run: SIGKILLed once an item is done, resumed to the end; loopback only, no process left."""
    seen: set[int] = set()
    with (tmp_path / "ray.err").open("wb") as err_log:
        proc = subprocess.Popen(command(ray_out, tiny_zimage, RAY_SETS), env=env(), cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=err_log)
    try:
        deadline = time.monotonic() + 300
        while not rows(ray_out):  # kill once an item has finished and others are in flight
            assert proc.poll() is None, (tmp_path / "ray.err").read_text()[-3000:]
            assert time.monotonic() < deadline, "the Ray run made no progress"
            seen |= descendants(proc.pid)
            time.sleep(0.1)
        seen |= descendants(proc.pid)
        assert not not_on_loopback(seen | {proc.pid}), "the run's Ray listens beyond 127.0.0.1"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = rows(ray_out)
    assert 1 <= len(before) < N_ITEMS
    finished = {p: p.stat().st_mtime_ns for i in before for p in (ray_out / "items").glob(f"{i}*/*") if p.is_file()}
    assert finished
    killed_run = seen

    with (tmp_path / "resume.out").open("wb") as out_log, (tmp_path / "resume.err").open("wb") as err_log:
        resumed = subprocess.Popen(command(ray_out, tiny_zimage, RAY_SETS, "--resume"), env=env(), cwd=tmp_path,
                                   stdout=out_log, stderr=err_log)
    seen = set()
    deadline = time.monotonic() + 400
    while resumed.poll() is None and time.monotonic() < deadline:
        seen |= descendants(resumed.pid)
        time.sleep(0.2)
    if resumed.poll() is None:
        resumed.kill()
    assert resumed.wait(timeout=30) == 0, (tmp_path / "resume.err").read_text()[-3000:]
    summary = json.loads((tmp_path / "resume.out").read_text())
    assert summary["n_done"] == N_ITEMS and summary["gpu_utilisation"] > 0
    assert summary["gpu"]["executor"] == "ray" and set(summary["gpu"]["worker_utilisation"]) == {"actor-0", "actor-1"}
    assert not wait_gone(seen, timeout=30), "Ray processes left after the resumed run ended"
    # the killed driver's Ray winds down by itself (its agents give up on the dead GCS after about a minute)
    left = wait_gone(killed_run, timeout=90)
    for pid in left:  # clean up, then fail
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).kill()
    assert not left, f"the killed driver's Ray processes outlived it: {sorted(left)}"

    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # nothing finished before the kill was redone
