"""Image generation and editing backends behind two protocols, chosen by config.

    generate(prompt, width, height, seed, params) -> PIL image      (ImageGenerator)
    edit(image, instruction, seed, params) -> PIL image             (ImageEditor)

Modules: base (protocols, GenParams, errors), metadata (PNG metadata), loading / lora / local / processors
(diffusers pipelines, LoRAs, the pool handle), zimage, qwen_image, qwen_edit, img2img, controlnet, remote,
tiny (tiny offline models), factory (`build_generator`, `build_editor`, `build_backends`). Importing this
package does not import torch.
"""

from tools.diffusion.base import DiffusionError, GenParams, ImageEditor, ImageGenerator
from tools.diffusion.factory import Backends, build_backends, build_editor, build_generator, build_pool, build_refiner
from tools.diffusion.metadata import ImageMeta, attach_meta, meta_of, read_png_meta, save_png

__all__ = [
    "Backends",
    "DiffusionError",
    "GenParams",
    "ImageEditor",
    "ImageGenerator",
    "ImageMeta",
    "attach_meta",
    "build_backends",
    "build_editor",
    "build_generator",
    "build_pool",
    "build_refiner",
    "meta_of",
    "read_png_meta",
    "save_png",
]
