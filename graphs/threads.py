"""One LangGraph thread per item: the one checkpointer opener and the one reading of a thread's status, shared
by every graph's batch (generate, understand). Items run through `portraitcraft.batch.run_batch`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import aiosqlite
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

ThreadStatus = Literal["new", "interrupted", "finished"]

BUSY_TIMEOUT_MS = 30_000
"""How long a write waits for another connection's lock before SQLite says "database is locked"."""


@contextlib.asynccontextmanager
async def open_checkpointer(path: str | Path) -> AsyncIterator[AsyncSqliteSaver]:
    """A run's SQLite checkpointer: WAL mode, synchronous=NORMAL (a commit reaches the OS without an fsync: a
    killed process loses nothing; a power cut may lose the last checkpoints, which resume redoes) and a busy
    timeout. One saver per run folder and process."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    async with aiosqlite.connect(str(path)) as conn:
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=NORMAL")
        await conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        yield AsyncSqliteSaver(conn)


async def thread_status(graph: Any, config: dict[str, Any]) -> tuple[ThreadStatus, dict[str, Any]]:
    """Where a thread stands, and its values. "interrupted": a checkpoint with work left (re-enter it with
    `ainvoke(None, ...)`); "finished": values and nothing left (not `next == ()` alone: a killed thread can
    show that with pending tasks); "new": no checkpoint."""
    snapshot = await graph.aget_state(config)
    values = dict(snapshot.values or {})
    if not values:
        return "new", values
    if snapshot.next or snapshot.tasks:
        return "interrupted", values
    return "finished", values


__all__ = ["BUSY_TIMEOUT_MS", "ThreadStatus", "open_checkpointer", "thread_status"]
