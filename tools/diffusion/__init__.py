"""Image generation and editing backends behind two protocols, chosen by config.

    generate(prompt, width, height, seed, params) -> PIL image      (ImageGenerator)
    edit(image, instruction, seed, params) -> PIL image             (ImageEditor)

Modules: base (protocols, GenParams, errors), metadata (PNG metadata), loading / lora / local / processors
(diffusers pipelines, LoRAs, the pool handle), zimage, qwen_image, qwen_edit, img2img, controlnet, remote,
tiny (tiny offline models), factory (`build_generator`, `build_editor`, `build_refiner`, `build_pool`). Importing this
package does not import torch.
"""

from portraitcraft.tools.diffusion.base import DiffusionError, GenParams, ImageEditor, ImageGenerator
from portraitcraft.tools.diffusion.factory import build_editor, build_generator, build_pool, build_refiner
from portraitcraft.tools.diffusion.metadata import ImageMeta, attach_meta, meta_of, read_png_meta, save_png

__all__ = [
    "DiffusionError",
    "GenParams",
    "ImageEditor",
    "ImageGenerator",
    "ImageMeta",
    "attach_meta",
    "build_editor",
    "build_generator",
    "build_pool",
    "build_refiner",
    "meta_of",
    "read_png_meta",
    "save_png",
]
