"""The one batch driver: `generate`, `understand`, `mine` (and its counterpart drawing) and `eval track2` run
their items through `run_batch`.

- Bounded concurrency: `concurrency` workers pull items in input order (memory stays flat however many items).
- Resume: an item whose key is in `skip` is not run (its row exists); LangGraph thread resume is the graphs'
  part (`portraitcraft.graphs.threads`).
- ONE failure policy: a `PortraitcraftError` raised by `work` is that item's failure (`on_failed` writes its
  row) and the others go on; any other exception is a bug: the items in flight are cancelled and it
  propagates, so the run stops, finished rows stay, and a re-run resumes.
- Ctrl-C (KeyboardInterrupt or cancellation of the caller): the items in flight are cancelled at once; what
  finished is kept by the callbacks that already ran.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from portraitcraft.errors import PortraitcraftError

T = TypeVar("T")
R = TypeVar("R")

Callback = Callable[..., Awaitable[None] | None]


@dataclass
class BatchOutcome(Generic[R]):
    """What a batch did: results and failures by item key (in input order), and the keys skipped."""

    results: dict[str, R] = field(default_factory=dict)
    failed: dict[str, PortraitcraftError] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


async def _call(callback: Callback | None, *args: Any) -> None:
    if callback is not None:
        result = callback(*args)
        if inspect.isawaitable(result):
            await result


async def run_batch(
    items: Iterable[T],
    work: Callable[[T], Awaitable[R]],
    *,
    key: Callable[[T], str],
    concurrency: int,
    skip: Collection[str] = (),
    on_start: Callback | None = None,
    on_done: Callback | None = None,
    on_failed: Callback | None = None,
) -> BatchOutcome[R]:
    """Run `work(item)` for every item not skipped, `concurrency` at a time.

    Args:
        items (iterable): the items, in the order they should start.
        work (async callable): one item's work; its return value is kept in `results`.
        key (callable): item -> its key (the item id or thread id; unique in a batch).
        concurrency (int): items in flight at once (at least 1).
        skip (collection of str, optional): keys already finished (resume): not run, listed in `skipped`.
        on_start (callable, optional): `on_start(item)` before its work (progress display).
        on_done (callable, optional): `on_done(item, result)` when it finished (write its row here).
        on_failed (callable, optional): `on_failed(item, error)` for a `PortraitcraftError` (its failed row).

    Returns:
        BatchOutcome: results and failures by key, in input order, and the skipped keys.

    Example:
        >>> async def double(x: int) -> int:
        ...     return 2 * x
        >>> out = asyncio.run(run_batch([1, 2, 3], double, key=str, concurrency=2, skip={"2"}))
        >>> out.results, out.skipped
        ({'1': 2, '3': 6}, ['2'])
    """
    outcome: BatchOutcome[R] = BatchOutcome()
    todo: list[T] = []
    for item in items:
        (outcome.skipped if key(item) in skip else todo).append(item)
    outcome.skipped = [key(i) for i in outcome.skipped]  # type: ignore[arg-type]
    order = {key(item): n for n, item in enumerate(todo)}
    queue = iter(todo)  # shared by the workers; `next` never awaits, so no two workers take the same item

    async def worker() -> None:
        for item in queue:
            await _call(on_start, item)
            try:
                result = await work(item)
            except PortraitcraftError as exc:  # this item's expected failure: recorded, the others go on
                outcome.failed[key(item)] = exc
                await _call(on_failed, item, exc)
                continue
            outcome.results[key(item)] = result
            await _call(on_done, item, result)

    workers = [asyncio.create_task(worker()) for _ in range(min(max(1, concurrency), len(todo)))]
    try:
        if workers:
            done, _ = await asyncio.wait(workers, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
    finally:  # a bug in one item, or Ctrl-C: stop the others at once
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    outcome.results = dict(sorted(outcome.results.items(), key=lambda kv: order[kv[0]]))
    outcome.failed = dict(sorted(outcome.failed.items(), key=lambda kv: order[kv[0]]))
    return outcome


__all__ = ["BatchOutcome", "run_batch"]
