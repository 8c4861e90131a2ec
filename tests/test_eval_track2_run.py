"""`eval track2` as a run: hung endpoints are bounded, items stay concurrent, Ctrl-C keeps finished work,
exit codes tell "nothing scored" and "some failed", and only expected failures become failed rows."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_vlm import API_KEY_ENV, Answer, FakeVLMServer
from PIL import Image
from silent_server import SilentServer
from test_judge import judge_cfg, verdict
from typer.testing import CliRunner

from portraitcraft.agents.judge import JudgeResult
from portraitcraft.cli import app
from portraitcraft.errors import InputError
from portraitcraft.eval.track2 import judge_items
from portraitcraft.schemas import Track2Spec

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(sys.executable).with_name("portraitcraft")


def write_set(folder: Path, n: int) -> tuple[Path, Path]:
    images = folder / "images"
    images.mkdir(parents=True)
    records: list[dict[str, Any]] = []
    for i in range(n):
        Image.new("RGB", (16, 16), (10 * i, 0, 0)).save(images / f"gen_{i}.png")
        records.append({"image_path": f"gen_{i}.png", "content_description": f"person {i}",
                        "composition_analysis": "centred"})
    items = folder / "items.json"
    items.write_text(json.dumps(records))
    return items, images


def script_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTRAITCRAFT_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PORTRAITCRAFT_CACHE_DIR"] = str(tmp_path / "cache")
    env["COLUMNS"] = "200"
    return env


def start_script(args: list[str], tmp_path: Path) -> subprocess.Popen[str]:
    assert SCRIPT.is_file(), f"the console script is not installed next to {sys.executable}"
    return subprocess.Popen([str(SCRIPT), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path, env=script_env(tmp_path))


@pytest.fixture()
def silent() -> Iterator[SilentServer]:
    with SilentServer() as server:
        yield server


def test_a_server_that_never_answers_fails_eight_items_concurrently_and_fast(
    silent: SilentServer, tmp_path: Path,
) -> None:
    """Before: auto mode judged one image at a time until it knew the endpoint, each attempt waiting the full
    timeout; 4 images had no result after 25 minutes."""
    items, images = write_set(tmp_path, 8)
    common = ["eval", "track2", str(items), "--images", str(images), "--json", "--no-progress",
              "--set", f"judge.base_url={silent.base_url}", "--set", "judge.timeout=2"]
    started = time.monotonic()
    proc = start_script([*common, "--set", "judge.mode=sampled"], tmp_path)
    stdout, stderr = proc.communicate(timeout=120)
    elapsed = time.monotonic() - started
    assert proc.returncode == 3, stderr  # nothing scored
    report = json.loads(stdout)
    assert (report["n_scored"], report["n_failed"]) == (0, 8)
    assert sorted(f["image_path"] for f in report["failures"]) == [f"gen_{i}.png" for i in range(8)]
    assert all("timed out after 2s" in f["error"] for f in report["failures"]), report["failures"]
    assert silent.max_open >= 8  # every item's request was open at the same time
    assert elapsed < 60

    # auto mode (the default) probes the endpoint once before any image: its failure fails every item at once
    started = time.monotonic()
    proc = start_script([*common, "--set", "judge.max_retries=1"], tmp_path)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 3, stderr
    report = json.loads(stdout)
    assert report["n_failed"] == 8 and all("judge probe" in f["error"] and "timed out after 2s" in f["error"]
                                           for f in report["failures"])
    assert time.monotonic() - started < 30


def test_ctrl_c_ends_the_run_promptly_keeping_what_finished(fake_vlm: FakeVLMServer, tmp_path: Path) -> None:
    fake_vlm.script.default(fn=lambda body: Answer(content=json.dumps(verdict(70, 60)), delay=0.7))
    items, images = write_set(tmp_path, 8)
    out = tmp_path / "scores.csv"
    proc = start_script(["eval", "track2", str(items), "--images", str(images), "--out", str(out), "--no-progress",
                         "--set", f"judge.base_url={fake_vlm.base_url}", "--set", f"judge.model={fake_vlm.model}",
                         "--set", f"judge.api_key_env={API_KEY_ENV}", "--set", "judge.mode=sampled",
                         "--set", "judge.samples=1", "--set", "judge.max_concurrency=1"], tmp_path)
    deadline = time.monotonic() + 60
    while len(fake_vlm.chat_requests) < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)  # two images judged, a third in flight
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    interrupted = time.monotonic()
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert time.monotonic() - interrupted < 10
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    assert 2 <= len(rows) < 8 and all(float(r["content"]) == 70.0 for r in rows)
    assert f"interrupted: {len(rows)} of 8 images finished; their scores are in {out}" in stderr
    assert "Traceback" not in stderr


def test_exit_codes_for_nothing_scored_and_some_failed(fake_vlm: FakeVLMServer, tmp_path: Path) -> None:
    items, images = write_set(tmp_path, 3)
    (images / "gen_2.png").unlink()
    fake_vlm.script.default(verdict(80, 70))
    args = ["eval", "track2", str(items), "--images", str(images), "--json", "--no-progress",
            "--set", f"judge.base_url={fake_vlm.base_url}", "--set", f"judge.model={fake_vlm.model}",
            "--set", f"judge.api_key_env={API_KEY_ENV}", "--set", "judge.mode=sampled", "--set", "judge.samples=1",
            "--set", f"run.cache_dir={tmp_path / 'cache'}"]
    partial = CliRunner().invoke(app, args)
    assert partial.exit_code == 0, partial.output  # a partial result is still useful by default
    assert json.loads(partial.stdout)["n_failed"] == 1 and json.loads(partial.stdout)["mode"] == "sampled"
    strict = CliRunner().invoke(app, [*args, "--strict"])
    assert strict.exit_code == 4 and json.loads(strict.stdout)["n_scored"] == 2
    for image in images.iterdir():
        image.unlink()
    nothing = CliRunner().invoke(app, args)
    assert nothing.exit_code == 3 and json.loads(nothing.stdout)["n_scored"] == 0
    assert "nothing scored: all 3 image(s) failed" in nothing.stderr


class StubJudge:
    """A judge double: item `boom` hits a bug, item `refused` an expected failure, item `slow` hangs."""

    def __init__(self) -> None:
        self.cfg = judge_cfg(FakeVLMServer(), item_deadline=0.5)
        self.method = "sampled"
        self.cancelled = 0
        self.slow_started = 0

    async def prepare(self) -> str:
        return "sampled"

    async def score(self, image: Any, content: str, composition: str) -> JudgeResult:
        import asyncio

        if content == "boom":
            raise KeyError("a bug, not a judge failure")
        if content == "refused":
            raise InputError("the endpoint refused this image")
        self.slow_started += content == "slow"
        try:
            await asyncio.sleep(30 if content == "slow" else 0)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return JudgeResult(50, 50, 0, 0, "c", "k", "sampled", "samples", 1)


async def test_expected_failures_are_rows_and_anything_else_stops_the_run(tmp_path: Path) -> None:
    _, images = write_set(tmp_path, 1)
    spec = lambda content: Track2Spec(image_path="gen_0.png", content=content, composition="k")  # noqa: E731
    judge = StubJudge()
    scores = await judge_items([spec("fine"), spec("refused"), spec("slow")], images, judge)  # type: ignore[arg-type]
    assert scores[0].result is not None
    assert scores[1].error == "InputError: the endpoint refused this image"
    assert scores[2].error is not None and "within the 0.5s item deadline" in scores[2].error
    judge = StubJudge()
    judge.cfg = judge_cfg(FakeVLMServer(), item_deadline=60)
    with pytest.raises(KeyError, match="a bug"):  # before: a silent "failed" row
        await judge_items([spec("slow"), spec("boom"), spec("slow")], images, judge)  # type: ignore[arg-type]
    # the rest of the run was stopped, not left running: every slow item that had started was cancelled (one
    # still waiting for its image or the semaphore when the bug struck never starts)
    assert judge.slow_started >= 1 and judge.cancelled == judge.slow_started


def test_a_bug_stops_the_cli_run_and_keeps_what_finished(
    fake_vlm: FakeVLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio

    from portraitcraft.agents.judge import Judge

    async def score(self: Judge, image: Any, content: str, composition: str) -> JudgeResult:
        if content == "person 2":
            await asyncio.sleep(0.3)
            raise KeyError("a bug")
        return JudgeResult(60, 40, 0, 0, "c", "k", "sampled", "samples", 1)

    monkeypatch.setattr(Judge, "score", score)
    items, images = write_set(tmp_path, 3)
    out = tmp_path / "scores.csv"
    res = CliRunner().invoke(app, ["eval", "track2", str(items), "--images", str(images), "--out", str(out),
                                   "--no-progress", "--set", f"judge.base_url={fake_vlm.base_url}",
                                   "--set", "judge.mode=sampled"])
    assert isinstance(res.exception, KeyError)  # not a "failed" row: the run stops
    with out.open() as fh:
        assert sorted(r["image_path"] for r in csv.DictReader(fh)) == ["gen_0.png", "gen_1.png"]
    assert "stopped by an unexpected error: 2 of 3 images finished" in res.stderr
