"""Loading a diffusers pipeline from a hub id or a local folder, and placing it on a device.

One code path for real and tiny models: `DiffusionPipeline.from_pretrained(cfg.model, dtype=...)` picks the
class from the folder's `model_index.json`; backends derive the variant they need with `from_pipe`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from portraitcraft.config import DiffusionConfig
from portraitcraft.tools.diffusion.base import DiffusionError, check_seed

DTYPES: dict[str, torch.dtype] = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype for a config name ("bfloat16", "float16", "float32").

    Example:
        >>> torch_dtype("float32")
        torch.float32
    """
    try:
        return DTYPES[name]
    except KeyError:
        raise DiffusionError(f"dtype {name!r} is not one of {', '.join(DTYPES)}") from None


def check_device(device: str, offload: str = "none") -> str:
    """Return `device` if it can be used here; a clear error for a missing GPU or offload on CPU."""
    kind = torch.device(device).type
    if kind == "cuda" and not torch.cuda.is_available():
        raise DiffusionError(f"device {device!r} was asked for but no CUDA GPU is visible; set device = \"cpu\"")
    if kind == "cpu" and offload != "none":
        raise DiffusionError(f"offload = {offload!r} needs an accelerator device, not {device!r}")
    return device


def seeded_generator(seed: int) -> torch.Generator:
    """A CPU `torch.Generator` seeded with `seed`: the same seed gives the same noise on any device."""
    return torch.Generator(device="cpu").manual_seed(check_seed(seed))


def pool_key(cfg: DiffusionConfig) -> str:
    """The model pool key of a config: pipelines with equal keys share one loaded copy."""
    return f"{cfg.model}@{cfg.revision or 'default'}:{cfg.dtype}:{cfg.offload}"


def _hub_kwargs(cfg: DiffusionConfig) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"local_files_only": cfg.local_files_only}
    if cfg.revision:
        kwargs["revision"] = cfg.revision
    return kwargs


def load_pipeline(cfg: DiffusionConfig) -> Any:
    """Load the pipeline `cfg.model` names (on CPU, in `cfg.dtype`) with `DiffusionPipeline.from_pretrained`.

    Qwen-Image-Edit checkpoints get an image-only processor when torchvision is missing.

    Args:
        cfg (DiffusionConfig): `model`, `revision`, `dtype`, `local_files_only` are used.

    Raises:
        DiffusionError: the model cannot be found or loaded (names the model).

    Example:
        >>> pipe = load_pipeline(DiffusionConfig(model="~/.cache/portraitcraft/tiny-models/zimage-v1",
        ...                                      dtype="float32", device="cpu"))  # doctest: +SKIP
    """
    from diffusers import DiffusionPipeline

    from portraitcraft.tools.diffusion.tiny import resolve_tiny

    hub = _hub_kwargs(cfg)
    try:
        source = resolve_tiny(cfg.model)  # `tiny:zimage` -> the tiny model in the cache root, built on first use
        index = DiffusionPipeline.load_config(source, **hub)
        components: dict[str, Any] = {}
        if "processor" in index:
            from portraitcraft.tools.diffusion.processors import load_image_only_processor, torchvision_available

            if not torchvision_available():
                components["processor"] = load_image_only_processor(source, **hub)
        return DiffusionPipeline.from_pretrained(source, dtype=torch_dtype(cfg.dtype), **hub, **components)
    except (OSError, ValueError) as exc:
        raise DiffusionError(f"model {cfg.model!r} could not be loaded: {exc}{_missing_hint(cfg)}") from None


def _missing_hint(cfg: DiffusionConfig) -> str:
    """Say what to do when a hub id could not be loaded: offline, it must already be in the HF cache."""
    if Path(cfg.model).expanduser().exists() or cfg.model.startswith("tiny:"):
        return ""
    offline = cfg.local_files_only or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    if offline:
        return (f" (offline: {cfg.model} is neither a local folder nor in the Hugging Face cache; run "
                f"`hf download {cfg.model}` where the hub answers, or point `model` at a local folder)")
    return f" (is {cfg.model!r} a hub model id or an existing local folder?)"


def set_attention_backend(pipe: Any, backend: str | None) -> None:
    """Select the attention kernel ("native", "flash", ...) on every denoiser of `pipe`; None keeps it."""
    if not backend:
        return
    for name in ("transformer", "controlnet"):
        module = getattr(pipe, name, None)
        if module is None or not hasattr(module, "set_attention_backend"):
            continue
        if getattr(module, "_portraitcraft_attention", None) == backend:
            continue
        try:
            module.set_attention_backend(backend)
        except (ValueError, RuntimeError, ImportError) as exc:
            raise DiffusionError(f"attention backend {backend!r} is not usable here: {exc}") from None
        module._portraitcraft_attention = backend


def vae_multiple(pipe: Any) -> int:
    """The multiple image sides must have for `pipe` (VAE scale factor x 2, i.e. 16 for real models)."""
    return int(getattr(pipe, "vae_scale_factor", 8)) * 2
