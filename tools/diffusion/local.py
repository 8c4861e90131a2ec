"""What every local (diffusers) backend does around its pipeline call: fetch the pipeline from the model
pool, keep its LoRAs and attention backend in sync with the config, resolve per-call parameters and build
the image metadata.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from PIL import Image

from portraitcraft.config import DiffusionConfig, LoraConfig
from portraitcraft.tools.diffusion.base import DiffusionError, GenParams, check_size
from portraitcraft.tools.diffusion.loading import (
    check_device,
    load_pipeline,
    pool_key,
    seeded_generator,
    set_attention_backend,
    torch_dtype,
)
from portraitcraft.tools.diffusion.lora import lora_meta, sync_loras
from portraitcraft.tools.diffusion.metadata import ImageMeta
from portraitcraft.tools.gpu import ModelPool


def config_params(cfg: DiffusionConfig) -> GenParams:
    """The config's sampling defaults as `GenParams` (a call's params are laid on top)."""
    return GenParams(
        steps=cfg.steps,
        guidance_scale=cfg.guidance_scale,
        true_cfg_scale=cfg.true_cfg_scale,
        negative_prompt=cfg.negative_prompt,
        strength=cfg.strength,
        max_sequence_length=cfg.max_sequence_length,
        controlnet_scale=cfg.controlnet_scale,
        extra=dict(cfg.extra),
    )


def pipeline_family(pipe: Any) -> str:
    """"qwen" for Qwen-Image pipelines (true CFG + negative prompt), "zimage" for Z-Image (guidance_scale)."""
    return "qwen" if type(pipe).__name__.startswith("QwenImage") else "zimage"


def guidance_kwargs(family: str, p: GenParams) -> dict[str, Any]:
    """The CFG arguments of one call: Qwen uses `true_cfg_scale` + a negative prompt; Z-Image runs CFG (and
    reads the negative prompt) only when `guidance_scale` > 0."""
    if family == "qwen":
        return {"true_cfg_scale": p.true_cfg_scale, "negative_prompt": p.negative_prompt}
    kwargs: dict[str, Any] = {"guidance_scale": p.guidance_scale}
    if p.guidance_scale and p.negative_prompt:
        kwargs["negative_prompt"] = p.negative_prompt
    return kwargs


def call_kwargs(family: str, seed: int, p: GenParams, **call: Any) -> dict[str, Any]:
    """A pipeline call's keyword arguments: the call-specific ones (prompt, image, size...), then steps, the
    seeded generator, the text length, the family's CFG arguments, and `p.extra` last (it may override)."""
    return {
        **call,
        "num_inference_steps": p.steps,
        "generator": seeded_generator(seed),
        "max_sequence_length": p.max_sequence_length,
        **guidance_kwargs(family, p),
        **p.extra,
    }


def cfg_meta_fields(family: str, p: GenParams) -> dict[str, Any]:
    """The CFG fields recorded in image metadata for a family."""
    if family == "qwen":
        return {"true_cfg_scale": p.true_cfg_scale, "negative_prompt": p.negative_prompt}
    return {"guidance_scale": p.guidance_scale, "negative_prompt": p.negative_prompt if p.guidance_scale else None}


def edit_size(image: Image.Image, p: GenParams, multiple: int, *, model: str) -> tuple[int, int]:
    """An edit's output size: `p.width` / `p.height` when given, else the input's size rounded down to the
    model's multiple; `InputError` when that is not a valid size."""
    if p.width is not None or p.height is not None:
        width, height = p.width or image.width, p.height or image.height
    else:
        width, height = image.width // multiple * multiple, image.height // multiple * multiple
    check_size(width, height, multiple, model=model)
    return width, height


