"""Generation parameters carried inside every image: attached to `image.info`, written as PNG text chunks.

Two chunks are written: `portraitcraft` (JSON of `ImageMeta`, the one `read_png_meta` reads back exactly) and
`parameters` (the A1111-style text most image viewers and tools already show).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from portraitcraft.atomic import save_image_atomic
from portraitcraft.errors import DataError

META_KEY = "portraitcraft"
A1111_KEY = "parameters"


class LoraMeta(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    path: str
    weight: float


class ImageMeta(BaseModel):
    """Everything needed to reproduce an image (or to know it cannot be: remote APIs ignore seeds)."""

    model_config = ConfigDict(extra="forbid")

    backend: str
    model: str
    prompt: str
    negative_prompt: str | None = None
    seed: int
    steps: int | None = None
    guidance_scale: float | None = None
    true_cfg_scale: float | None = None
    strength: float | None = None
    width: int
    height: int
    loras: list[LoraMeta] = Field(default_factory=list)
    controlnet: str | None = None
    controlnet_scale: float | None = None
    instruction: str | None = Field(None, description="the edit instruction (edits only)")
    source_size: tuple[int, int] | None = Field(None, description="input image size (edits only)")
    refiner: ImageMeta | None = Field(None, description="the cascaded refiner pass, if any")
    extra: dict[str, Any] = Field(default_factory=dict)

    def a1111_text(self) -> str:
        """The A1111 `parameters` text: prompt line, negative prompt line, then `Key: value` pairs."""
        pairs = {
            "Steps": self.steps,
            "CFG scale": self.true_cfg_scale if self.true_cfg_scale is not None else self.guidance_scale,
            "Seed": self.seed,
            "Size": f"{self.width}x{self.height}",
            "Model": self.model,
            "Backend": self.backend,
            "Denoising strength": self.strength,
            "Lora hashes": ", ".join(f"{lo.name}: {lo.weight}" for lo in self.loras) or None,
        }
        lines = [self.instruction or self.prompt]
        if self.negative_prompt and self.negative_prompt.strip():
            lines.append(f"Negative prompt: {self.negative_prompt}")
        lines.append(", ".join(f"{k}: {v}" for k, v in pairs.items() if v is not None))
        return "\n".join(lines)


def attach_meta(image: Image.Image, meta: ImageMeta) -> Image.Image:
    """Attach `meta` to the image (in `image.info`, so it survives until saved) and return the image.

    Example:
        >>> img = attach_meta(Image.new("RGB", (16, 16)), ImageMeta(backend="x", model="m", prompt="p",
        ...                   seed=1, width=16, height=16))
        >>> meta_of(img).seed
        1
    """
    image.info[META_KEY] = meta.model_dump_json()
    image.info[A1111_KEY] = meta.a1111_text()
    return image


def meta_of(image: Image.Image) -> ImageMeta | None:
    """The metadata attached to (or read with) an image; None when it has none."""
    raw = image.info.get(META_KEY)
    if raw is None:
        return None
    try:
        return ImageMeta.model_validate_json(raw)
    except ValidationError as exc:
        raise DataError(f"image metadata `{META_KEY}` is not valid: {exc.errors()[0]['msg']}") from None


def save_png(image: Image.Image, path: str | Path, meta: ImageMeta | None = None) -> Path:
    """Write the image as PNG with its metadata, atomically (`portraitcraft.atomic`).

    Args:
        image (PIL.Image): the image; its attached metadata is used when `meta` is None.
        path (str | Path): the target file.
        meta (ImageMeta, optional): metadata to write instead of the attached one.

    Example:
        >>> save_png(generator.generate("a portrait", 64, 48, seed=1), "out/draft.png")  # doctest: +SKIP
    """
    path = Path(path)
    meta = meta or meta_of(image)
    info = PngImagePlugin.PngInfo()
    if meta is not None:
        info.add_itxt(META_KEY, meta.model_dump_json())
        info.add_itxt(A1111_KEY, meta.a1111_text())
    return save_image_atomic(image, path, pnginfo=info, fmt="PNG")


def read_png_meta(path: str | Path) -> ImageMeta:
    """Read back the metadata `save_png` wrote; `DataError` naming the file when it has none."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            info = dict(img.info)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from None
    if META_KEY not in info:
        raise DataError(f"{path}: has no `{META_KEY}` generation metadata")
    try:
        return ImageMeta.model_validate(json.loads(info[META_KEY]))
    except (ValueError, ValidationError) as exc:
        raise DataError(f"{path}: generation metadata is not valid ({exc})") from None
