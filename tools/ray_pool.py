"""`RayGpuPool`: the GPU-job executor on a pool of Ray actors, one per GPU, on one box or across machines.

The driver keeps running the graphs (and their checkpoints); only `GpuJob`s travel. Each actor holds its own
`JobRunner` (model pools loaded lazily from the jobs' backend configs and kept resident) and runs one job at a
time; images come back as PNG bytes + metadata through the object store and the driver writes every file, so
nodes share no filesystem.

Routing: an item's job goes to the actor that ran the item's last job (its models are resident there), else to
one that already ran the job's model, else to the least loaded; at most `max_in_flight_per_actor` jobs wait on
an actor (one runs, the next is already queued there: no idle gap), the rest wait in the driver by priority
(backpressure). Faults: an actor that dies (killed, OOM, node lost) is dropped and its jobs re-run on the
survivors (at most `max_job_retries` times each), each death recorded in `stats().events`; with no actor left a
`RayPoolError` stops the run (resumable). A job that fails by itself (bad arguments: the error the backend
raised) is re-raised to its caller, never retried.

`ray` is imported only when the pool starts (the `ray` extra).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from portraitcraft.config import GpuConfig, RayConfig
from portraitcraft.errors import PortraitcraftError
from portraitcraft.tools.gpu import PRIORITY_IN_PROGRESS, PRIORITY_NEW
from portraitcraft.tools.gpu_jobs import ExecutorStats, GpuJob, JobResult, JobRunner, WorkerStats

log = logging.getLogger(__name__)

LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""Set to "0", Ray takes 127.0.0.1 as the node address (as it does on a laptop): a locally started Ray then
listens and advertises on the loopback interface only."""


class RayPoolError(PortraitcraftError):
    """The Ray pool cannot run jobs: Ray missing, no GPU to place actors on, or every actor died."""


def import_ray() -> Any:
    """`import ray`, or a clear error naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise RayPoolError("executor = \"ray\" needs Ray: pip install 'portraitcraft[ray]'") from None
    return ray


def _loopback_only(ray: Any, on: bool) -> None:
    """Make this process (and the Ray processes it starts) use 127.0.0.1 as the node address, or undo it."""
    constants = getattr(getattr(ray, "_private", None), "ray_constants", None)
    if on:
        os.environ[LOOPBACK_ENV] = "0"
    else:
        os.environ.pop(LOOPBACK_ENV, None)
    if constants is not None and hasattr(constants, "ENABLE_RAY_CLUSTER"):
        constants.ENABLE_RAY_CLUSTER = not on


def init_ray(cfg: RayConfig) -> bool:
    """Connect this process to Ray unless it already is: a local Ray on 127.0.0.1 (address None; `num_cpus`,
    `object_store_gb` apply), or the cluster at `address`. True when this call connected (the caller shuts down).
    """
    ray = import_ray()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return False
    if cfg.address is None:
        _loopback_only(ray, True)
        store = int(cfg.object_store_gb * 2**30) if cfg.object_store_gb else None
        ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False, num_cpus=cfg.num_cpus,
                 object_store_memory=store, log_to_driver=False)
    else:
        ray.init(address=cfg.address, log_to_driver=False)
    return True


def shutdown_ray(*, loopback: bool) -> None:
    """Disconnect (and stop a local Ray this process started); `loopback` undoes `init_ray`'s local setting."""
    ray = import_ray()
    ray.shutdown()
    if loopback:
        _loopback_only(ray, False)


