"""Generative outpainting: a reframe's pad repainted by a masked inpaint pipeline of the editor family.

The inpaint pipeline is a `from_pipe` variant of the configured model (no second copy of the weights):
Z-Image -> `ZImageInpaintPipeline`, Qwen-Image -> `QwenImageInpaintPipeline` (`AutoPipelineForInpainting`
picks it). The mask is WHITE where the picture was padded; every pixel outside it is pasted back from the
input afterwards, so the source's pixels are never touched. The result carries its generation parameters
(`portraitcraft` chunk) with the pad's box under `extra.pad_box`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from portraitcraft.tools.diffusion.base import DiffusionError, GenParams, check_prompt
from portraitcraft.tools.diffusion.loading import vae_multiple
from portraitcraft.tools.diffusion.local import LocalBackend, call_kwargs, pipeline_family
from portraitcraft.tools.diffusion.metadata import attach_meta

DEFAULT_PROMPT = "the same scene continued naturally beyond the frame, matching background, light and grain"


class InpaintOutpainter(LocalBackend):
    """Repaint the masked (padded) part of an image with the configured model's inpaint pipeline.

    Args:
        cfg (DiffusionConfig): `model` a Z-Image or Qwen-Image checkpoint (hub id or local folder).
        pool (ModelPool, optional): the GPU's shared model pool.

    Example:
        >>> out = InpaintOutpainter(EditorConfig(backend="img2img", model="Tongyi-MAI/Z-Image-Turbo"))  # doctest: +SKIP
        >>> filled = out.outpaint(padded, pad_mask, "a park behind a photographer", seed=7)  # doctest: +SKIP
    """

    def outpaint(self, image: Image.Image, mask: Image.Image, prompt: str = DEFAULT_PROMPT, seed: int = 0,
                 params: GenParams | None = None) -> Image.Image:
        """`image` with its white-`mask` pixels repainted towards `prompt`; the other pixels kept exactly.

        Args:
            image (PIL.Image): the padded picture (its pad holds a starting guess, e.g. the mirrored edge).
            mask (PIL.Image): same size, white (>127) where the model paints.
            prompt (str, optional): what the filled area shows (default: the scene continued).
            seed (int, optional): the sampling seed.
            params (GenParams, optional): per-call overrides (steps, strength, ...).
        """
        prompt = check_prompt(prompt, what="outpainting prompt")
        if mask.size != image.size:
            raise DiffusionError(f"outpainting mask {mask.size} does not match the image {image.size}")
        from diffusers import AutoPipelineForInpainting

        p = self.local.params(params)
        pipe = self.local.get(variant="inpaint", make_variant=self.local.from_pipe(AutoPipelineForInpainting))
        family = pipeline_family(pipe)
        multiple = vae_multiple(pipe)
        width = max(multiple, image.width // multiple * multiple)
        height = max(multiple, image.height // multiple * multiple)
        src = image.convert("RGB")
        binary = mask.convert("L").point(lambda v: 255 if v > 127 else 0)
        kwargs = call_kwargs(family, seed, p, prompt=prompt, strength=1.0, width=width, height=height,
                             image=src.resize((width, height), Image.Resampling.LANCZOS),
                             mask_image=binary.resize((width, height), Image.Resampling.NEAREST))
        painted = self.local.run(pipe, **kwargs).convert("RGB").resize(src.size, Image.Resampling.LANCZOS)
        keep = Image.fromarray(np.where(np.asarray(binary) > 127, 0, 255).astype(np.uint8))
        out = Image.composite(src, painted, keep)
        box = binary.getbbox()
        meta = self.local.meta(prompt=prompt, seed=seed, width=out.width, height=out.height, family=family, p=p,
                               strength=1.0, instruction=prompt, source_size=image.size)
        meta.extra["pad_box"] = list(box) if box else None
        meta.extra["outpaint"] = True
        return attach_meta(out, meta)

    def fill(self, prompt: str = DEFAULT_PROMPT, seed: int = 0) -> OutpaintFill:
        """This outpainter as the reframing editor's `outpaint=` callable (agents.reframe.Outpainter)."""
        return OutpaintFill(self, prompt, seed)


@dataclass
class OutpaintFill:
    """`fill(image, mask)` with a fixed prompt and seed; `name` is the model (recorded as the reframe's `fill`)."""

    backend: InpaintOutpainter
    prompt: str = DEFAULT_PROMPT
    seed: int = 0

    @property
    def name(self) -> str:
        return self.backend.cfg.model

    def __call__(self, image: Image.Image, mask: Image.Image) -> Image.Image:
        return self.backend.outpaint(image, mask, self.prompt, self.seed)


__all__ = ["DEFAULT_PROMPT", "InpaintOutpainter", "OutpaintFill"]
