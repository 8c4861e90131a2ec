"""GPU work as serialisable jobs, the executors that run them, and the one async facade every graph draws with.

    Drawer.generate / edit / refine / outpaint (async; what agents and graphs call)
      -> remote backend: its async HTTP call directly (never on the lane: HTTP would block its one thread)
      -> local backend:  a `GpuJob` (kind, backend config section, arguments — plain data, no closure)
           -> executor.run(job) -> `JobResult` (PNG bytes + metadata)
                LaneExecutor: this process, one worker thread (`tools.gpu.GpuLane`), one model pool per device
                RayGpuPool (tools/ray_pool.py): a pool of Ray actors, one per GPU, each with its own pool

`JobRunner` is the part both executors share: it builds (and caches) the backend a job's config names, with the
model pool of its device, and runs one job synchronously. Nothing here imports torch.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from portraitcraft.config import DiffusionConfig, EditorConfig, GeneratorConfig, GpuConfig
from portraitcraft.errors import InputError
from portraitcraft.tools.diffusion.base import GenParams
from portraitcraft.tools.diffusion.factory import build_editor, build_generator, build_pool, build_refiner
from portraitcraft.tools.diffusion.metadata import ImageMeta, attach_meta, meta_of
from portraitcraft.tools.gpu import GpuLane, ModelPool

JobKind = Literal["generate", "edit", "refine", "outpaint", "sleep"]
"""generate: text-to-image (with the generator's cascaded refiner when configured); edit: an instruction edit
(or SDEdit) of `image_png`; refine: an SDEdit pass of `image_png` towards `prompt` at `strength`; outpaint:
the white pixels of `mask_png` in `image_png` repainted by the editor model's inpaint pipeline; sleep: a
simulated GPU job of `seconds` (benchmarks and scheduling tests; needs no model)."""

PNG_COMPRESS_LEVEL = 1
"""zlib level of the PNG bytes jobs carry (fast to encode; lossless at any level)."""


def _decode_b64(value: Any) -> Any:
    if isinstance(value, str):
        return base64.urlsafe_b64decode(value.encode())
    if isinstance(value, list):
        return [_decode_b64(v) for v in value]
    return value


def _png_fields_to_bytes(data: Any) -> Any:
    """Keys ending in `_png` / `_pngs` hold PNG bytes; from JSON they arrive base64-encoded."""
    if isinstance(data, dict):
        return {k: _decode_b64(v) if k.endswith(("_png", "_pngs")) else _png_fields_to_bytes(v)
                for k, v in data.items()}
    return data


class GpuJob(BaseModel):
    """One unit of GPU work, described by plain data so it can run in another process or on another machine.

    Args:
        kind ("generate" | "edit" | "refine" | "sleep"): what to do (see `JobKind`).
        backend (dict): the backend config section's `model_dump()` (generator, editor or refiner).
        args (dict): the call's arguments: `prompt`, `width`, `height`, `seed`, `params` (see `params_to_args`)
            for generate; `image_png`, `instruction`, `seed`, `params` for edit; `image_png`, `prompt`, `seed`,
            `strength` for refine; `seconds` for sleep. Keys ending in `_png` / `_pngs` hold PNG bytes.
        item_id (str, optional): the work item (priority, affinity, per-item GPU seconds).
        priority (int, optional): lower runs sooner; None lets the executor favour items already started.

    Example:
        >>> job = GpuJob(kind="sleep", backend={}, args={"seconds": 0.01}, item_id="a")
        >>> GpuJob.model_validate_json(job.model_dump_json()) == job
        True
    """

    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_bytes="base64", val_json_bytes="base64")

    kind: JobKind
    backend: dict[str, Any] = Field(default_factory=dict)
    args: dict[str, Any] = Field(default_factory=dict)
    item_id: str | None = None
    priority: int | None = None

    @field_validator("args", mode="before")
    @classmethod
    def _bytes_from_json(cls, value: Any) -> Any:
        return _png_fields_to_bytes(value)

    def describe(self) -> str:
        """A short label for errors and logs: kind, model and item."""
        model = self.backend.get("model", "-")
        return f"{self.kind} job ({model}) of item {self.item_id!r}"


class JobResult(BaseModel):
    """What a job gives back: the image as PNG bytes, its generation metadata, GPU seconds and who ran it."""

    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_bytes="base64", val_json_bytes="base64")

    png: bytes = b""
    metadata: dict[str, Any] = Field(default_factory=dict)
    seconds: float = 0.0
    worker: str = ""


# ---- images <-> bytes -------------------------------------------------------------------------------------


def png_bytes(image: Image.Image) -> bytes:
    """The image's pixels as PNG bytes (RGB; metadata travels separately, in `JobResult.metadata`)."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()


def image_from_png(data: bytes) -> Image.Image:
    """Decode PNG bytes into a loaded RGB image."""
    with Image.open(io.BytesIO(data)) as img:
        return img.convert("RGB")


def result_image(result: JobResult) -> Image.Image:
    """The result's image with its generation metadata attached (`image.info`, as the backends attach it)."""
    image = image_from_png(result.png)
    if result.metadata:
        attach_meta(image, ImageMeta.model_validate(result.metadata))
    return image


_SCALAR_PARAMS = ("steps", "guidance_scale", "true_cfg_scale", "negative_prompt", "strength", "max_sequence_length",
                  "controlnet_scale", "width", "height")


def params_to_args(params: GenParams | None) -> dict[str, Any]:
    """`GenParams` as plain job data: scalars as they are, `pose` as lists, images as PNG bytes.

    Example:
        >>> params_to_args(GenParams(steps=4, negative_prompt="blur"))
        {'steps': 4, 'negative_prompt': 'blur'}
    """
    if params is None:
        return {}
    out: dict[str, Any] = {k: getattr(params, k) for k in _SCALAR_PARAMS if getattr(params, k) is not None}
    if params.pose is not None:
        out["pose"] = [[list(map(float, point)) for point in person] for person in params.pose]
    if params.control_image is not None:
        out["control_image_png"] = png_bytes(params.control_image)
    if params.reference_images:
        out["reference_pngs"] = [png_bytes(im) for im in params.reference_images]
    if params.extra:
        try:
            json.dumps(params.extra)
        except TypeError:
            raise InputError("GenParams.extra must hold plain JSON data to travel in a GPU job") from None
        out["extra"] = dict(params.extra)
    return out


def params_from_args(data: dict[str, Any] | None) -> GenParams | None:
    """The inverse of `params_to_args`."""
    if not data:
        return None
    kwargs: dict[str, Any] = {k: data[k] for k in (*_SCALAR_PARAMS, "pose", "extra") if data.get(k) is not None}
    if data.get("control_image_png") is not None:
        kwargs["control_image"] = image_from_png(data["control_image_png"])
    if data.get("reference_pngs"):
        kwargs["reference_images"] = [image_from_png(b) for b in data["reference_pngs"]]
    return GenParams(**kwargs)


# ---- running jobs -----------------------------------------------------------------------------------------


class JobRunner:
    """Runs jobs synchronously in one process: builds the backend a job's config names (cached by that config)
    with the model pool of its device (one pool per device, budget and eviction from `[gpu]`).

    Args:
        gpu (GpuConfig, optional): the pool budget and eviction policy.
        name (str, optional): the worker name written into every `JobResult`.

    Example:
        >>> runner = JobRunner(GpuConfig(pool_budget_gb=40))
        >>> runner.run(GpuJob(kind="sleep", args={"seconds": 0})).worker
        'local'
    """

    def __init__(self, gpu: GpuConfig | None = None, *, name: str = "local") -> None:
        self.gpu = gpu or GpuConfig()
        self.name = name
        self._pools: dict[str, ModelPool] = {}
        self._backends: dict[tuple[str, str], Any] = {}
        self._lock = threading.RLock()  # jobs are prepared in worker threads: one pool per device, always

    def pool_for(self, device: str) -> ModelPool:
        """The one model pool of `device` (made on first use with the `[gpu]` budget)."""
        with self._lock:
            pool = self._pools.get(device)
            if pool is None:
                pool = self._pools[device] = build_pool(device, self.gpu)
            return pool

    @property
    def pools(self) -> dict[str, ModelPool]:
        """The pools made so far, by device."""
        return dict(self._pools)

    def backend(self, kind: str, section: dict[str, Any]) -> Any:
        """The (cached) backend object for a job kind and its config section."""
        key = (kind, json.dumps(section, sort_keys=True, default=str))
        with self._lock:
            return self._backends.get(key) or self._build(kind, key, section)

    def _build(self, kind: str, key: tuple[str, str], section: dict[str, Any]) -> Any:
        backend: Any
        if kind == "generate":
            backend = build_generator(GeneratorConfig.model_validate(section), pool_for=self.pool_for)
        elif kind == "edit":
            cfg: DiffusionConfig = EditorConfig.model_validate(section)
            backend = build_editor(cfg, self.pool_for(cfg.device))
        elif kind == "refine":
            cfg = DiffusionConfig.model_validate(section)
            backend = build_refiner(cfg, self.pool_for(cfg.device))
        elif kind == "outpaint":
            from portraitcraft.tools.diffusion.outpaint import InpaintOutpainter

            cfg = EditorConfig.model_validate(section)
            backend = InpaintOutpainter(cfg, self.pool_for(cfg.device))
        else:
            raise InputError(f"GPU job kind {kind!r} has no backend")
        self._backends[key] = backend
        return backend

    def prepare(self, job: GpuJob) -> Callable[[], Image.Image | None]:
        """Decode the job's inputs and return the call that runs it (the part that needs the GPU)."""
        a = job.args
        try:
            if job.kind == "sleep":
                seconds = float(a.get("seconds", 0.0))
                return lambda: time.sleep(seconds)
            backend = self.backend(job.kind, job.backend)
            if job.kind == "generate":
                params = params_from_args(a.get("params"))
                prompt, width, height, seed = a["prompt"], a["width"], a["height"], a["seed"]
                return lambda: backend.generate(prompt, width, height, seed, params)
            image = image_from_png(a["image_png"])
            if job.kind == "outpaint":
                mask = image_from_png(a["mask_png"]).convert("L")
                prompt, seed = a["prompt"], a["seed"]
                return lambda: backend.outpaint(image, mask, prompt, seed)
            if job.kind == "edit":
                params = params_from_args(a.get("params"))
                instruction, seed = a["instruction"], a["seed"]
                return lambda: backend.edit(image, instruction, seed, params)
            strength = a.get("strength")
            refine_params = GenParams(strength=strength) if strength is not None else None
            prompt, seed = a["prompt"], a["seed"]
            return lambda: backend.edit(image, prompt, seed, refine_params)
        except KeyError as exc:
            raise InputError(f"{job.describe()} lacks the argument {exc.args[0]!r}") from None
        except ValidationError as exc:
            raise InputError(f"{job.describe()} has an invalid backend config: {exc.errors()[0]['msg']} "
                             f"(at {'.'.join(map(str, exc.errors()[0]['loc']))})") from None

    @staticmethod
    def finish(image: Image.Image | None, seconds: float, worker: str) -> JobResult:
        """Pack a job's output image (None for sleep jobs) into a `JobResult`."""
        if image is None:
            return JobResult(seconds=seconds, worker=worker)
        meta = meta_of(image)
        return JobResult(png=png_bytes(image), metadata=meta.model_dump(mode="json") if meta else {},
                         seconds=seconds, worker=worker)

    def run(self, job: GpuJob) -> JobResult:
        """Run one job here and now (a Ray actor's whole job; the lane splits prepare / call / finish)."""
        call = self.prepare(job)
        start = time.perf_counter()
        image = call()
        return self.finish(image, time.perf_counter() - start, self.name)


# ---- executors --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerStats:
    """One worker's (lane's or actor's) share of the work."""

    busy_seconds: float
    jobs: int
    failed: int = 0


@dataclass(frozen=True)
class ExecutorStats:
    """Busy-time accounting of an executor: `utilisation` = busy / (workers x elapsed); `worker_utilisation`
    per worker. `events` lists faults survived (an actor that died, the jobs retried)."""

    executor: str
    busy_seconds: float
    elapsed_seconds: float
    jobs: int
    failed: int
    queued: int
    workers: dict[str, WorkerStats] = field(default_factory=dict)
    per_kind_seconds: dict[str, float] = field(default_factory=dict)
    per_kind_jobs: dict[str, int] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def utilisation(self) -> float:
        slots = max(len(self.workers), 1) * self.elapsed_seconds
        return self.busy_seconds / slots if slots > 0 else 0.0

    @property
    def worker_utilisation(self) -> dict[str, float]:
        e = self.elapsed_seconds
        return {name: (w.busy_seconds / e if e > 0 else 0.0) for name, w in self.workers.items()}

    def to_json(self) -> dict[str, Any]:
        """Plain data for results, reports and `--json` output."""
        data = asdict(self)
        data["utilisation"] = self.utilisation
        data["worker_utilisation"] = self.worker_utilisation
        return data


@runtime_checkable
class Executor(Protocol):
    """Runs GPU jobs: the in-process lane (`LaneExecutor`) or a pool of Ray actors (`tools.ray_pool.RayGpuPool`).
    Graphs and agents see only this (through `Drawer`)."""

    async def run(self, job: GpuJob) -> JobResult: ...

    def item_done(self, item_id: str) -> None: ...

    def stats(self) -> ExecutorStats: ...

    async def aclose(self) -> None: ...


class LaneExecutor:
    """The default executor: jobs run one at a time on this process's `GpuLane`, with a `JobRunner`.

    Inputs are decoded and results encoded off the lane (in a thread), so lane busy time is the GPU call.

    Args:
        gpu (GpuConfig, optional): the model pool settings.
        runner (JobRunner, optional): a ready runner (shares its pools); built from `gpu` when None.
        lane (GpuLane, optional): a ready lane; one is started (and closed by `aclose`) when None.
    """

    def __init__(self, gpu: GpuConfig | None = None, *, runner: JobRunner | None = None,
                 lane: GpuLane | None = None) -> None:
        self.runner = runner or JobRunner(gpu, name="lane")
        self._own_lane = lane is None
        self.lane = lane or GpuLane()

    async def run(self, job: GpuJob) -> JobResult:
        call = await asyncio.to_thread(self.runner.prepare, job)

        def timed() -> tuple[Image.Image | None, float]:
            start = time.perf_counter()
            out = call()
            return out, time.perf_counter() - start

        image, seconds = await self.lane.submit(timed, priority=job.priority, item_id=job.item_id, kind=job.kind)
        return await asyncio.to_thread(self.runner.finish, image, seconds, self.runner.name)

    def item_done(self, item_id: str) -> None:
        self.lane.finish_item(item_id)

    def stats(self) -> ExecutorStats:
        s = self.lane.stats()
        return ExecutorStats(
            executor="lane", busy_seconds=s.busy_seconds, elapsed_seconds=s.elapsed_seconds, jobs=s.jobs,
            failed=s.failed, queued=s.queued, workers={self.runner.name: WorkerStats(s.busy_seconds, s.jobs, s.failed)},
            per_kind_seconds=s.per_kind_seconds, per_kind_jobs=s.per_kind_jobs,
        )

    def reset_stats(self) -> None:
        """Start a new accounting window (e.g. after warm-up)."""
        self.lane.reset_stats()

    async def aclose(self) -> None:
        if self._own_lane:
            await asyncio.to_thread(self.lane.close)


# ---- the facade -------------------------------------------------------------------------------------------


class Drawer:
    """The one async way to draw and edit: local backends through the executor, remote ones directly.

    Args:
        executor (Executor): runs GPU jobs.
        generator_cfg (GeneratorConfig): the `[generator]` section.
        editor_cfg (EditorConfig, optional): the `[editor]` section (needed for `edit`).

    Example:
        >>> backends = build_backends(load_config("configs/zimage-turbo.toml"))  # doctest: +SKIP
        >>> image = await backends.drawer.generate("a portrait", 832, 1216, 7, item_id="a")  # doctest: +SKIP
        >>> fixed = await backends.drawer.edit(image, "turn her head left", seed=7, item_id="a")  # doctest: +SKIP
        >>> backends.drawer.item_done("a")  # doctest: +SKIP
    """

    def __init__(self, executor: Executor, generator_cfg: GeneratorConfig,
                 editor_cfg: DiffusionConfig | None = None) -> None:
        self.executor = executor
        self.generator_cfg = generator_cfg
        self.editor_cfg = editor_cfg
        self._remote: dict[str, Any] = {}
        self._item_seconds: dict[str, float] = {}
        self.remote_calls = 0

    def _remote_backend(self, cfg: DiffusionConfig) -> Any:
        key = cfg.model_dump_json()
        backend = self._remote.get(key)
        if backend is None:
            from portraitcraft.tools.diffusion.remote import RemoteImageBackend

            backend = self._remote[key] = RemoteImageBackend(cfg)
        return backend

    async def _run(self, kind: JobKind, cfg: DiffusionConfig, args: dict[str, Any], item_id: str | None,
                   priority: int | None) -> Image.Image:
        job = GpuJob(kind=kind, backend=cfg.model_dump(mode="json"), args=args, item_id=item_id, priority=priority)
        result = await self.executor.run(job)
        if item_id is not None:
            self._item_seconds[item_id] = self._item_seconds.get(item_id, 0.0) + result.seconds
        return await asyncio.to_thread(result_image, result)

    async def generate(self, prompt: str, width: int, height: int, seed: int, *, item_id: str | None,
                       negative_prompt: str | None = None, params: GenParams | None = None,
                       priority: int | None = None) -> Image.Image:
        """Draw `prompt` at `width` x `height` with `seed` (the generator's refiner pass included when set).

        `negative_prompt` overrides the config's; `params` carries other per-call settings (pose, steps...).
        """
        if negative_prompt is not None:
            params = (params or GenParams()).merged(GenParams(negative_prompt=negative_prompt))
        cfg = self.generator_cfg
        if cfg.backend == "remote":
            self.remote_calls += 1
            return await self._remote_backend(cfg).agenerate(prompt, width, height, seed, params)
        args = {"prompt": prompt, "width": width, "height": height, "seed": seed,
                "params": params_to_args(params)}
        return await self._run("generate", cfg, args, item_id, priority)

    async def edit(self, image: Image.Image, instruction: str, *, seed: int, item_id: str | None,
                   params: GenParams | None = None, priority: int | None = None) -> Image.Image:
        """Apply `instruction` to `image` with the editor backend."""
        cfg = self.editor_cfg
        if cfg is None:
            raise InputError("no editor is configured: set the [editor] section")
        if cfg.backend == "remote":
            self.remote_calls += 1
            return await self._remote_backend(cfg).aedit(image, instruction, seed, params)
        args = {"image_png": await asyncio.to_thread(png_bytes, image), "instruction": instruction, "seed": seed,
                "params": params_to_args(params)}
        return await self._run("edit", cfg, args, item_id, priority)

    async def refine(self, image: Image.Image, prompt: str, *, seed: int, item_id: str | None,
                     strength: float | None = None, priority: int | None = None) -> Image.Image:
        """An SDEdit pass of `image` towards `prompt` with the generator's `refiner` (at `refiner_strength`
        unless `strength` is given)."""
        cfg = self.generator_cfg.refiner
        if cfg is None:
            raise InputError("no refiner is configured: set [generator.refiner]")
        strength = self.generator_cfg.refiner_strength if strength is None else strength
        if cfg.backend == "remote":
            raise InputError("a remote image API cannot refine at a strength; use an img2img refiner")
        args = {"image_png": await asyncio.to_thread(png_bytes, image), "prompt": prompt, "seed": seed,
                "strength": strength}
        return await self._run("refine", cfg, args, item_id, priority)

    async def outpaint(self, image: Image.Image, mask: Image.Image, prompt: str, *, seed: int, item_id: str | None,
                       priority: int | None = None) -> Image.Image:
        """Repaint the white pixels of `mask` (a reframe's pad) with the editor model's inpaint pipeline."""
        cfg = self.editor_cfg
        if cfg is None or cfg.backend == "remote":
            raise InputError("outpainting needs a local [editor] model (a Z-Image or Qwen-Image checkpoint)")
        args = {"image_png": await asyncio.to_thread(png_bytes, image),
                "mask_png": await asyncio.to_thread(png_bytes, mask.convert("RGB")), "prompt": prompt, "seed": seed}
        return await self._run("outpaint", cfg, args, item_id, priority)

    def item_done(self, item_id: str) -> None:
        """Tell the executor an item has finished (its next job, if any, counts as a new item's)."""
        self.executor.item_done(item_id)

    def item_seconds(self, item_id: str) -> float:
        """GPU seconds this drawer's jobs spent on `item_id` (cost reports: GPU seconds per final image)."""
        return self._item_seconds.get(item_id, 0.0)

    def stats(self) -> ExecutorStats:
        """The executor's accounting."""
        return self.executor.stats()

    async def aclose(self) -> None:
        """Close the executor and the remote clients."""
        for backend in self._remote.values():
            backend.close()
        self._remote.clear()
        await self.executor.aclose()
