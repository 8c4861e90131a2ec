"""The Ray executor on a local multi-node Ray cluster on 127.0.0.1 (two nodes, a GPU declared on each — the
machine has none: the tiny models run on CPU inside the actors): byte-identical images to the in-process lane,
affinity and backpressure, a killed actor's jobs finished on the survivor exactly once, a job's own error not
retried, and no process left behind."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from portraitcraft.config import EditorConfig, GeneratorConfig, RayConfig
from portraitcraft.errors import InputError
from portraitcraft.tools.gpu_jobs import GpuJob, JobResult, LaneExecutor

ray = pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")

from ray_helpers import descendants, not_on_loopback, wait_gone  # noqa: E402

from portraitcraft.tools.ray_pool import LOOPBACK_ENV, RayGpuPool, RayPoolError, _loopback_only  # noqa: E402

pytest_plugins = ["diffusion_fixtures"]
pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

STORE = 80 * 2**20  # object store per node: small (the jobs carry tiny PNGs)
RAY_ENV = {LOOPBACK_ENV: "0", "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1"}


def children() -> set[int]:
    return descendants(os.getpid())


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A head and a worker node on 127.0.0.1, one GPU declared on each, dashboard off; stopped (by pid) after."""
    from ray.cluster_utils import Cluster

    saved = {k: os.environ.get(k) for k in RAY_ENV}
    os.environ.update(RAY_ENV)
    _loopback_only(ray, True)
    before = children()
    node_args = {"num_cpus": 1, "num_gpus": 1, "object_store_memory": STORE, "node_ip_address": "127.0.0.1"}
    c = Cluster(initialize_head=True, head_node_args={**node_args, "include_dashboard": False})
    try:
        c.add_node(**node_args)
        c.wait_for_nodes()
        assert not not_on_loopback(children() - before), "the test cluster listens beyond 127.0.0.1"
        yield c
    finally:
        started = children() - before
        c.shutdown()
        _loopback_only(ray, False)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        assert not wait_gone(started), "Ray processes left behind after the cluster shut down"


def sleep_job(item: str, seconds: float = 0.3) -> GpuJob:
    return GpuJob(kind="sleep", args={"seconds": seconds}, item_id=item)


# ---- on the two-node cluster ----------------------------------------------------------------------------


async def test_no_gpu_in_the_cluster_is_a_clear_error(cluster: Any) -> None:
    pool = RayGpuPool(RayConfig(address=cluster.address, gpus_per_actor=4))
    with pytest.raises(RayPoolError, match="reports 2 GPUs, too few for one actor of gpus_per_actor = 4"):
        await pool.run(sleep_job("a"))
    await pool.aclose()
    assert not ray.is_initialized()


@pytest.mark.diffusion
async def test_ray_images_are_byte_identical_to_the_lane_and_follow_their_item(
    cluster: Any, cpu_cfg: Callable[..., Any], tiny_zimage: Path
) -> None:
    gen = cpu_cfg(GeneratorConfig, tiny_zimage).model_dump(mode="json")
    edit = cpu_cfg(EditorConfig, tiny_zimage, backend="img2img", strength=0.5).model_dump(mode="json")
    items = ["a", "b", "c"]
    drafts = [GpuJob(kind="generate", backend=gen, args={"prompt": f"portrait {i}", "width": 32, "height": 32,
                                                         "seed": 10 + n}, item_id=i) for n, i in enumerate(items)]
    import torch

    # CPU float results depend on the intra-op thread count; Ray runs GPU actors' CPU work with one thread
    # (OMP_NUM_THREADS=1), so the reference lane does too (on a GPU, CUDA kernels do not depend on it).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    lane = LaneExecutor()
    try:
        want_drafts = [await lane.run(j) for j in drafts]
        edits = [GpuJob(kind="edit", backend=edit, args={"image_png": r.png, "instruction": "smile", "seed": 3},
                        item_id=i) for i, r in zip(items, want_drafts, strict=True)]
        want_edits = [await lane.run(j) for j in edits]
    finally:
        await lane.aclose()
        torch.set_num_threads(threads)

    pool = RayGpuPool(RayConfig(address=cluster.address))  # one actor per declared GPU
    try:
        got_drafts = await asyncio.gather(*(pool.run(j) for j in drafts))
        got_edits = await asyncio.gather(*(pool.run(j) for j in edits))
        actors = pool.actors()
        stats = pool.stats()
    finally:
        await pool.aclose()
    assert len(actors) == 2 and len({a["node_id"] for a in actors}) == 2  # one actor on each node
    for want, got in zip(want_drafts + want_edits, got_drafts + got_edits, strict=True):
        assert got.png == want.png and got.metadata == want.metadata
    assert {r.worker for r in got_drafts} == {"actor-0", "actor-1"}  # least loaded: both actors drew
    assert [r.worker for r in got_edits] == [r.worker for r in got_drafts]  # each item's edit followed it
    assert stats.jobs == 6 and stats.per_kind_jobs == {"generate": 3, "edit": 3} and not stats.events
    assert set(stats.workers) == {"actor-0", "actor-1"} and 0 < stats.utilisation <= 1
    assert not wait_gone({a["pid"] for a in actors}), "actor processes outlived the pool"


