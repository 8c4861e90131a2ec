"""Z-Image and Z-Image-Turbo text-to-image, optionally pose-conditioned through a Fun-Controlnet-Union.

Turbo runs about 8-9 steps at guidance 0.0; the base model ~50 steps with `guidance_scale` ~4 (CFG on when
guidance > 0, then the negative prompt is used).
"""

from __future__ import annotations

from PIL import Image

from portraitcraft.tools.diffusion.base import GenParams, check_prompt, check_size
from portraitcraft.tools.diffusion.controlnet import control_image_for, controlnet_variant
from portraitcraft.tools.diffusion.loading import vae_multiple
from portraitcraft.tools.diffusion.local import LocalBackend, call_kwargs
from portraitcraft.tools.diffusion.metadata import attach_meta


class ZImageGenerator(LocalBackend):
    """Z-Image(-Turbo) `generate`; with `cfg.controlnet` set, a call carrying `pose` (COCO-17 keypoints) or
    `control_image` runs `ZImageControlNetPipeline`.

    Args:
        cfg (DiffusionConfig): backend "zimage" or "zimage-turbo"; `model` a hub id or local folder.
        pool (ModelPool, optional): the GPU's shared model pool.

    Example:
        >>> gen = ZImageGenerator(GeneratorConfig(model="Tongyi-MAI/Z-Image-Turbo"))  # doctest: +SKIP
        >>> image = gen.generate("a woman on the left third, facing right", 832, 1216, seed=7)  # doctest: +SKIP
        >>> posed = gen.generate("a dancer", 832, 1216, seed=7, params=GenParams(pose=[keypoints]))
        ... # doctest: +SKIP
    """

    def generate(
        self, prompt: str, width: int, height: int, seed: int, params: GenParams | None = None
    ) -> Image.Image:
        """Draw `prompt` at `width` x `height` (multiples of 16 for real models) with `seed`; see `GenParams`."""
        from diffusers import ZImagePipeline

        prompt = check_prompt(prompt)
        p = self.local.params(params)
        control = control_image_for(p, width, height)
        if control is not None:
            name, make = controlnet_variant(self.cfg)
            pipe = self.local.get(variant=name, make_variant=make)
        else:
            pipe = self.local.get(ZImagePipeline)
        check_size(width, height, vae_multiple(pipe), model=self.cfg.model)
        kwargs = call_kwargs("zimage", seed, p, prompt=prompt, width=width, height=height)
        extra_meta = {}
        if control is not None:
            kwargs.update(control_image=control, controlnet_conditioning_scale=p.controlnet_scale)
            extra_meta = {"controlnet": self.cfg.controlnet, "controlnet_scale": p.controlnet_scale}
        image = self.local.run(pipe, **kwargs)
        meta = self.local.meta(prompt=prompt, seed=seed, width=image.width, height=image.height, family="zimage",
                               p=p, **extra_meta)
        return attach_meta(image, meta)
