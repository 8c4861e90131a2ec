"""The GPU lane (one worker thread runs every GPU job, by priority) and the model pool (pipelines kept on the
GPU up to a memory budget, least recently used moved off first, `from_pipe` variants sharing weights).

Why one worker: a single GPU is never oversubscribed, while VLM calls run concurrently elsewhere; with many
items in flight the lane stays busy. Utilisation = busy time / makespan (first submit to last finish).
No torch import here: the lane runs any callable, the pool duck-types pipelines (`.to`, `.components`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import itertools
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)

PRIORITY_IN_PROGRESS = 0
"""Default priority of a job whose item already had a job started (finish started items first)."""
PRIORITY_NEW = 10
"""Default priority of the first job of an item."""


@dataclass(frozen=True)
class LaneStats:
    """Busy-time accounting of a lane. `utilisation` = busy / elapsed (0 before the first job)."""

    busy_seconds: float
    elapsed_seconds: float
    jobs: int
    failed: int
    queued: int
    per_kind_seconds: dict[str, float]
    per_kind_jobs: dict[str, int]

    @property
    def utilisation(self) -> float:
        return self.busy_seconds / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0


@dataclass(order=True)
class _Job:
    priority: float
    seq: int
    fn: Callable[..., Any] = field(compare=False)
    args: tuple[Any, ...] = field(compare=False, default=())
    kwargs: dict[str, Any] = field(compare=False, default_factory=dict)
    future: concurrent.futures.Future[Any] = field(compare=False, default_factory=concurrent.futures.Future)
    kind: str = field(compare=False, default="job")
    item_id: str | None = field(compare=False, default=None)


class GpuLane:
    """One worker thread that runs submitted callables one at a time, lowest priority number first (FIFO
    among equals).

    Args:
        clock (callable, optional): seconds counter for the accounting (default `time.perf_counter`).
        name (str, optional): the worker thread's name.

    Example:
        >>> lane = GpuLane()
        >>> async def draft():
        ...     return await lane.submit(generator.generate, "a portrait", 832, 1216, 7,
        ...                              item_id="item-1", kind="generate")  # doctest: +SKIP
        >>> lane.stats().utilisation  # doctest: +SKIP
        0.93
        >>> lane.close()
    """

    def __init__(self, *, clock: Callable[[], float] = time.perf_counter, name: str = "gpu-lane") -> None:
        self._clock = clock
        self._queue: queue.PriorityQueue[_Job] = queue.PriorityQueue()
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._closed = False
        self._started_items: set[str] = set()
        self._item_seconds: dict[str, float] = {}
        self._running_since: float | None = None
        self._queued = 0
        self._reset_counters()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    # ---- submitting -------------------------------------------------------------------------------------
    def submit_future(
        self,
        fn: Callable[..., T],
        *args: Any,
        priority: int | None = None,
        item_id: str | None = None,
        kind: str = "job",
        **kwargs: Any,
    ) -> concurrent.futures.Future[T]:
        """Queue `fn(*args, **kwargs)` and return a `concurrent.futures.Future` (for synchronous callers).

        Args:
            fn (callable): runs in the lane's worker thread.
            priority (int, optional): lower runs sooner; default `PRIORITY_IN_PROGRESS` when a job of `item_id`
                has already started, else `PRIORITY_NEW`.
            item_id (str, optional): the work item this job belongs to (priority and per-item seconds).
            kind (str, optional, defaults to "job"): accounting bucket ("generate", "edit", "refine", "pose").
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("the GPU lane is closed")
            if priority is None:
                priority = PRIORITY_IN_PROGRESS if item_id in self._started_items else PRIORITY_NEW
            elif isinstance(priority, bool) or not isinstance(priority, (int, float)) or priority != priority:
                raise ValueError(f"GPU lane priority must be a number (lower runs sooner), not {priority!r}")
            if self._first_submit is None:
                self._first_submit = self._clock()
            job = _Job(priority, next(self._seq), fn, args, kwargs, kind=kind, item_id=item_id)
            self._queue.put(job)
            self._queued += 1
        return job.future

    def submit(
        self,
        fn: Callable[..., T],
        *args: Any,
        priority: int | None = None,
        item_id: str | None = None,
        kind: str = "job",
        **kwargs: Any,
    ) -> asyncio.Future[T]:
        """Queue `fn(*args, **kwargs)` now and return an awaitable of its result (exceptions propagate).

        Call from a running event loop. The job is queued at call time (so calls keep their order among equal
        priorities); cancelling the returned future before the job starts removes it from the queue.
        `priority`, `item_id` and `kind` are the lane's own (see `submit_future`); wrap `fn` in
        `functools.partial` if it needs keyword arguments with those names.

        Example:
            >>> image = await lane.submit(editor.edit, image, "turn the head left", 7,
            ...                           item_id="item-1", kind="edit")  # doctest: +SKIP
        """
        fut = self.submit_future(fn, *args, priority=priority, item_id=item_id, kind=kind, **kwargs)
        return asyncio.wrap_future(fut)

    def finish_item(self, item_id: str) -> None:
        """Forget that `item_id` is in progress (its next job, if any, counts as new again)."""
        with self._lock:
            self._started_items.discard(item_id)

    # ---- accounting -------------------------------------------------------------------------------------
    def _reset_counters(self) -> None:
        self._busy = 0.0
        self._jobs = 0
        self._failed = 0
        self._per_kind_seconds: dict[str, float] = {}
        self._per_kind_jobs: dict[str, int] = {}
        self._first_submit: float | None = None
        self._last_end: float | None = None

    def reset_stats(self) -> None:
        """Start a new accounting window (e.g. after model warm-up)."""
        with self._lock:
            self._reset_counters()
            if self._queued or self._running_since is not None:
                self._first_submit = self._clock()
                if self._running_since is not None:
                    self._running_since = self._first_submit

    def stats(self) -> LaneStats:
        """Busy seconds (a running job counts up to now), makespan, job counts, per-kind seconds."""
        with self._lock:
            now = self._clock()
            busy = self._busy + (now - self._running_since if self._running_since is not None else 0.0)
            if self._first_submit is None:
                elapsed = 0.0
            elif self._running_since is not None or self._queued:
                elapsed = now - self._first_submit
            else:
                elapsed = (self._last_end or now) - self._first_submit
            return LaneStats(
                busy_seconds=busy,
                elapsed_seconds=elapsed,
                jobs=self._jobs,
                failed=self._failed,
                queued=self._queued,
                per_kind_seconds=dict(self._per_kind_seconds),
                per_kind_jobs=dict(self._per_kind_jobs),
            )

    def item_seconds(self, item_id: str) -> float:
        """GPU seconds spent on one item so far (for cost reports: GPU seconds per final image)."""
        with self._lock:
            return self._item_seconds.get(item_id, 0.0)

    # ---- the worker -------------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job.fn is _stop:
                return
            runs = job.future.set_running_or_notify_cancel()  # False: cancelled while it waited
            with self._lock:
                self._queued -= 1
                if not runs:
                    continue
                start = self._running_since = self._clock()
                if job.item_id is not None:
                    self._started_items.add(job.item_id)
            result: Any = None
            error: BaseException | None = None
            try:
                result = job.fn(*job.args, **job.kwargs)
            except BaseException as exc:
                error = exc
            with self._lock:  # account before resolving the future: a woken caller sees its job counted
                end = self._clock()
                start = self._running_since if self._running_since is not None else start
                spent = end - start
                self._running_since = None
                self._last_end = end
                self._busy += spent
                self._jobs += 1
                self._failed += error is not None
                self._per_kind_seconds[job.kind] = self._per_kind_seconds.get(job.kind, 0.0) + spent
                self._per_kind_jobs[job.kind] = self._per_kind_jobs.get(job.kind, 0) + 1
                if job.item_id is not None:
                    self._item_seconds[job.item_id] = self._item_seconds.get(job.item_id, 0.0) + spent
            if error is not None:
                job.future.set_exception(error)
            else:
                job.future.set_result(result)
            del result, error

    def close(self, wait: bool = True) -> None:
        """Stop accepting jobs; the queued ones still run. With `wait`, block until the worker ends."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(_Job(float("inf"), next(self._seq), _stop))
        if wait and threading.current_thread() is not self._thread:
            self._thread.join()

    def __enter__(self) -> GpuLane:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> GpuLane:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.close)


def _stop() -> None:  # the sentinel job that ends the worker
    return None


# ---- the model pool ---------------------------------------------------------------------------------------


def pipeline_bytes(*pipes: Any) -> int:
    """Bytes of the parameters and buffers of every module in `pipes`, each storage counted once (so a
    `from_pipe` variant adds only the modules it does not share)."""
    seen: set[tuple[str, int]] = set()
    total = 0
    for pipe in pipes:
        components = getattr(pipe, "components", None) or {}
        for module in components.values():
            if not (hasattr(module, "parameters") and hasattr(module, "buffers")):
                continue
            for tensor in itertools.chain(module.parameters(), module.buffers()):
                key = (str(tensor.device), tensor.data_ptr())
                if key in seen or key[1] == 0:
                    continue
                seen.add(key)
                total += tensor.numel() * tensor.element_size()
    return total


def _on_device(pipe: Any, device: str) -> bool:
    """True when every module of `pipe` already sits on `device` ("cuda" matches any "cuda:N")."""
    kind, _, index = device.partition(":")
    for module in (getattr(pipe, "components", None) or {}).values():
        first = next(iter(module.parameters()), None) if hasattr(module, "parameters") else None
        if first is None:
            continue
        if first.device.type != kind or (index and first.device.index != int(index)):
            return False
    return True


@dataclass
class _Entry:
    key: str
    base: Any
    offload: str
    variants: dict[str, Any] = field(default_factory=dict)
    nbytes: int = 0
    on_device: bool = False
    last_used: int = 0

    def pipes(self) -> list[Any]:
        return [self.base, *self.variants.values()]


class ModelPool:
    """Pipelines loaded lazily and kept on `device` up to `budget_bytes`; over budget, the least recently used
    ones are moved to CPU (`evict="cpu"`) or dropped (`evict="drop"`). Variants of one model made with
    `from_pipe` share its weights and count once.

    Pipelines placed with diffusers' CPU offload (`offload="model"|"sequential"`) manage their own residency
    and are not counted in the budget.

    Args:
        device (str, optional, defaults to "cuda"): where pipelines run.
        budget_bytes (int, optional): memory the pool may fill on `device`; None = no limit.
        evict ("cpu" | "drop", optional, defaults to "cpu"): what happens to an evicted pipeline.

    Example:
        >>> pool = ModelPool(device="cuda", budget_bytes=40 * 2**30)
        >>> t2i = pool.get("z-image-turbo", lambda: load_pipeline(cfg))  # doctest: +SKIP
        >>> i2i = pool.get("z-image-turbo", lambda: load_pipeline(cfg), variant="img2img",
        ...                make_variant=AutoPipelineForImage2Image.from_pipe)  # doctest: +SKIP
    """

    def __init__(
        self, device: str = "cuda", budget_bytes: int | None = None, evict: Literal["cpu", "drop"] = "cpu"
    ) -> None:
        if evict not in ("cpu", "drop"):
            raise ValueError(f"evict must be 'cpu' or 'drop', not {evict!r}")
        self.device = device
        self.budget_bytes = budget_bytes
        self.evict_mode = evict
        self._entries: dict[str, _Entry] = {}
        self._tick = itertools.count(1)
        self._lock = threading.RLock()
        self.loads = 0
        self.evictions = 0

    def get(
        self,
        key: str,
        load: Callable[[], Any],
        *,
        variant: str | None = None,
        make_variant: Callable[[Any], Any] | None = None,
        offload: str = "none",
    ) -> Any:
        """The pipeline for `key` (loaded with `load()` on first use), or its `variant`, resident on the device.

        Args:
            key (str): identifies one model's weights (e.g. model id + revision + dtype).
            load (callable): returns the base pipeline (on CPU); called only when `key` is not held.
            variant (str, optional): a name for a derived pipeline ("img2img", "controlnet:<path>").
            make_variant (callable, optional): builds the variant from the base, e.g.
                `ZImageImg2ImgPipeline.from_pipe`; needed the first time a variant is asked for.
            offload ("none" | "model" | "sequential"): how the base is placed (see `loading.place_pipeline`).
        """
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = _Entry(key=key, base=load(), offload=offload)
                self.loads += 1
                entry.nbytes = pipeline_bytes(entry.base)
                self._entries[key] = entry
            pipe = entry.base
            if variant is not None:
                if variant not in entry.variants:
                    if make_variant is None:
                        raise ValueError(f"variant {variant!r} of {key!r} is not loaded and no make_variant given")
                    entry.variants[variant] = make_variant(entry.base)
                    entry.nbytes = pipeline_bytes(*entry.pipes())
                    entry.on_device = False  # the variant's own modules (e.g. a ControlNet) still need placing
                pipe = entry.variants[variant]
            self._make_resident(entry)
            entry.last_used = next(self._tick)
            return pipe

    def _make_resident(self, entry: _Entry) -> None:
        if entry.on_device:
            return
        if entry.offload != "none":
            for pipe in entry.pipes():
                if entry.offload == "model":
                    pipe.enable_model_cpu_offload(device=self.device)
                else:
                    pipe.enable_sequential_cpu_offload(device=self.device)
            entry.on_device = True
            return
        if self.budget_bytes is not None:
            others = sorted(
                (e for e in self._entries.values() if e is not entry and e.on_device and e.offload == "none"),
                key=lambda e: e.last_used,
            )
            used = sum(e.nbytes for e in others)
            while others and used + entry.nbytes > self.budget_bytes:
                victim = others.pop(0)
                used -= victim.nbytes
                self._evict(victim)
            if entry.nbytes > self.budget_bytes:
                log.warning("model %s needs %.2f GiB, over the pool budget of %.2f GiB; loading it anyway",
                            entry.key, entry.nbytes / 2**30, self.budget_bytes / 2**30)
        for pipe in entry.pipes():
            if not _on_device(pipe, self.device):
                pipe.to(self.device)
        entry.on_device = True

    def _evict(self, entry: _Entry) -> None:
        self.evictions += 1
        if self.evict_mode == "drop":
            del self._entries[entry.key]
            entry.base = None
            entry.variants.clear()
            gc.collect()
        else:
            for pipe in entry.pipes():
                pipe.to("cpu")
            entry.on_device = False
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()
        log.info("model pool: evicted %s (%s)", entry.key, self.evict_mode)

    def release(self, key: str) -> None:
        """Drop `key` and its variants from the pool (no-op when absent)."""
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is not None:
                entry.variants.clear()
                gc.collect()

    def resident(self) -> list[str]:
        """Keys on the device, least recently used first."""
        with self._lock:
            return [e.key for e in sorted(self._entries.values(), key=lambda e: e.last_used) if e.on_device]

    def loaded(self) -> list[str]:
        """Every key the pool holds (on the device or moved to CPU)."""
        with self._lock:
            return list(self._entries)

    def used_bytes(self) -> int:
        """Bytes counted against the budget (resident, not self-offloading)."""
        with self._lock:
            return sum(e.nbytes for e in self._entries.values() if e.on_device and e.offload == "none")

    def entry_bytes(self, key: str) -> int:
        """Bytes of one model with all its variants (shared weights once); 0 when not held."""
        with self._lock:
            entry = self._entries.get(key)
            return entry.nbytes if entry is not None else 0
