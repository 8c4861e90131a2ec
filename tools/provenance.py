"""Provenance carried inside every image the loop writes: the chain of steps that made it.

PNG files carry it as text chunks:
- `portraitcraft` + `parameters`: a generated or edited image's generation parameters (tools/diffusion/metadata.py);
- `portraitcraft:reframe`: a reframed image's record (`source`, `mirrored`, `crop_box` in the source's pixels
  after the mirror, `padding`, `fill` ("none" or the outpainting model), `kept_fraction`, `size`, ...);
- `portraitcraft:init`: an image given by the user (`generate --init-images`): its `source` file.

A JPEG copy carries the same chunks as ONE JSON object (chunk name -> text) in its COM (comment) segment; a
WEBP copy in its EXIF ImageDescription. `read_provenance` reads all three back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

from portraitcraft.atomic import atomic_open, atomic_write_bytes, image_format, save_image_atomic

PREFIX = "portraitcraft"
REFRAME_KEY = "portraitcraft:reframe"
INIT_KEY = "portraitcraft:init"
KEPT_KEYS = ("parameters",)
"""Text chunks kept besides every `portraitcraft*` one (the A1111 parameters that image tools show)."""
EXIF_IMAGE_DESCRIPTION = 0x010E


def _kept(key: str) -> bool:
    return key.startswith(PREFIX) or key in KEPT_KEYS


def chunks_of(image: Image.Image) -> dict[str, str]:
    """The provenance text an open image carries (`image.info`, as read from a PNG or attached by a backend)."""
    return {k: v for k, v in image.info.items() if isinstance(k, str) and _kept(k) and isinstance(v, str)}


def png_info(chunks: dict[str, str]) -> PngImagePlugin.PngInfo:
    """PNG text chunks (international text, UTF-8) for `chunks`."""
    info = PngImagePlugin.PngInfo()
    for key, value in chunks.items():
        info.add_itxt(key, value)
    return info


def save_with_provenance(image: Image.Image, path: str | Path, records: dict[str, Any] | None = None) -> Path:
    """Write `image` (PNG, atomically) with its own provenance chunks plus `records` (chunk name -> JSON-able).

    Example:
        >>> save_with_provenance(crop, "round_1.png", {REFRAME_KEY: {"source": "round_0.png"}})  # doctest: +SKIP
    """
    chunks = chunks_of(image)
    for key, value in (records or {}).items():
        chunks[key] = value if isinstance(value, str) else json.dumps(value)
    rgb = image if image.mode in ("RGB", "L") else image.convert("RGB")
    return save_image_atomic(rgb, path, pnginfo=png_info(chunks), fmt="PNG")


def read_provenance(path: str | Path) -> dict[str, str]:
    """Every provenance chunk of a PNG, or the record a JPEG's COM / a WEBP's EXIF holds ({} when none)."""
    with Image.open(path) as img:
        found = chunks_of(img)
        if found:
            return found
        text: Any = img.info.get("comment")
        if not text:
            text = img.getexif().get(EXIF_IMAGE_DESCRIPTION)
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    try:
        data = json.loads(text) if text else {}
    except ValueError:
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and _kept(k)} if isinstance(data, dict) else {}


def copy_with_provenance(src: str | Path, dst: str | Path) -> Path:
    """Copy an image to `dst` in the format its name asks for, keeping its provenance (atomically).

    Same format: the bytes as they are (PNG chunks included). PNG -> JPEG: the chunks as one JSON object in the
    JPEG's COM segment; -> WEBP: in its EXIF ImageDescription.
    """
    src, dst = Path(src), Path(dst)
    fmt = image_format(dst)
    with Image.open(src) as im:
        same = (im.format or "").upper() == fmt
        chunks = chunks_of(im)
        rgb = None if same else im.convert("RGB")
    if same:
        return atomic_write_bytes(dst, src.read_bytes())
    assert rgb is not None
    if fmt == "PNG":
        return save_image_atomic(rgb, dst, pnginfo=png_info(chunks), fmt="PNG")
    record = json.dumps(chunks, ensure_ascii=False)
    kwargs: dict[str, Any] = {}
    if fmt == "JPEG":
        kwargs = {"quality": 95, "comment": record.encode("utf-8")}
    elif chunks:
        exif = Image.Exif()
        exif[EXIF_IMAGE_DESCRIPTION] = record
        kwargs = {"exif": exif}
    with atomic_open(dst) as fh:
        rgb.save(fh, format=fmt, **kwargs)
    return dst


__all__ = ["INIT_KEY", "REFRAME_KEY", "chunks_of", "copy_with_provenance", "png_info", "read_provenance",
           "save_with_provenance"]
