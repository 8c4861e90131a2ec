"""GPU work as serialisable jobs: the Drawer facade through the in-process lane executor gives the same pixels
as the backends called directly; jobs travel as JSON and pickle; one model pool (budget from `[gpu]`) serves
generator, refiner and editor; remote backends skip the executor."""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from PIL import Image

from portraitcraft.config import ConfigError, DiffusionConfig, EditorConfig, GeneratorConfig, load_config
from portraitcraft.errors import InputError
from portraitcraft.tools.diffusion.base import GenParams
from portraitcraft.tools.gpu_jobs import (
    Drawer,
    ExecutorStats,
    GpuJob,
    JobResult,
    JobRunner,
    LaneExecutor,
    WorkerStats,
    params_from_args,
    params_to_args,
    png_bytes,
)

if TYPE_CHECKING:
    from fake_image_api import FakeImageAPI

pytest_plugins = ["diffusion_fixtures", "fake_image_api"]


def gradient(width: int = 32, height: int = 32) -> Image.Image:
    return Image.fromarray(np.linspace(0, 255, width * height * 3).reshape(height, width, 3).astype(np.uint8))


def same_pixels(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and np.array_equal(np.asarray(a.convert("RGB")), np.asarray(b.convert("RGB")))


# ---- serialisable jobs ------------------------------------------------------------------------------------


def test_a_job_with_image_bytes_round_trips_through_json_and_pickle() -> None:
    params = GenParams(steps=3, negative_prompt="blur", pose=[[(1, 2, 0.5)] * 17], extra={"eta": 0.1},
                       reference_images=[gradient(8, 8)], control_image=gradient(16, 16))
    job = GpuJob(kind="edit", backend=EditorConfig(device="cpu").model_dump(mode="json"),
                 args={"image_png": png_bytes(gradient()), "instruction": "turn left", "seed": 7,
                       "params": params_to_args(params)}, item_id="images_01/a b.jpg", priority=3)
    again = GpuJob.model_validate_json(job.model_dump_json())
    assert again == job and isinstance(again.args["image_png"], bytes)
    assert again.args["params"]["reference_pngs"][0] == job.args["params"]["reference_pngs"][0]
    assert pickle.loads(pickle.dumps(job)) == job
    back = params_from_args(again.args["params"])
    assert (back.steps, back.negative_prompt, back.extra, len(back.pose[0])) == (3, "blur", {"eta": 0.1}, 17)
    assert same_pixels(back.reference_images[0], gradient(8, 8)) and same_pixels(back.control_image, gradient(16, 16))
    result = JobResult(png=png_bytes(gradient()), metadata={"seed": 7}, seconds=0.5, worker="actor-0")
    assert JobResult.model_validate_json(result.model_dump_json()) == result == pickle.loads(pickle.dumps(result))


def test_a_job_refuses_an_unknown_kind_and_params_that_are_not_plain_data() -> None:
    with pytest.raises(ValueError, match="kind"):
        GpuJob(kind="train", backend={}, args={})
    with pytest.raises(InputError, match="plain JSON"):
        params_to_args(GenParams(extra={"callback": object()}))


def test_a_job_missing_an_argument_is_an_input_error_naming_it() -> None:
    job = GpuJob(kind="edit", backend=EditorConfig(backend="remote").model_dump(), args={"seed": 1}, item_id="x")
    with pytest.raises(InputError, match=r"edit job .* item 'x' lacks the argument 'image_png'"):
        JobRunner().run(job)


def test_a_job_with_a_bad_backend_config_is_an_input_error_naming_the_key() -> None:
    job = GpuJob(kind="generate", backend={"backend": "zimage", "stepz": 3},
                 args={"prompt": "p", "width": 32, "height": 32, "seed": 1}, item_id="x")
    with pytest.raises(InputError, match=r"generate job .* invalid backend config: .* \(at stepz\)"):
        JobRunner().prepare(job)


@pytest.mark.diffusion
def test_jobs_prepared_in_parallel_threads_share_one_pool_and_one_backend(cpu_cfg: Callable[..., Any],
                                                                        tiny_zimage: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    runner = JobRunner()
    sections = [cpu_cfg(GeneratorConfig, tiny_zimage, steps=s).model_dump(mode="json") for s in (2, 2, 3, 3)] * 4
    with ThreadPoolExecutor(8) as pool:
        backends = list(pool.map(lambda sec: runner.backend("generate", sec), sections))
    assert len({id(b) for b in backends}) == 2  # one per distinct config
    assert list(runner.pools) == ["cpu"] and all(b.local.pool is runner.pools["cpu"] for b in backends)


def test_stats_utilisation_counts_every_worker() -> None:
    stats = ExecutorStats(executor="ray", busy_seconds=3.0, elapsed_seconds=2.0, jobs=3, failed=0, queued=0,
                          workers={"a": WorkerStats(2.0, 2), "b": WorkerStats(1.0, 1)})
    assert stats.utilisation == pytest.approx(0.75)
    assert stats.worker_utilisation == {"a": 1.0, "b": 0.5}
    assert stats.to_json()["utilisation"] == pytest.approx(0.75)


# ---- config ------------------------------------------------------------------------------------------------


def test_pool_settings_live_in_the_gpu_section_and_old_keys_are_refused(tmp_path: Path) -> None:
    cfg = load_config(overrides={"gpu": {"pool_budget_gb": 12, "pool_evict": "drop"}})
    assert (cfg.gpu.pool_budget_gb, cfg.gpu.pool_evict, cfg.run.executor) == (12, "drop", "lane")
    old = tmp_path / "old.toml"
    old.write_text('[generator]\npool_budget_gb = 12\n')
    with pytest.raises(ConfigError, match=r"pool_budget_gb moved from \[generator\] to \[gpu\]"):
        load_config(old)


# ---- the lane executor on tiny models ---------------------------------------------------------------------


@pytest.mark.diffusion
async def test_drawer_generate_and_edit_through_the_lane_match_direct_calls(
    cpu_cfg: Callable[..., Any], tiny_zimage: Path, tiny_qwen_edit: Path
) -> None:
    from portraitcraft.tools.diffusion import build_editor, build_generator, meta_of

    gen_cfg = cpu_cfg(GeneratorConfig, tiny_zimage, guidance_scale=2.0)  # CFG on: the negative prompt is read
    edit_cfg = cpu_cfg(EditorConfig, tiny_qwen_edit, backend="qwen-image-edit-plus", edit_max_area=64 * 64)
    direct_gen = build_generator(gen_cfg)
    direct_edit = build_editor(edit_cfg)
    want = direct_gen.generate("a portrait, subject left", 32, 32, 5, GenParams(negative_prompt="blur"))
    want_edit = direct_edit.edit(want, "turn her head left", 9)

    executor = LaneExecutor()
    drawer = Drawer(executor, gen_cfg, edit_cfg)
    try:
        got = await drawer.generate("a portrait, subject left", 32, 32, 5, item_id="a", negative_prompt="blur")
        got_edit = await drawer.edit(got, "turn her head left", seed=9, item_id="a")
    finally:
        await drawer.aclose()
    assert same_pixels(got, want) and same_pixels(got_edit, want_edit)
    assert meta_of(got) == meta_of(want) and meta_of(got).negative_prompt == "blur"
    assert meta_of(got_edit) == meta_of(want_edit)
    stats = drawer.stats()
    assert stats.per_kind_jobs == {"generate": 1, "edit": 1} and stats.workers["lane"].jobs == 2
    assert 0 < drawer.item_seconds("a") <= stats.busy_seconds + 1e-6


@pytest.mark.diffusion
async def test_one_pool_serves_generator_refiner_and_editor_within_the_gpu_budget(
    cpu_cfg: Callable[..., Any], tiny_zimage: Path, tiny_qwen_edit: Path, tiny_qwen_image: Path
) -> None:
    from portraitcraft.tools.backends import build_backends
    from portraitcraft.tools.diffusion import build_generator, meta_of
    from portraitcraft.tools.diffusion.loading import load_pipeline, pool_key
    from portraitcraft.tools.gpu import pipeline_bytes

    gen = cpu_cfg(GeneratorConfig, tiny_zimage)
    edit = cpu_cfg(EditorConfig, tiny_qwen_edit, backend="qwen-image-edit", edit_max_area=64 * 64)
    refiner = cpu_cfg(DiffusionConfig, tiny_qwen_image, backend="img2img")
    sizes = {c.model: pipeline_bytes(load_pipeline(c)) for c in (gen, edit, refiner)}
    budget = max(sizes.values()) * 1.01  # room for one model at a time: every switch evicts
    cfg = load_config(overrides={
        "generator": {**gen.model_dump(), "refiner": refiner.model_dump(), "refiner_strength": 0.5},
        "editor": edit.model_dump(), "gpu": {"pool_budget_gb": budget / 2**30},
    })
    backends = build_backends(cfg)
    try:
        drawn = await backends.drawer.generate("a portrait", 32, 32, 3, item_id="a")
        await backends.drawer.edit(drawn, "smile", seed=3, item_id="a")
        refined = await backends.drawer.refine(drawn, "a portrait", seed=4, item_id="a")
    finally:
        await backends.aclose()
    pool = backends.pool
    assert pool is not None and backends.executor.runner.pools == {"cpu": pool}
    assert sorted(pool.loaded()) == sorted(pool_key(c) for c in (gen, edit, refiner))  # one pool held all three
    assert pool.used_bytes() <= pool.budget_bytes and pool.evictions >= 3
    assert meta_of(drawn).refiner is not None and meta_of(drawn).refiner.strength == 0.5
    assert meta_of(refined).strength == 0.5 and meta_of(refined).model == str(tiny_qwen_image)
    direct = build_generator(cfg.generator).generate("a portrait", 32, 32, 3)  # a private pool, same pixels
    assert same_pixels(direct, drawn)


@pytest.mark.diffusion
async def test_items_already_started_go_first_until_the_drawer_says_they_are_done() -> None:
    executor = LaneExecutor()
    drawer = Drawer(executor, GeneratorConfig(device="cpu"))
    order: list[str] = []

    async def job(item: str) -> None:
        await executor.run(GpuJob(kind="sleep", args={"seconds": 0.05}, item_id=item))
        order.append(item)

    try:
        await job("a")  # "a" has started
        blocker = asyncio.create_task(job("blocker"))
        await asyncio.sleep(0.01)
        new_b, again_a = asyncio.create_task(job("b")), asyncio.create_task(job("a"))
        await asyncio.gather(blocker, new_b, again_a)
        assert order == ["a", "blocker", "a", "b"]  # started item "a" jumped the queue
        drawer.item_done("a")
        order.clear()
        blocker = asyncio.create_task(job("blocker"))
        await asyncio.sleep(0.01)
        new_b, again_a = asyncio.create_task(job("b")), asyncio.create_task(job("a"))
        await asyncio.gather(blocker, new_b, again_a)
        assert order == ["blocker", "b", "a"]  # "a" is new again: FIFO
    finally:
        await drawer.aclose()


# ---- remote backends skip the executor --------------------------------------------------------------------


class RefusingExecutor:
    """An executor that fails the test if the drawer hands it a job."""

    def __init__(self) -> None:
        self.closed = False

    async def run(self, job: GpuJob) -> JobResult:
        raise AssertionError(f"a remote backend's call reached the executor: {job.describe()}")

    def item_done(self, item_id: str) -> None:
        pass

    def stats(self) -> ExecutorStats:
        return ExecutorStats(executor="none", busy_seconds=0, elapsed_seconds=0, jobs=0, failed=0, queued=0)

    async def aclose(self) -> None:
        self.closed = True


async def test_remote_backends_are_called_directly_with_their_async_calls(fake_image_api: FakeImageAPI) -> None:
    from portraitcraft.tools.diffusion import meta_of

    remote = fake_image_api.config()
    executor = RefusingExecutor()
    drawer = Drawer(executor, GeneratorConfig(**remote.model_dump()), EditorConfig(**remote.model_dump()))
    image = await drawer.generate("a woman on the left third", 48, 32, 5, item_id="a", negative_prompt="blur")
    edited = await drawer.edit(image, "make it red", seed=5, item_id="a")
    await drawer.aclose()
    assert image.size == (48, 32)
    assert image.getpixel((3, 3)) == fake_image_api.prompt_colour("a woman on the left third")
    assert meta_of(edited).instruction == "make it red"
    assert drawer.remote_calls == 2 and executor.closed
    assert [r.path.rsplit("/", 1)[-1] for r in fake_image_api.requests] == ["generations", "edits"]


def test_build_backends_picks_the_configured_executor_without_starting_it() -> None:
    pytest.importorskip("ray")
    from portraitcraft.tools.backends import build_backends
    from portraitcraft.tools.ray_pool import RayGpuPool

    cfg = load_config(overrides={"run": {"executor": "ray"}, "ray": {"actors": 2, "gpus_per_actor": 0},
                                 "gpu": {"pool_budget_gb": 8}})
    backends = build_backends(cfg)
    assert isinstance(backends.executor, RayGpuPool) and backends.pool is None  # pools live in the actors
    assert backends.executor.cfg.actors == 2 and backends.executor.gpu.pool_budget_gb == 8
    assert backends.drawer.executor is backends.executor and backends.executor.actors() == []  # not started
    lane = build_backends(load_config(overrides={"generator": {"device": "cpu"}}))
    assert isinstance(lane.executor, LaneExecutor) and lane.pool is lane.executor.runner.pool_for("cpu")
    asyncio.run(lane.aclose())