async def test_jobs_beyond_the_in_flight_bound_wait_in_the_driver(cluster: Any) -> None:
    pool = RayGpuPool(RayConfig(address=cluster.address, max_in_flight_per_actor=1))
    try:
        await pool.start()
        tasks = [asyncio.create_task(pool.run(sleep_job(f"i{i}", 0.2))) for i in range(6)]
        await asyncio.sleep(0.05)
        assert pool.stats().queued == 4  # two on the actors, four held back
        results = await asyncio.gather(*tasks)
        assert all(isinstance(r, JobResult) for r in results)
        assert [a["peak_in_flight"] for a in pool.actors()] == [1, 1]
        assert sorted(a["jobs"] for a in pool.actors()) == [3, 3]
    finally:
        await pool.aclose()


async def test_a_job_that_fails_by_itself_is_not_retried(cluster: Any) -> None:
    pool = RayGpuPool(RayConfig(address=cluster.address))
    try:
        bad = GpuJob(kind="edit", backend=EditorConfig(device="cpu").model_dump(), args={"seed": 1}, item_id="x")
        with pytest.raises(InputError, match="lacks the argument 'image_png'"):
            await pool.run(bad)
        ok = await pool.run(sleep_job("y", 0.01))  # the actor is still there
        stats = pool.stats()
    finally:
        await pool.aclose()
    assert ok.worker in {"actor-0", "actor-1"}
    assert stats.failed == 1 and stats.jobs == 1 and stats.events == []


async def test_a_killed_actor_s_jobs_finish_on_the_survivor_exactly_once(cluster: Any) -> None:
    pool = RayGpuPool(RayConfig(address=cluster.address, max_job_retries=2))
    done: list[str] = []

    async def one(item: str) -> JobResult:
        result = await pool.run(sleep_job(item, 0.25))
        done.append(item)
        return result

    try:
        await pool.start()
        tasks = {f"i{i}": asyncio.create_task(one(f"i{i}")) for i in range(8)}
        await asyncio.sleep(0.1)  # both actors are running a job
        ray.kill(pool.handle("actor-0"), no_restart=True)
        results = {item: await task for item, task in tasks.items()}
        stats = pool.stats()
        alive = {a["name"]: a["alive"] for a in pool.actors()}
        ray.kill(pool.handle("actor-1"), no_restart=True)
        with pytest.raises(RayPoolError, match="no Ray GPU actor is left"):
            await pool.run(sleep_job("late"))
    finally:
        await pool.aclose()
    assert sorted(done) == sorted(tasks) and len(done) == 8  # every job once
    assert alive == {"actor-0": False, "actor-1": True}
    died = [e for e in stats.events if e["event"] == "actor_died"]
    retried = [e for e in stats.events if e["event"] == "job_retried"]
    assert [e["worker"] for e in died] == ["actor-0"] and retried
    assert {results[e["item_id"]].worker for e in retried} == {"actor-1"}  # re-run on the survivor
    assert stats.workers["actor-1"].jobs + stats.workers["actor-0"].jobs == 8


def test_doctor_shows_the_cluster_s_nodes_and_gpus(cluster: Any) -> None:
    from portraitcraft.cli.doctor import run_checks
    from portraitcraft.config import load_config

    cfg = load_config(overrides={"run": {"executor": "ray"}, "ray": {"address": cluster.address}})
    [check] = [c for c in run_checks(cfg, endpoints=False) if c.name == "ray"]
    assert check.status == "ok" and "2 node(s), 2 GPU(s) -> 2 actor(s)" in check.detail
    assert "127.0.0.1: 1 GPU" in check.detail and not ray.is_initialized()


def test_doctor_says_when_no_actor_can_be_placed() -> None:
    from portraitcraft.cli.doctor import check_ray
    from portraitcraft.config import load_config

    check = check_ray(load_config(overrides={"run": {"executor": "ray"}}))  # local Ray on a box with no GPU
    assert check.status == "fail" and "0 GPU(s) -> 0 actor(s)" in check.detail and "[ray] actors" in check.hint