def actor_count(cfg: RayConfig, gpus: float) -> int:
    """`cfg.actors`, or one actor per `gpus_per_actor` of the cluster's `gpus`; `RayPoolError` when they do not fit.

    Example:
        >>> actor_count(RayConfig(), 8), actor_count(RayConfig(gpus_per_actor=2), 8)
        (8, 4)
    """
    per = cfg.gpus_per_actor
    if cfg.actors is not None:
        if per > 0 and cfg.actors * per > gpus:
            raise RayPoolError(
                f"[ray] actors = {cfg.actors} x gpus_per_actor = {per:g} needs {cfg.actors * per:g} GPUs but the Ray "
                f"cluster reports {gpus:g}"
            )
        return cfg.actors
    if per <= 0:
        raise RayPoolError("[ray] gpus_per_actor = 0 needs an explicit [ray] actors count")
    count = int(gpus // per)
    if count < 1:
        raise RayPoolError(
            f"the Ray cluster reports {gpus:g} GPUs, too few for one actor of gpus_per_actor = {per:g}; "
            "join a cluster with GPUs ([ray] address) or set [ray] actors and gpus_per_actor = 0 for CPU actors"
        )
    return count


RunnerFactory = Callable[[str], Any]
"""Makes an actor's job runner from the actor's name: anything with `prepare(job) -> call` and
`finish(image, seconds, worker) -> JobResult` (default: a `JobRunner` with the `[gpu]` pool settings;
benchmarks inject a simulated one)."""


class GpuActor:
    """What each Ray actor runs: a job runner (its own model pools) and a description of where it lives."""

    def __init__(self, gpu: dict[str, Any], name: str, runner: RunnerFactory | None = None) -> None:
        self.name = name
        self.runner = runner(name) if runner is not None else JobRunner(GpuConfig.model_validate(gpu), name=name)

    def info(self) -> dict[str, Any]:
        import ray

        ctx = ray.get_runtime_context()
        return {"name": self.name, "pid": os.getpid(), "node_id": ctx.get_node_id(),
                "node_ip": ray.util.get_node_ip_address(), "gpu_ids": [str(g) for g in ray.get_gpu_ids()]}

    def run(self, job: GpuJob) -> JobResult:
        call = self.runner.prepare(job)
        start = time.perf_counter()
        image = call()
        return self.runner.finish(image, time.perf_counter() - start, self.name)


@dataclass
class _Actor:
    name: str
    handle: Any
    info: dict[str, Any]
    alive: bool = True
    in_flight: int = 0
    peak_in_flight: int = 0
    busy: float = 0.0
    jobs: int = 0
    failed: int = 0
    models: set[str] = field(default_factory=set)


@dataclass(order=True)
class _Waiter:
    priority: float
    seq: int
    job: GpuJob = field(compare=False)
    future: asyncio.Future[_Actor] = field(compare=False)


def model_key(job: GpuJob) -> str:
    """The weights a job needs (model, revision, dtype): actors that ran it have them resident."""
    b = job.backend
    return f"{b.get('model')}@{b.get('revision') or 'default'}:{b.get('dtype')}"


class RayGpuPool:
    """The `Executor` on Ray actors (see the module docstring).

    Args:
        ray_cfg (RayConfig, optional): the `[ray]` section (address, actors, gpus_per_actor, in-flight bound).
        gpu (GpuConfig, optional): the `[gpu]` section each actor's model pools use.
        runner (callable, optional): actor name -> the actor's job runner (see `RunnerFactory`); picklable.
        clock (callable, optional): seconds counter for the accounting.

    Example:
        >>> pool = RayGpuPool(RayConfig(address="auto"))  # doctest: +SKIP
        >>> result = await pool.run(GpuJob(kind="generate", backend=cfg.generator.model_dump(),
        ...                                args={"prompt": "a portrait", "width": 832, "height": 1216,
        ...                                      "seed": 7}, item_id="a"))  # doctest: +SKIP
        >>> pool.stats().worker_utilisation  # doctest: +SKIP
        {'actor-0': 0.97, 'actor-1': 0.95}
        >>> await pool.aclose()  # doctest: +SKIP
    """

    def __init__(self, ray_cfg: RayConfig | None = None, gpu: GpuConfig | None = None, *,
                 runner: RunnerFactory | None = None, clock: Any = time.perf_counter) -> None:
        self.cfg = ray_cfg or RayConfig()
        self.gpu = gpu or GpuConfig()
        self._runner = runner
        self._clock = clock
        self._actors: list[_Actor] = []
        self._waiting: list[_Waiter] = []
        self._seq = itertools.count()
        self._affinity: dict[str, _Actor] = {}
        self._started_items: set[str] = set()
        self._start_lock: asyncio.Lock | None = None
        self._started = False
        self._closed = False
        self._owns_ray = False
        self._loopback = False
        self._events: list[dict[str, Any]] = []
        self._failed = 0
        self._per_kind_seconds: dict[str, float] = {}
        self._per_kind_jobs: dict[str, int] = {}
        self._first_submit: float | None = None
        self._last_end: float | None = None
        self._pending = 0

    # ---- starting -----------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect to (or start) Ray and create the actors; idempotent. Called by the first `run`."""
        if self._started:
            return
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if not self._started:
                await asyncio.to_thread(self.start_sync)

    def start_sync(self) -> None:
        """`start` for synchronous callers (blocks while Ray starts and the actors come up)."""
        if self._started:
            return
        if self._closed:
            raise RayPoolError("the Ray pool is closed")
        ray = import_ray()
        self._owns_ray = init_ray(self.cfg)
        self._loopback = self._owns_ray and self.cfg.address is None
        try:
            self._make_actors(ray)
        except BaseException:
            self.close()
            raise
        self._started = True

    def _make_actors(self, ray: Any) -> None:
        count = actor_count(self.cfg, float(ray.cluster_resources().get("GPU", 0)))
        remote_cls = ray.remote(GpuActor)
        gpu = self.gpu.model_dump(mode="json")
        handles = [
            remote_cls.options(num_gpus=self.cfg.gpus_per_actor, num_cpus=0, max_restarts=0, max_concurrency=1,
                               scheduling_strategy="SPREAD").remote(gpu, f"actor-{i}", self._runner)
            for i in range(count)
        ]
        try:
            infos = ray.get([h.info.remote() for h in handles], timeout=self.cfg.start_timeout_s)
        except ray.exceptions.GetTimeoutError:
            for h in handles:
                ray.kill(h)
            raise RayPoolError(
                f"{count} Ray GPU actor(s) did not start within {self.cfg.start_timeout_s:g} s (not enough free "
                f"GPUs or CPUs in the cluster?)"
            ) from None
        self._actors = [_Actor(name=info["name"], handle=h, info=info) for h, info in zip(handles, infos, strict=True)]
        log.info("Ray GPU pool: %d actor(s) on %d node(s)", count, len({i["node_id"] for i in infos}))

    # ---- routing --------------------------------------------------------------------------------------------
    def _alive(self) -> list[_Actor]:
        return [a for a in self._actors if a.alive]

    def _no_actor_error(self) -> RayPoolError:
        dead = [a.name for a in self._actors if not a.alive]
        return RayPoolError(
            f"no Ray GPU actor is left ({len(dead)} died: {', '.join(dead)}); the run stops here — restart the "
            "cluster's workers and resume with --resume"
        )

    def _choose(self, job: GpuJob, free: list[_Actor]) -> _Actor:
        preferred = self._affinity.get(job.item_id) if job.item_id is not None else None
        if preferred is not None and preferred in free:
            return preferred
        key = model_key(job)
        holders = [a for a in free if key in a.models]
        return min(holders or free, key=lambda a: (a.in_flight, a.jobs))

    def _dispatch(self) -> None:
        """Hand waiting jobs (best priority first) to actors with room."""
        while self._waiting:
            alive = self._alive()
            if not alive:
                error = self._no_actor_error()
                while self._waiting:
                    waiter = heapq.heappop(self._waiting)
                    if not waiter.future.done():
                        waiter.future.set_exception(error)
                return
            free = [a for a in alive if a.in_flight < self.cfg.max_in_flight_per_actor]
            if not free:
                return
            waiter = heapq.heappop(self._waiting)
            if waiter.future.done():  # cancelled while it waited
                continue
            actor = self._choose(waiter.job, free)
            actor.in_flight += 1
            actor.peak_in_flight = max(actor.peak_in_flight, actor.in_flight)
            waiter.future.set_result(actor)

    async def _acquire(self, job: GpuJob, priority: float) -> _Actor:
        future: asyncio.Future[_Actor] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, _Waiter(priority, next(self._seq), job, future))
        self._dispatch()
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.exception() is None:
                future.result().in_flight -= 1  # it had been given an actor already
                self._dispatch()
            raise

    # ---- the executor -----------------------------------------------------------------------------------------
    async def run(self, job: GpuJob) -> JobResult:
        """Run `job` on an actor; a lost actor's job is re-run on a survivor (bounded), its own error re-raised."""
        await self.start()
        ray = import_ray()
        priority: float = job.priority if job.priority is not None else (
            PRIORITY_IN_PROGRESS if job.item_id in self._started_items else PRIORITY_NEW)
        if self._first_submit is None:
            self._first_submit = self._clock()
        self._pending += 1
        attempt = 0
        try:
            while True:
                actor = await self._acquire(job, priority)
                if job.item_id is not None:
                    self._started_items.add(job.item_id)
                try:
                    result: JobResult = await actor.handle.run.remote(job)
                except ray.exceptions.RayActorError as exc:
                    attempt += 1
                    self._actor_lost(actor, job, exc, attempt)
                    if not self._alive():
                        raise self._no_actor_error() from None
                    if attempt > self.cfg.max_job_retries:
                        raise RayPoolError(
                            f"{job.describe()} lost its Ray actor {attempt} times (max_job_retries = "
                            f"{self.cfg.max_job_retries}); giving up on it"
                        ) from None
                    priority = PRIORITY_IN_PROGRESS  # a retried job goes before new work
                    continue
                except ray.exceptions.RayTaskError as exc:  # the job's own fault: not retried
                    actor.failed += 1
                    self._failed += 1
                    cause = getattr(exc, "cause", None)
                    if isinstance(cause, BaseException):
                        raise cause from None
                    raise
                finally:
                    actor.in_flight -= 1
                    self._last_end = self._clock()
                    self._dispatch()
                self._account(actor, job, result)
                return result
        finally:
            self._pending -= 1

    def _account(self, actor: _Actor, job: GpuJob, result: JobResult) -> None:
        actor.busy += result.seconds
        actor.jobs += 1
        if job.kind != "sleep":
            actor.models.add(model_key(job))
        if job.item_id is not None:
            self._affinity[job.item_id] = actor
        self._per_kind_seconds[job.kind] = self._per_kind_seconds.get(job.kind, 0.0) + result.seconds
        self._per_kind_jobs[job.kind] = self._per_kind_jobs.get(job.kind, 0) + 1

    def _actor_lost(self, actor: _Actor, job: GpuJob, exc: BaseException, attempt: int) -> None:
        first = actor.alive
        actor.alive = False
        for item, holder in list(self._affinity.items()):
            if holder is actor:
                del self._affinity[item]
        if first:
            self._event("actor_died", worker=actor.name, node_ip=actor.info.get("node_ip"),
                        error=str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__)
            log.warning("Ray GPU actor %s died (%s); its jobs go to the %d survivor(s)", actor.name,
                        type(exc).__name__, len(self._alive()))
        self._event("job_retried", worker=actor.name, item_id=job.item_id, kind=job.kind, attempt=attempt)

    def _event(self, event: str, **fields: Any) -> None:
        self._events.append({"event": event, "at_s": round(self._clock() - (self._first_submit or 0.0), 3),
                             **fields})

    def item_done(self, item_id: str) -> None:
        """The item is finished: forget its affinity and its in-progress priority."""
        self._started_items.discard(item_id)
        self._affinity.pop(item_id, None)

    def stats(self) -> ExecutorStats:
        """Busy seconds per actor and in total (utilisation = busy / (actors x makespan)), faults survived."""
        now = self._clock()
        running = self._pending > 0
        if self._first_submit is None:
            elapsed = 0.0
        else:
            elapsed = (now if running else (self._last_end or now)) - self._first_submit
        workers = {a.name: WorkerStats(a.busy, a.jobs, a.failed) for a in self._actors}
        return ExecutorStats(
            executor="ray", busy_seconds=sum(a.busy for a in self._actors), elapsed_seconds=elapsed,
            jobs=sum(a.jobs for a in self._actors), failed=self._failed, queued=len(self._waiting),
            workers=workers, per_kind_seconds=dict(self._per_kind_seconds), per_kind_jobs=dict(self._per_kind_jobs),
            events=list(self._events),
        )

    def actors(self) -> list[dict[str, Any]]:
        """Each actor: name, node, pid, GPU ids, alive, peak jobs in flight."""
        return [{**a.info, "alive": a.alive, "peak_in_flight": a.peak_in_flight, "jobs": a.jobs}
                for a in self._actors]

    def handle(self, name: str) -> Any:
        """The Ray actor handle of `name` (tests kill it with `ray.kill`)."""
        for a in self._actors:
            if a.name == name:
                return a.handle
        raise KeyError(name)

    def close(self) -> None:
        """Kill the actors; shut Ray down if this pool started or joined it."""
        self._closed = True
        if not (self._actors or self._owns_ray):
            return
        ray = import_ray()
        for a in self._actors:
            if a.alive:
                try:
                    ray.kill(a.handle)
                except Exception as exc:  # an actor already gone
                    log.debug("killing %s: %s", a.name, exc)
            a.alive = False
        if self._owns_ray:
            shutdown_ray(loopback=self._loopback)
            self._owns_ray = self._loopback = False

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)


def cluster_summary(cfg: RayConfig) -> dict[str, Any]:
    """What `portraitcraft doctor` shows: the cluster's live nodes and GPUs and the actors the pool would make
    (`local`: no address, so nothing is started — the GPUs torch sees on this box are counted)."""
    if cfg.address is None:
        try:
            import torch

            gpus = float(torch.cuda.device_count())
        except ImportError:
            gpus = 0.0
        per_node = [{"ip": "127.0.0.1", "gpus": gpus}]
    else:
        ray = import_ray()
        joined = not ray.is_initialized()
        if joined:
            ray.init(address=cfg.address, log_to_driver=False)
        try:
            nodes = [n for n in ray.nodes() if n.get("Alive")]
            per_node = [{"ip": n.get("NodeManagerAddress"), "gpus": float(n.get("Resources", {}).get("GPU", 0))}
                        for n in nodes]
        finally:
            if joined:
                ray.shutdown()
        gpus = sum(n["gpus"] for n in per_node)
    try:
        actors = actor_count(cfg, gpus)
    except RayPoolError:
        actors = 0
    return {"local": cfg.address is None, "nodes": len(per_node), "gpus": gpus, "per_node": per_node,
            "actors": actors}
