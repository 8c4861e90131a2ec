"""img2img (SDEdit) as an editor, and as a cascaded refiner after a generator.

The img2img pipeline is a `from_pipe` variant of the loaded text-to-image model (no second copy of the
weights): Z-Image -> `ZImageImg2ImgPipeline`, Qwen-Image -> `QwenImageImg2ImgPipeline`. The "instruction" of
an SDEdit pass is the text prompt the image should match (for a refiner: the generation prompt).
"""

from __future__ import annotations

import inspect

from PIL import Image

from portraitcraft.tools.diffusion.base import DiffusionError, GenParams, ImageEditor, ImageGenerator, check_prompt
from portraitcraft.tools.diffusion.loading import vae_multiple
from portraitcraft.tools.diffusion.local import LocalBackend, call_kwargs, edit_size, pipeline_family
from portraitcraft.tools.diffusion.metadata import attach_meta, meta_of


class Img2ImgEditor(LocalBackend):
    """SDEdit at `strength`: noise the input that far and denoise it towards the prompt.

    Args:
        cfg (DiffusionConfig): `model` a Z-Image or Qwen-Image checkpoint; `strength` the default strength.
        pool (ModelPool, optional): the GPU's shared model pool.

    Example:
        >>> refiner = Img2ImgEditor(DiffusionConfig(backend="img2img", model="Tongyi-MAI/Z-Image-Turbo",
        ...                                         steps=8, strength=0.3))  # doctest: +SKIP
        >>> refined = refiner.edit(draft, "a woman on the left third, facing right", seed=7)  # doctest: +SKIP
    """

    def edit(
        self, image: Image.Image, instruction: str, seed: int, params: GenParams | None = None
    ) -> Image.Image:
        """Re-draw `image` towards the prompt `instruction` at `params.strength` (config default otherwise);
        the output keeps the input's size (rounded down to the model's multiple) unless `params.width` /
        `params.height` are given."""
        prompt = check_prompt(instruction, what="img2img prompt")
        p = self.local.params(params)
        from diffusers import AutoPipelineForImage2Image

        pipe = self.local.get(variant="img2img", make_variant=self.local.from_pipe(AutoPipelineForImage2Image))
        if "strength" not in inspect.signature(pipe.__call__).parameters:  # e.g. an edit checkpoint
            raise DiffusionError(
                f"model {self.cfg.model!r} ({type(pipe).__name__}) cannot serve as img2img (no SDEdit strength); "
                "use a text-to-image checkpoint, or backend qwen-image-edit for edit models"
            )
        family = pipeline_family(pipe)
        width, height = edit_size(image, p, vae_multiple(pipe), model=self.cfg.model)
        kwargs = call_kwargs(family, seed, p, prompt=prompt, image=image.convert("RGB"), strength=p.strength,
                             width=width, height=height)
        out = self.local.run(pipe, **kwargs)
        meta = self.local.meta(prompt=prompt, seed=seed, width=out.width, height=out.height, family=family, p=p,
                               strength=p.strength, instruction=prompt, source_size=image.size)
        return attach_meta(out, meta)


class RefinedGenerator:
    """A generator followed by an img2img refiner pass at `strength` (e.g. Z-Image then Z-Image-Turbo at 0.3).

    The result carries the generator's metadata with the refiner pass under `refiner`.

    Args:
        base (ImageGenerator): draws the image.
        refiner (ImageEditor): re-draws it; given the generation prompt as its instruction.
        strength (float): the refiner's SDEdit strength.

    Example:
        >>> gen = RefinedGenerator(ZImageGenerator(cfg), Img2ImgEditor(refiner_cfg), strength=0.3)
        ... # doctest: +SKIP
    """

    def __init__(self, base: ImageGenerator, refiner: ImageEditor, strength: float) -> None:
        self.base = base
        self.refiner = refiner
        self.strength = strength

    def generate(
        self, prompt: str, width: int, height: int, seed: int, params: GenParams | None = None
    ) -> Image.Image:
        """Generate, then refine with the same prompt and seed; `params` go to the generator only."""
        draft = self.base.generate(prompt, width, height, seed, params)
        refined = self.refiner.edit(draft, prompt, seed, GenParams(strength=self.strength))
        base_meta, refiner_meta = meta_of(draft), meta_of(refined)
        if base_meta is not None:
            attach_meta(refined, base_meta.model_copy(update={"refiner": refiner_meta}))
        return refined
