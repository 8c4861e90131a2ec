"""The one batch driver (`portraitcraft.batch.run_batch`): bounded concurrency, resume by skipping finished
keys, ONE failure policy (a PortraitcraftError is that item's failure and the others go on; anything else is a
bug that cancels the items in flight and stops the run, leaving the finished rows), progress callbacks."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from portraitcraft.batch import run_batch
from portraitcraft.errors import InputError
from portraitcraft.runs import RunFolder, failed_row


async def test_at_most_concurrency_items_in_flight_and_results_in_input_order() -> None:
    live, peak = 0, 0

    async def work(n: int) -> int:
        nonlocal live, peak
        live += 1
        peak = max(peak, live)
        await asyncio.sleep(0.001 * (10 - n))  # later items finish first
        live -= 1
        return n * n

    started: list[int] = []
    out = await run_batch(range(10), work, key=str, concurrency=3, skip={"4"}, on_start=started.append)
    assert peak == 3
    assert list(out.results) == [str(n) for n in range(10) if n != 4]
    assert out.results["9"] == 81 and out.skipped == ["4"] and 4 not in started


async def test_expected_failures_are_rows_the_others_go_on(tmp_path: Path) -> None:
    run = RunFolder(tmp_path / "run")

    async def work(item: str) -> dict:
        if item == "bad":
            raise InputError("item bad: image_path is empty")
        return {"id": item, "status": "finished"}

    out = await run_batch(["a", "bad", "c"], work, key=str, concurrency=2,
                          on_done=lambda item, row: run.results.append(row),
                          on_failed=lambda item, exc: run.results.append(failed_row(item, exc)))
    rows = {r["id"]: r for r in run.results.rows()}
    assert rows["a"]["status"] == rows["c"]["status"] == "finished"
    assert rows["bad"]["status"] == "failed" and rows["bad"]["error"] == "item bad: image_path is empty"
    assert rows["bad"]["error_type"] == "InputError" and list(out.failed) == ["bad"]


async def test_a_bug_cancels_the_items_in_flight_and_stops_the_run(tmp_path: Path) -> None:
    run = RunFolder(tmp_path / "run")
    cancelled: list[str] = []

    async def work(item: str) -> dict:
        if item == "bug":
            await asyncio.sleep(0.01)
            raise KeyError("width")
        try:
            await asyncio.sleep(0 if item == "a" else 10)
        except asyncio.CancelledError:
            cancelled.append(item)
            raise
        return {"id": item, "status": "finished"}

    with pytest.raises(KeyError):
        await run_batch(["a", "bug", "slow", "never"], work, key=str, concurrency=3,
                        on_done=lambda item, row: run.results.append(row))
    assert [r["id"] for r in run.results.rows()] == ["a"]  # finished work stays; a re-run resumes after it
    assert "slow" in cancelled


async def test_cancelling_the_caller_cancels_every_worker() -> None:
    running: set[str] = set()

    async def work(item: str) -> None:
        running.add(item)
        try:
            await asyncio.sleep(10)
        finally:
            running.discard(item)

    task = asyncio.create_task(run_batch(["a", "b"], work, key=str, concurrency=2))
    await asyncio.sleep(0.01)
    assert running == {"a", "b"}
    task.cancel()  # what Ctrl-C does to asyncio.run's main task
    with pytest.raises(asyncio.CancelledError):
        await task
    assert running == set()