class LocalPipeline:
    """A backend's handle on its model in the pool.

    Args:
        cfg (DiffusionConfig): the backend's section.
        pool (ModelPool, optional): shared pool (one per GPU); a private one on `cfg.device` when None.

    Example:
        >>> local = LocalPipeline(DiffusionConfig(model="/tiny/zimage-v1", device="cpu", dtype="float32"))
        >>> pipe = local.get(ZImagePipeline)  # doctest: +SKIP
    """

    def __init__(self, cfg: DiffusionConfig, pool: ModelPool | None = None) -> None:
        try:
            check_device(cfg.device, cfg.offload)
        except DiffusionError as exc:
            raise DiffusionError(f"{cfg.backend} backend ({cfg.model!r}): {exc}") from None
        if pool is not None and pool.device != cfg.device:
            raise DiffusionError(
                f"{cfg.backend} backend for {cfg.model!r} wants device {cfg.device!r} but its model pool runs on "
                f"{pool.device!r}; use one pool per device"
            )
        self.cfg = cfg
        self.pool = pool if pool is not None else ModelPool(device=cfg.device)
        self.loras: list[LoraConfig] = list(cfg.loras)

    @property
    def key(self) -> str:
        return pool_key(self.cfg)

    def set_loras(self, loras: Sequence[LoraConfig]) -> None:
        """Replace the wanted LoRAs; applied (or unloaded) before the next call."""
        self.loras = list(loras)

    def get(self, cls: type | None = None, *, variant: str | None = None,
            make_variant: Callable[[Any], Any] | None = None) -> Any:
        """The pipeline ready for a call: of class `cls` (derived with `cls.from_pipe` when the checkpoint's own
        class differs), or a named `variant` built by `make_variant(base)`; LoRAs and attention synced."""
        base = self.pool.get(self.key, self._load, offload=self.cfg.offload)
        pipe = base
        if variant is None and cls is not None and type(base) is not cls:
            variant, make_variant = cls.__name__, self.from_pipe(cls)
        if variant is not None:
            try:
                pipe = self.pool.get(self.key, self._load, variant=variant, make_variant=make_variant,
                                     offload=self.cfg.offload)
            except (ValueError, TypeError, KeyError) as exc:
                raise DiffusionError(
                    f"model {self.cfg.model!r} ({type(base).__name__}) cannot serve as {variant}: {exc}"
                ) from None
        set_attention_backend(pipe, self.cfg.attention_backend)
        if self.loras and not hasattr(pipe, "load_lora_weights"):
            raise DiffusionError(f"{type(pipe).__name__} ({self.cfg.model!r}) cannot load LoRAs")
        sync_loras(pipe, self.loras, fuse=self.cfg.fuse_loras)
        return pipe

    def from_pipe(self, cls: Any, **components: Any) -> Callable[[Any], Any]:
        """A variant maker: `cls.from_pipe(base, **components)` in the config's dtype. (`from_pipe` casts to
        float32 unless told a dtype, which would upcast the SHARED base modules too.)"""
        dtype = torch_dtype(self.cfg.dtype)

        def make(base: Any) -> Any:
            return cls.from_pipe(base, dtype=dtype, **components)

        return make

    def run(self, pipe: Any, **kwargs: Any) -> Any:
        """Call `pipe(**kwargs)` and return its first image; arguments the pipeline refuses (its own
        `check_inputs`, an unknown key in `extra`) become a `DiffusionError` naming the model."""
        try:
            return pipe(**kwargs).images[0]
        except (ValueError, TypeError) as exc:
            raise DiffusionError(f"{type(pipe).__name__} ({self.cfg.model!r}) refused the call: {exc}") from None

    def _load(self) -> Any:
        return load_pipeline(self.cfg)

    def params(self, params: GenParams | None) -> GenParams:
        """The config defaults with the call's `params` on top."""
        return config_params(self.cfg).merged(params)

    def meta(self, *, prompt: str, seed: int, width: int, height: int, family: str, p: GenParams,
             **fields: Any) -> ImageMeta:
        """Image metadata for a call with resolved params `p`."""
        return ImageMeta(
            backend=self.cfg.backend,
            model=self.cfg.model,
            prompt=prompt,
            seed=seed,
            steps=p.steps,
            width=width,
            height=height,
            loras=lora_meta(self.loras),
            **cfg_meta_fields(family, p),
            **fields,
        )


class LocalBackend:
    """Base of every diffusers backend: its config and the pool handle of its pipeline."""

    def __init__(self, cfg: DiffusionConfig, pool: ModelPool | None = None) -> None:
        self.cfg = cfg
        self.local = LocalPipeline(cfg, pool)

    def set_loras(self, loras: Sequence[LoraConfig]) -> None:
        """Replace the active LoRAs (an empty list unloads them) from the next call on."""
        self.local.set_loras(loras)
