"""`--validate`: the fixed prompts drawn with the trained LoRA and without it (adapters off), same seeds."""

from __future__ import annotations

from pathlib import Path

import torch

from portraitcraft.config import PortraitcraftConfig
from portraitcraft.train.data import Buckets
from portraitcraft.train.models import FlowModel


def draw_validation(model: FlowModel, cfg: PortraitcraftConfig, folder: Path, buckets: Buckets) -> list[Path]:
    """Write `<folder>/<i>_base.png` and `<folder>/<i>_lora.png` for each `[train] validate_prompts` entry
    on the square bucket; returns the paths.

    Example:
        >>> draw_validation(model, cfg, Path("runs/dpo/validation"), buckets)  # doctest: +SKIP
    """
    from portraitcraft.tools.diffusion.metadata import ImageMeta, save_png

    tc = cfg.train
    width, height = buckets.nearest(1, 1)
    folder.mkdir(parents=True, exist_ok=True)
    extra = ({"guidance_scale": tc.validate_guidance} if model.family == "zimage"
             else {"true_cfg_scale": 1.0, "max_sequence_length": tc.max_sequence_length})
    model.transformer.eval()
    written = []
    for i, prompt in enumerate(tc.validate_prompts):
        for tag in ("base", "lora"):
            generator = torch.Generator("cpu").manual_seed(tc.validate_seed)
            with torch.no_grad():
                if tag == "base":
                    with model.adapters_disabled():
                        image = model.pipe(prompt=prompt, width=width, height=height, generator=generator,
                                           num_inference_steps=tc.validate_steps, **extra).images[0]
                else:
                    image = model.pipe(prompt=prompt, width=width, height=height, generator=generator,
                                       num_inference_steps=tc.validate_steps, **extra).images[0]
            meta = ImageMeta(prompt=prompt, seed=tc.validate_seed, width=width, height=height,
                             steps=tc.validate_steps, model=model.model, backend=model.family,
                             extra={"lora": tag == "lora"})
            written.append(save_png(image, folder / f"{i:02d}_{tag}.png", meta))
    return written
