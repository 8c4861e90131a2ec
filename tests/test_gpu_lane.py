"""The GPU lane (one worker, priorities, busy-time accounting) and the model pool (budget, LRU, from_pipe)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from portraitcraft.tools.gpu import PRIORITY_IN_PROGRESS, PRIORITY_NEW, GpuLane, ModelPool, pipeline_bytes

pytest_plugins = ["diffusion_fixtures"]


class FakeClock:
    """A clock the jobs advance: the accounting becomes exact."""

    def __init__(self) -> None:
        self.now = 100.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


@pytest.fixture()
def lane() -> Any:
    with GpuLane() as lane:
        yield lane


async def test_jobs_never_overlap_and_run_in_one_worker_thread(lane: GpuLane) -> None:
    active = 0
    peak = 0
    threads: set[int] = set()
    guard = threading.Lock()

    def job(i: int) -> int:
        nonlocal active, peak
        with guard:
            active += 1
            peak = max(peak, active)
            threads.add(threading.get_ident())
        threading.Event().wait(0.01)
        with guard:
            active -= 1
        return i * i

    results = await asyncio.gather(*(lane.submit(job, i, item_id=f"item-{i}") for i in range(12)))
    assert results == [i * i for i in range(12)]
    assert peak == 1
    assert len(threads) == 1 and threading.get_ident() not in threads
    assert lane.stats().jobs == 12


async def test_lower_priority_numbers_run_first_and_ties_keep_their_order(lane: GpuLane) -> None:
    gate = threading.Event()
    order: list[str] = []
    blocker = lane.submit(gate.wait, 5)
    await asyncio.sleep(0.05)  # the blocker is running; everything below queues behind it
    jobs = [("e", 5), ("a", 1), ("c", 3), ("b", 1), ("z", 0), ("d", 3)]
    waiting = [lane.submit(order.append, name, priority=prio) for name, prio in jobs]
    await asyncio.sleep(0.05)
    assert lane.stats().queued == len(jobs)
    gate.set()
    await asyncio.gather(blocker, *waiting)
    assert order == ["z", "a", "b", "c", "d", "e"]


async def test_items_already_in_progress_go_before_new_items(lane: GpuLane) -> None:
    await lane.submit(lambda: None, item_id="old")  # "old" has started: it is in progress
    gate = threading.Event()
    order: list[str] = []
    blocker = lane.submit(gate.wait, 5)
    await asyncio.sleep(0.05)
    new_draft = lane.submit(order.append, "new-draft", item_id="new")
    old_edit = lane.submit(order.append, "old-edit", item_id="old")
    await asyncio.sleep(0.05)
    gate.set()
    await asyncio.gather(blocker, new_draft, old_edit)
    assert order == ["old-edit", "new-draft"]
    assert PRIORITY_IN_PROGRESS < PRIORITY_NEW
    lane.finish_item("old")
    gate.clear()
    order.clear()
    blocker = lane.submit(gate.wait, 5)
    await asyncio.sleep(0.05)
    first = lane.submit(order.append, "new-2", item_id="other")
    second = lane.submit(order.append, "old-again", item_id="old")  # finished: counts as new again
    await asyncio.sleep(0.05)
    gate.set()
    await asyncio.gather(blocker, first, second)
    assert order == ["new-2", "old-again"]


async def test_utilisation_is_busy_time_over_the_makespan() -> None:
    clock = FakeClock()
    with GpuLane(clock=clock) as lane:
        assert lane.stats().utilisation == 0.0
        await lane.submit(clock.advance, 2.0, kind="generate", item_id="a")  # busy 100 -> 102
        clock.advance(1.0)  # idle: the lane waits for a critic
        await lane.submit(clock.advance, 3.0, kind="edit", item_id="a")  # busy 103 -> 106
        await lane.submit(clock.advance, 1.0, kind="edit", item_id="b")  # busy 106 -> 107
        clock.advance(5.0)  # idle after the last job: not part of the makespan
        stats = lane.stats()
    assert stats.busy_seconds == 6.0 and stats.elapsed_seconds == 7.0
    assert stats.utilisation == pytest.approx(6 / 7)
    assert stats.jobs == 3 and stats.per_kind_jobs == {"generate": 1, "edit": 2}
    assert stats.per_kind_seconds == {"generate": 2.0, "edit": 4.0}
    assert lane.item_seconds("a") == 5.0 and lane.item_seconds("b") == 1.0


async def test_a_running_job_counts_as_busy_until_now() -> None:
    clock = FakeClock()
    gate = threading.Event()
    with GpuLane(clock=clock) as lane:
        running = lane.submit(gate.wait, 5)
        await asyncio.sleep(0.05)
        clock.advance(4.0)
        stats = lane.stats()
        assert (stats.busy_seconds, stats.elapsed_seconds, stats.jobs) == (4.0, 4.0, 0)
        gate.set()
        await running
        lane.reset_stats()
        assert lane.stats().elapsed_seconds == 0.0 and lane.stats().jobs == 0


async def test_a_failing_job_raises_to_its_caller_and_the_lane_goes_on(lane: GpuLane) -> None:
    def boom() -> None:
        raise RuntimeError("CUDA out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        await lane.submit(boom, kind="generate")
    assert await lane.submit(lambda: "still alive") == "still alive"
    stats = lane.stats()
    assert stats.failed == 1 and stats.jobs == 2


async def test_a_cancelled_waiting_job_never_runs(lane: GpuLane) -> None:
    gate = threading.Event()
    ran: list[str] = []
    blocker = lane.submit(gate.wait, 5)
    await asyncio.sleep(0.05)
    doomed = asyncio.ensure_future(lane.submit(ran.append, "doomed"))
    await asyncio.sleep(0.05)
    doomed.cancel()
    await asyncio.sleep(0.05)
    gate.set()
    await blocker
    await lane.submit(ran.append, "after")
    assert ran == ["after"]


def test_sync_callers_get_a_future_and_a_closed_lane_refuses_work() -> None:
    lane = GpuLane()
    futures = [lane.submit_future(pow, 2, i, kind="pose") for i in range(4)]
    lane.close()  # queued jobs still finish
    assert [f.result(timeout=5) for f in futures] == [1, 2, 4, 8]
    assert lane.stats().per_kind_jobs == {"pose": 4}
    with pytest.raises(RuntimeError, match="closed"):
        lane.submit_future(pow, 2, 2)


def test_a_bad_priority_is_refused_and_leaves_the_accounting_alone(lane: GpuLane) -> None:
    for bad in ("high", float("nan"), None.__class__):
        with pytest.raises(ValueError, match="priority must be a number"):
            lane.submit_future(pow, 2, 2, priority=bad)  # type: ignore[arg-type]
    stats = lane.stats()
    assert (stats.queued, stats.elapsed_seconds) == (0, 0.0)
    assert lane.submit_future(pow, 2, 3, priority=1.5).result(timeout=5) == 8


# ---- the model pool on tiny pipelines ---------------------------------------------------------------------


@pytest.fixture()
def tiny_loader(cpu_cfg: Callable[..., Any], tiny_zimage: Path) -> Callable[..., Any]:
    from portraitcraft.config import DiffusionConfig
    from portraitcraft.tools.diffusion.loading import load_pipeline

    cfg = cpu_cfg(DiffusionConfig, tiny_zimage)
    loads: list[int] = []

    def load() -> Any:
        loads.append(1)
        return load_pipeline(cfg)

    load.loads = loads  # type: ignore[attr-defined]
    return load


@pytest.mark.diffusion
def test_pool_evicts_the_least_recently_used_within_its_budget(tiny_loader: Callable[..., Any]) -> None:
    one = pipeline_bytes(tiny_loader())
    pool = ModelPool(device="cpu", budget_bytes=int(2.5 * one))
    a = pool.get("a", tiny_loader)
    pool.get("b", tiny_loader)
    assert pool.get("a", tiny_loader) is a  # a hit: no reload, "a" now most recent
    pool.get("c", tiny_loader)  # over budget: "b" (least recently used) leaves the device
    assert pool.resident() == ["a", "c"]
    assert sorted(pool.loaded()) == ["a", "b", "c"]  # evict="cpu": moved off, still held
    assert pool.used_bytes() == 2 * one <= pool.budget_bytes
    pool.get("b", tiny_loader)  # back on the device; now "a" is the oldest
    assert pool.resident() == ["c", "b"]
    assert len(tiny_loader.loads) == 1 + 3 and pool.evictions == 2  # type: ignore[attr-defined]


@pytest.mark.diffusion
def test_pool_in_drop_mode_reloads_what_it_dropped(tiny_loader: Callable[..., Any]) -> None:
    pool = ModelPool(device="cpu", budget_bytes=1, evict="drop")  # room for one model only
    pool.get("a", tiny_loader)
    pool.get("b", tiny_loader)
    assert pool.loaded() == ["b"]
    pool.get("a", tiny_loader)
    assert pool.loaded() == ["a"] and len(tiny_loader.loads) == 3  # type: ignore[attr-defined]


@pytest.mark.diffusion
def test_from_pipe_variants_share_weights_and_count_once(
    cpu_cfg: Callable[..., Any], tiny_zimage: Path, tiny_controlnet: Path
) -> None:
    from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting

    from portraitcraft.config import DiffusionConfig
    from portraitcraft.tools.diffusion.controlnet import controlnet_variant
    from portraitcraft.tools.diffusion.local import LocalPipeline

    cfg = cpu_cfg(DiffusionConfig, tiny_zimage, dtype="bfloat16", controlnet=str(tiny_controlnet))
    pool = ModelPool(device="cpu")
    local = LocalPipeline(cfg, pool)
    base = local.get()
    alone = pool.entry_bytes(local.key)
    i2i = local.get(variant="img2img", make_variant=local.from_pipe(AutoPipelineForImage2Image))
    inpaint = local.get(variant="inpaint", make_variant=local.from_pipe(AutoPipelineForInpainting))
    assert type(i2i).__name__ == "ZImageImg2ImgPipeline" and type(inpaint).__name__ == "ZImageInpaintPipeline"
    for variant in (i2i, inpaint):
        assert variant.transformer is base.transformer and variant.text_encoder is base.text_encoder
    assert pool.entry_bytes(local.key) == alone == pool.used_bytes()
    import torch

    assert base.transformer.dtype == torch.bfloat16  # from_pipe did not upcast the shared modules
    name, make = controlnet_variant(cfg)
    cn = local.get(variant=name, make_variant=make)
    added = pool.entry_bytes(local.key) - alone
    assert 0 < added < pipeline_bytes(cn) - pipeline_bytes(base) + sum(
        p.numel() * p.element_size() for p in base.transformer.t_embedder.parameters()) + 1
    assert cn.controlnet.dtype == torch.bfloat16
    assert pool.loaded() == [local.key]


@pytest.mark.diffusion
async def test_generations_through_the_lane(cpu_cfg: Callable[..., Any], tiny_zimage: Path,
                                            cpu_pool: ModelPool) -> None:
    from portraitcraft.config import GeneratorConfig
    from portraitcraft.tools.diffusion import build_generator, meta_of

    gen = build_generator(cpu_cfg(GeneratorConfig, tiny_zimage), cpu_pool)
    with GpuLane() as lane:
        images = await asyncio.gather(*(
            lane.submit(gen.generate, f"portrait {i}", 32, 32, i, item_id=f"item-{i}", kind="generate")
            for i in range(3)
        ))
        stats = lane.stats()
    assert [meta_of(im).seed for im in images] == [0, 1, 2]
    assert stats.per_kind_jobs == {"generate": 3} and 0 < stats.utilisation <= 1
