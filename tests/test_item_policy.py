"""The per-item failure policy: an expected failure (PortraitcraftError) is a failed row and the run goes on;
anything else is a bug that stops the run, leaving the finished rows for a resume."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from portraitcraft.errors import InputError
from portraitcraft.runs import RunFolder, arun_item, run_item


def test_expected_failures_are_rows_and_bugs_stop_the_run(tmp_path: Path) -> None:
    run = RunFolder(tmp_path / "run")

    def work(item: str) -> dict:
        if item == "bad":
            raise InputError("item bad: image_path is empty")
        if item == "bug":
            raise KeyError("width")
        return {"image": f"{item}.png"}

    with pytest.raises(KeyError):
        for item in ("a", "bad", "bug", "never"):
            run.results.append(run_item(item, lambda item=item: work(item)))
    rows = run.results.rows()
    assert [(r["id"], r["status"]) for r in rows] == [("a", "finished"), ("bad", "failed")]
    assert rows[1]["error"] == "item bad: image_path is empty" and rows[1]["error_type"] == "InputError"
    assert run.results.done_ids() == {"a"}  # a re-run redoes "bad" and everything after the bug


def test_async_policy_matches() -> None:
    async def ok() -> dict:
        return {"x": 1}

    async def expected() -> dict:
        raise InputError("nope")

    async def bug() -> dict:
        raise ZeroDivisionError

    assert asyncio.run(arun_item("a", ok)) == {"id": "a", "status": "finished", "x": 1}
    assert asyncio.run(arun_item("b", expected))["status"] == "failed"
    with pytest.raises(ZeroDivisionError):
        asyncio.run(arun_item("c", bug))
