"""Pose ControlNet for Z-Image(-Turbo): loading a Fun-Controlnet-Union checkpoint and the control image.

The ControlNet pipeline is a `from_pipe` variant of the loaded Z-Image model (its transformer's embedders are
shared, `ZImageControlNetModel.from_transformer`), so only the control layers cost extra memory.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from portraitcraft.config import DiffusionConfig
from portraitcraft.tools.diffusion.base import DiffusionError, GenParams
from portraitcraft.tools.diffusion.loading import torch_dtype
from portraitcraft.tools.pose_render import render_pose


def load_controlnet(cfg: DiffusionConfig) -> Any:
    """Load `cfg.controlnet`: a diffusers folder / hub id (`from_pretrained`) or a single `.safetensors` file
    (`from_single_file`, which needs `cfg.controlnet_config` offline: a folder or repo id with its config).

    Raises:
        DiffusionError: no ControlNet configured, or it cannot be loaded (names the checkpoint).

    Example:
        >>> cn = load_controlnet(DiffusionConfig(controlnet="Z-Image-Turbo-Fun-Controlnet-Union.safetensors",
        ...                      controlnet_config="configs/zimage-controlnet-union"))  # doctest: +SKIP
    """
    from diffusers import ZImageControlNetModel

    source = cfg.controlnet
    if not source:
        raise DiffusionError(f"pose conditioning needs `controlnet` set for {cfg.backend} ({cfg.model!r})")
    dtype = torch_dtype(cfg.dtype)
    try:
        if source.endswith((".safetensors", ".pt", ".pth", ".bin")):
            if not cfg.controlnet_config:
                raise DiffusionError(
                    f"ControlNet file {source!r} needs `controlnet_config` (a folder or repo id with config.json)"
                )
            if not Path(source).is_file():
                raise DiffusionError(f"ControlNet file {source!r} does not exist")
            return ZImageControlNetModel.from_single_file(
                source, config=cfg.controlnet_config, dtype=dtype, local_files_only=cfg.local_files_only
            )
        return ZImageControlNetModel.from_pretrained(source, dtype=dtype, local_files_only=cfg.local_files_only)
    except (OSError, ValueError, KeyError) as exc:
        raise DiffusionError(f"ControlNet {source!r} could not be loaded: {exc}") from None


def controlnet_variant(cfg: DiffusionConfig) -> tuple[str, Callable[[Any], Any]]:
    """(variant name, maker) for the model pool: `ZImageControlNetPipeline.from_pipe(base, controlnet=...)`."""
    from diffusers import ZImageControlNetPipeline

    def make(base: Any) -> Any:  # dtype given: from_pipe would otherwise cast the shared modules to float32
        return ZImageControlNetPipeline.from_pipe(base, controlnet=load_controlnet(cfg), dtype=torch_dtype(cfg.dtype))

    return f"controlnet:{cfg.controlnet}", make


def control_image_for(p: GenParams, width: int, height: int) -> Image.Image | None:
    """The call's control image: `p.control_image` resized to the canvas, or `p.pose` rendered; None if neither."""
    if p.control_image is not None:
        image = p.control_image.convert("RGB")
        return image if image.size == (width, height) else image.resize((width, height), Image.Resampling.BILINEAR)
    if p.pose is not None:
        return render_pose(p.pose, width, height)
    return None
