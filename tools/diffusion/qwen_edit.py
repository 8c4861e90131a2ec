"""Qwen-Image-Edit as an editor: the original (`QwenImageEditPipeline`) and 2509/2511
(`QwenImageEditPlusPipeline`, several input images).

The edit pipelines resize every input to about 1024x1024 pixels (`calculate_dimensions` in their modules);
`edit_max_area` caps that area (tests and small GPUs use a small one). The cap is applied through a wrapper
installed once around each module's `calculate_dimensions`, active only inside `edit_area_limit` in the
calling thread, so other callers are unaffected.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from types import ModuleType
from typing import Any

from PIL import Image

from portraitcraft.config import DiffusionConfig
from portraitcraft.tools.diffusion.base import DiffusionError, GenParams, check_prompt
from portraitcraft.tools.diffusion.loading import vae_multiple
from portraitcraft.tools.diffusion.local import LocalBackend, call_kwargs, edit_size
from portraitcraft.tools.diffusion.metadata import attach_meta
from portraitcraft.tools.gpu import ModelPool

_AREA_LIMIT: ContextVar[int | None] = ContextVar("edit_area_limit", default=None)
_MARK = "_portraitcraft_area_limit"


def _install_area_limit(module: ModuleType) -> None:
    original = module.calculate_dimensions
    if getattr(original, _MARK, False):
        return

    def calculate_dimensions(target_area: float, ratio: float) -> Any:
        limit = _AREA_LIMIT.get()
        return original(min(target_area, limit) if limit else target_area, ratio)

    setattr(calculate_dimensions, _MARK, True)
    module.calculate_dimensions = calculate_dimensions


@contextmanager
def edit_area_limit(max_area: int) -> Iterator[None]:
    """Within the block (this thread only), Qwen-Image-Edit pipelines resize inputs to at most `max_area` px.

    Example:
        >>> with edit_area_limit(64 * 64):
        ...     out = pipe(image=img, prompt="make the sky red")  # doctest: +SKIP
    """
    from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit, pipeline_qwenimage_edit_plus

    for module in (pipeline_qwenimage_edit, pipeline_qwenimage_edit_plus):
        _install_area_limit(module)
    token = _AREA_LIMIT.set(max_area)
    try:
        yield
    finally:
        _AREA_LIMIT.reset(token)


class QwenImageEditor(LocalBackend):
    """Qwen-Image-Edit `edit`: backend "qwen-image-edit" (original) or "qwen-image-edit-plus" (2509 / 2511).

    Args:
        cfg (DiffusionConfig): the editor section; typical `steps` 40, `true_cfg_scale` 4.0, negative " ".
        pool (ModelPool, optional): the GPU's shared model pool.

    Example:
        >>> editor = QwenImageEditor(EditorConfig(model="Qwen/Qwen-Image-Edit-2509"))  # doctest: +SKIP
        >>> fixed = editor.edit(draft, "turn her head to face left; move her to the left third", seed=7)
        ... # doctest: +SKIP
    """

    def __init__(self, cfg: DiffusionConfig, pool: ModelPool | None = None) -> None:
        if cfg.backend not in ("qwen-image-edit", "qwen-image-edit-plus"):
            raise DiffusionError(f"QwenImageEditor cannot run backend {cfg.backend!r}")
        super().__init__(cfg, pool)

    def _pipeline_class(self) -> type:
        from diffusers import QwenImageEditPipeline, QwenImageEditPlusPipeline

        return QwenImageEditPlusPipeline if self.cfg.backend == "qwen-image-edit-plus" else QwenImageEditPipeline

    def edit(
        self, image: Image.Image, instruction: str, seed: int, params: GenParams | None = None
    ) -> Image.Image:
        """Apply `instruction` to `image`; the output keeps the input's size (rounded down to the model's
        multiple) unless `params.width` / `params.height` say otherwise."""
        instruction = check_prompt(instruction, what="edit instruction")
        p = self.local.params(params)
        pipe = self.local.get(self._pipeline_class())
        width, height = edit_size(image, p, vae_multiple(pipe), model=self.cfg.model)
        source = image.convert("RGB")
        images: Any = source
        if self.cfg.backend == "qwen-image-edit-plus":
            images = [source, *(ref.convert("RGB") for ref in p.reference_images or ())]
        elif p.reference_images:
            raise DiffusionError("reference images need backend qwen-image-edit-plus (Qwen-Image-Edit-2509/2511)")
        kwargs = call_kwargs("qwen", seed, p, image=images, prompt=instruction, width=width, height=height)
        with edit_area_limit(self.cfg.edit_max_area):
            out = self.local.run(pipe, **kwargs)
        meta = self.local.meta(prompt=instruction, seed=seed, width=out.width, height=out.height, family="qwen",
                               p=p, instruction=instruction, source_size=image.size)
        return attach_meta(out, meta)
