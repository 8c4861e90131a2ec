"""Qwen-Image and Qwen-Image-2512 text-to-image (true CFG: `true_cfg_scale` + a negative prompt, even " ")."""

from __future__ import annotations

from PIL import Image

from portraitcraft.tools.diffusion.base import DiffusionError, GenParams, check_prompt, check_size
from portraitcraft.tools.diffusion.loading import vae_multiple
from portraitcraft.tools.diffusion.local import LocalBackend, call_kwargs
from portraitcraft.tools.diffusion.metadata import attach_meta


class QwenImageGenerator(LocalBackend):
    """Qwen-Image(-2512) `generate`.

    Args:
        cfg (DiffusionConfig): backend "qwen-image"; `model` e.g. "Qwen/Qwen-Image-2512" or a local folder;
            typical `steps` 50, `true_cfg_scale` 4.0, `negative_prompt` " ".
        pool (ModelPool, optional): the GPU's shared model pool.

    Example:
        >>> gen = QwenImageGenerator(GeneratorConfig(backend="qwen-image", model="Qwen/Qwen-Image-2512",
        ...                                          steps=50))  # doctest: +SKIP
        >>> image = gen.generate("a man standing on the right, facing left", 1584, 1056, seed=0)  # doctest: +SKIP
    """

    def generate(
        self, prompt: str, width: int, height: int, seed: int, params: GenParams | None = None
    ) -> Image.Image:
        """Draw `prompt` at `width` x `height` (multiples of 16 for real models) with `seed`; see `GenParams`."""
        from diffusers import QwenImagePipeline

        prompt = check_prompt(prompt)
        p = self.local.params(params)
        if p.pose is not None or p.control_image is not None:
            raise DiffusionError("pose / control-image conditioning is available for the Z-Image backends only")
        pipe = self.local.get(QwenImagePipeline)
        check_size(width, height, vae_multiple(pipe), model=self.cfg.model)
        kwargs = call_kwargs("qwen", seed, p, prompt=prompt, width=width, height=height)
        image = self.local.run(pipe, **kwargs)
        meta = self.local.meta(prompt=prompt, seed=seed, width=image.width, height=image.height, family="qwen", p=p)
        return attach_meta(image, meta)
