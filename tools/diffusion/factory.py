"""Build a generator / editor from its config section; backend modules are imported only when chosen, so the
remote backend never imports torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from portraitcraft.config import DiffusionConfig, GeneratorConfig
from tools.diffusion.base import DiffusionError, ImageEditor, ImageGenerator
from tools.gpu import ModelPool

# backend -> (module under tools.diffusion, class). A local class takes (cfg, pool); remote takes (cfg).
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
    cls = getattr(importlib.import_module(f"tools.diffusion.{module_name}"), class_name)
    if cfg.backend == "remote":
        return cls(cfg)
    return cls(cfg, pool if pool is not None else build_pool(cfg))


def build_pool(cfg: DiffusionConfig) -> ModelPool:
    """A model pool on `cfg.device` with the generator section's budget and eviction policy.

    Example:
        >>> pool = build_pool(GeneratorConfig(device="cpu", pool_budget_gb=2))
        >>> pool.budget_bytes
        2147483648
    """
    budget = getattr(cfg, "pool_budget_gb", None)
    return ModelPool(
        device=cfg.device,
        budget_bytes=int(budget * 2**30) if budget else None,
        evict=getattr(cfg, "pool_evict", "cpu"),
    )


def build_generator(cfg: DiffusionConfig, pool: ModelPool | None = None) -> ImageGenerator:
    """The text-to-image backend for `cfg`, wrapped with its cascaded refiner when `cfg.refiner` is set.

    Args:
        cfg (GeneratorConfig): the `generator` section (a plain DiffusionConfig works too).
        pool (ModelPool, optional): the GPU's shared model pool; one is built from `cfg` when None.

    Raises:
        DiffusionError: an editor-only backend, or a device that is not there.

    Example:
        >>> gen = build_generator(GeneratorConfig(backend="remote", model="gpt-image-1"))
        >>> type(gen).__name__
        'RemoteImageBackend'
    """
    if pool is None and cfg.backend != "remote":
        pool = build_pool(cfg)
    generator = _construct(GENERATORS, "generator", cfg, pool)
    refiner_cfg = cfg.refiner if isinstance(cfg, GeneratorConfig) else None
    if refiner_cfg is None:
        return generator
    from tools.diffusion.img2img import RefinedGenerator

    if EDITORS.get(refiner_cfg.backend, ("", ""))[1] != "Img2ImgEditor":
        sdedit = sorted(b for b, (_, cls) in EDITORS.items() if cls == "Img2ImgEditor")
        raise DiffusionError(
            f"refiner backend {refiner_cfg.backend!r} cannot refine at a strength (SDEdit); choose one of "
            f"{', '.join(sdedit)}"
        )
    refiner_pool = pool if pool is not None and pool.device == refiner_cfg.device else None
    refiner = build_editor(refiner_cfg, refiner_pool)
    return RefinedGenerator(generator, refiner, strength=cfg.refiner_strength)


def build_editor(cfg: DiffusionConfig, pool: ModelPool | None = None) -> ImageEditor:
    """The editing backend for `cfg` (Qwen-Image-Edit, img2img/SDEdit, or a remote image API).

    Example:
        >>> editor = build_editor(EditorConfig(backend="qwen-image-edit-plus", device="cpu",
        ...                                    model="/tiny/qwen-image-edit-v1"))  # doctest: +SKIP
    """
    return _construct(EDITORS, "editor", cfg, pool)
