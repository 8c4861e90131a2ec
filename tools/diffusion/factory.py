"""Build a generator / editor / refiner from its config section, and the model pool they share; backend modules
are imported only when chosen, so the remote backend never imports torch. (A run's executor + pool + drawer:
`portraitcraft.tools.backends`.)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from portraitcraft.config import DiffusionConfig, GeneratorConfig, GpuConfig
from portraitcraft.tools.diffusion.base import DiffusionError, ImageEditor, ImageGenerator
from portraitcraft.tools.gpu import ModelPool

# backend -> (module under portraitcraft.tools.diffusion, class). A local class takes (cfg, pool); remote takes (cfg).
GENERATORS: dict[str, tuple[str, str]] = {
    "zimage": ("zimage", "ZImageGenerator"),
    "zimage-turbo": ("zimage", "ZImageGenerator"),
    "qwen-image": ("qwen_image", "QwenImageGenerator"),
    "remote": ("remote", "RemoteImageBackend"),
}
EDITORS: dict[str, tuple[str, str]] = {
    "qwen-image-edit": ("qwen_edit", "QwenImageEditor"),
    "qwen-image-edit-plus": ("qwen_edit", "QwenImageEditor"),
    "img2img": ("img2img", "Img2ImgEditor"),
    # a text-to-image model named as an editor edits by SDEdit (img2img) with that model
    "zimage": ("img2img", "Img2ImgEditor"),
    "zimage-turbo": ("img2img", "Img2ImgEditor"),
    "qwen-image": ("img2img", "Img2ImgEditor"),
    "remote": ("remote", "RemoteImageBackend"),
}


def _construct(table: dict[str, tuple[str, str]], role: str, cfg: DiffusionConfig, pool: ModelPool | None) -> Any:
    if cfg.backend not in table:
        hint = "an editor backend" if role == "generator" else "a generator backend"
        raise DiffusionError(
            f"backend {cfg.backend!r} cannot be used as the {role} (it is {hint}); choose one of "
            f"{', '.join(sorted(table))}"
        )
    module_name, class_name = table[cfg.backend]
    cls = getattr(importlib.import_module(f"portraitcraft.tools.diffusion.{module_name}"), class_name)
    if cfg.backend == "remote":
        return cls(cfg)
    return cls(cfg, pool if pool is not None else build_pool(cfg.device))


def build_pool(device: str, gpu: GpuConfig | None = None) -> ModelPool:
    """A model pool on `device` with the `[gpu]` section's budget and eviction policy.

    Example:
        >>> pool = build_pool("cpu", GpuConfig(pool_budget_gb=2))
        >>> pool.budget_bytes
        2147483648
    """
    gpu = gpu or GpuConfig()
    budget = gpu.pool_budget_gb
    return ModelPool(device=device, budget_bytes=int(budget * 2**30) if budget else None, evict=gpu.pool_evict)


PoolFor = Callable[[str], ModelPool]
"""Gives the one model pool of a device (see `portraitcraft.tools.gpu_jobs.JobRunner.pool_for`)."""


def build_generator(cfg: DiffusionConfig, pool: ModelPool | None = None, *,
                    pool_for: PoolFor | None = None) -> ImageGenerator:
    """The text-to-image backend for `cfg`, wrapped with its cascaded refiner when `cfg.refiner` is set.

    Args:
        cfg (GeneratorConfig): the `generator` section (a plain DiffusionConfig works too).
        pool (ModelPool, optional): the GPU's shared model pool; one is built on `cfg.device` when None.
        pool_for (callable, optional): device -> that device's shared pool (used for the generator when `pool`
            is None, and for the refiner).

    Raises:
        DiffusionError: an editor-only backend, or a device that is not there.

    Example:
        >>> gen = build_generator(GeneratorConfig(backend="remote", model="gpt-image-1"))
        >>> type(gen).__name__
        'RemoteImageBackend'
    """
    if pool is None and cfg.backend != "remote":
        pool = pool_for(cfg.device) if pool_for is not None else build_pool(cfg.device)
    generator = _construct(GENERATORS, "generator", cfg, pool)
    refiner_cfg = cfg.refiner if isinstance(cfg, GeneratorConfig) else None
    if refiner_cfg is None:
        return generator
    from portraitcraft.tools.diffusion.img2img import RefinedGenerator

    if pool_for is not None:
        refiner_pool = pool_for(refiner_cfg.device)
    else:
        refiner_pool = pool if pool is not None and pool.device == refiner_cfg.device else None
    refiner = build_refiner(refiner_cfg, refiner_pool)
    return RefinedGenerator(generator, refiner, strength=cfg.refiner_strength)


def build_refiner(cfg: DiffusionConfig, pool: ModelPool | None = None) -> ImageEditor:
    """An SDEdit (img2img) backend for a refiner pass; `DiffusionError` for a backend that cannot refine at a
    strength."""
    if EDITORS.get(cfg.backend, ("", ""))[1] != "Img2ImgEditor":
        sdedit = sorted(b for b, (_, cls) in EDITORS.items() if cls == "Img2ImgEditor")
        raise DiffusionError(
            f"refiner backend {cfg.backend!r} cannot refine at a strength (SDEdit); choose one of "
            f"{', '.join(sdedit)}"
        )
    return build_editor(cfg, pool)


def build_editor(cfg: DiffusionConfig, pool: ModelPool | None = None) -> ImageEditor:
    """The editing backend for `cfg` (Qwen-Image-Edit, img2img/SDEdit, or a remote image API).

    Example:
        >>> editor = build_editor(EditorConfig(backend="qwen-image-edit-plus", device="cpu",
        ...                                    model="/tiny/qwen-image-edit-v1"))  # doctest: +SKIP
    """
    return _construct(EDITORS, "editor", cfg, pool)
