"""Images in, images out: open and validate, resize to a pixel budget, hash, encode as data URLs.

Every image that reaches a model goes through `load_image`, so odd files (CMYK, 16-bit, alpha, palette,
EXIF-rotated, truncated, decompression bombs) become a plain, upright 8-bit RGB image or an `ImageError`
naming the file and the problem.
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from portraitcraft.errors import InputError

ImageInput = str | Path | Image.Image | bytes
"""A file path, raw encoded bytes, or an already-open PIL image."""

MAX_SOURCE_PIXELS = 100_000_000
"""Refuse to decode anything larger (a decompression bomb, or a mistake). Pillow's own hard limit is higher."""

_DATA_URL_CACHE_SIZE = 64
_JPEG_QUALITY = 95


class ImageError(InputError):
    """An image cannot be used (bad input, exit code 2); the message names the image and the problem."""


def _describe(src: ImageInput, name: str | None) -> str:
    if name:
        return name
    if isinstance(src, str | Path):
        return str(src)
    if isinstance(src, bytes):
        return f"<{len(src)} bytes>"
    return f"<{type(src).__name__} {getattr(src, 'size', '')}>"


def _open(src: ImageInput, label: str) -> Image.Image:
    if isinstance(src, Image.Image):
        return src
    if isinstance(src, str | Path):
        path = Path(src)
        if not path.exists():
            raise ImageError(f"image {label}: file not found")
        if not path.is_file():
            raise ImageError(f"image {label}: not a file")
        data = path.read_bytes()
    elif isinstance(src, bytes | bytearray | memoryview):
        data = bytes(src)
    else:
        raise ImageError(f"image {label}: unsupported input type {type(src).__name__}")
    if not data:
        raise ImageError(f"image {label}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageError(f"image {label}: over the decompression-bomb safety limit ({exc})") from None
    except UnidentifiedImageError:
        raise ImageError(f"image {label}: not a recognised image format ({len(data)} bytes)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"image {label}: {_problem(exc)} ({exc})") from None


def _problem(exc: Exception) -> str:
    return "truncated image data" if "truncat" in str(exc).lower() else "corrupt image data"


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB; transparent areas are composited on white."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.int64)
        peak = 255 if arr.size and arr.max() <= 255 else 65535
        return Image.fromarray((np.clip(arr, 0, peak) * 255 // peak).astype(np.uint8), "L").convert("RGB")
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        scale = 255.0 if arr.size and np.nanmax(arr) <= 1.0 else 1.0
        return Image.fromarray(np.clip(np.nan_to_num(arr) * scale, 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode == "1":
        img = img.convert("L")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def load_image(src: ImageInput, *, name: str | None = None) -> Image.Image:
    """Open and validate an image as upright 8-bit RGB, fully decoded.

    Args:
        src (str | Path | PIL.Image.Image | bytes): a file path, encoded bytes or an open image.
        name (str, optional): what to call the image in error messages; defaults to the path.

    Raises:
        ImageError: missing, empty, unrecognised, truncated, corrupt or oversized input.

    Example:
        >>> load_image(Image.new("CMYK", (4, 4))).mode
        'RGB'
    """
    label = _describe(src, name)
    img = _open(src, label)
    width, height = img.size
    if width < 1 or height < 1:
        raise ImageError(f"image {label}: has no pixels ({width}x{height})")
    if width * height > MAX_SOURCE_PIXELS:
        raise ImageError(
            f"image {label}: {width}x{height} pixels is over the decompression-bomb safety limit of "
            f"{MAX_SOURCE_PIXELS} pixels"
        )
    try:
        img.load()
        img = ImageOps.exif_transpose(img) or img
        return _to_rgb(img)
    except Image.DecompressionBombError as exc:
        raise ImageError(f"image {label}: over the decompression-bomb safety limit ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"image {label}: {_problem(exc)} ({exc})") from None


def resize_to_budget(img: Image.Image, max_pixels: int) -> Image.Image:
    """Shrink (never enlarge) so that width * height <= max_pixels, keeping the aspect ratio.

    Args:
        img (PIL.Image.Image): the image.
        max_pixels (int): the pixel budget, e.g. 448 * 448.

    Example:
        >>> resize_to_budget(Image.new("RGB", (2000, 1000)), 500_000).size
        (1000, 500)
    """
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be positive, got {max_pixels}")
    width, height = img.size
    if width * height <= max_pixels:
        return img
    scale = math.sqrt(max_pixels / (width * height))
    new_w, new_h = max(1, math.floor(width * scale)), max(1, math.floor(height * scale))
    while new_w * new_h > max_pixels:  # floating-point edge cases
        if new_w >= new_h:
            new_w -= 1
        else:
            new_h -= 1
    return img.resize((new_w, new_h), Image.Resampling.LANCZOS)


def image_hash(img: Image.Image) -> str:
    """A stable sha256 hex digest of an image's mode, size and pixels (not of its file encoding).

    Example:
        >>> image_hash(Image.new("RGB", (2, 2))) == image_hash(Image.new("RGB", (2, 2)))
        True
    """
    digest = hashlib.sha256()
    digest.update(f"{img.mode}:{img.size[0]}x{img.size[1]}:".encode())
    digest.update(img.tobytes())
    return digest.hexdigest()


def hflip(img: Image.Image) -> Image.Image:
    """The horizontal mirror image (left <-> right), for flip test-time augmentation."""
    return ImageOps.mirror(img)


@dataclass(frozen=True)
class EncodedImage:
    """An image ready for a chat message: its data URL and the hash of the pixels it carries."""

    url: str
    hash: str
    size: tuple[int, int]


class _DataUrlCache:
    """A small thread-safe LRU of encodings keyed by (pixel hash, format, budget)."""

    def __init__(self, maxsize: int) -> None:
        self._items: OrderedDict[tuple[str, str, int | None], EncodedImage] = OrderedDict()
        self._maxsize = maxsize
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[str, str, int | None]) -> EncodedImage | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item

    def put(self, key: tuple[str, str, int | None], item: EncodedImage) -> None:
        with self._lock:
            self._items[key] = item
            self._items.move_to_end(key)
            while len(self._items) > self._maxsize:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.hits = self.misses = 0


DATA_URL_CACHE = _DataUrlCache(_DATA_URL_CACHE_SIZE)


def encode_image(
    src: ImageInput,
    *,
    fmt: Literal["PNG", "JPEG"] = "PNG",
    max_pixels: int | None = None,
    name: str | None = None,
) -> EncodedImage:
    """Load, validate, resize and encode an image; encodings are cached per pixel hash.

    Args:
        src (ImageInput): path, bytes or PIL image.
        fmt ("PNG" | "JPEG", optional, defaults to "PNG"): the encoding.
        max_pixels (int, optional): shrink to this pixel budget first.
        name (str, optional): the image's name in error messages.

    Example:
        >>> enc = encode_image(Image.new("RGB", (8, 8)), fmt="JPEG")
        >>> enc.url.startswith("data:image/jpeg;base64,")
        True
    """
    if fmt not in ("PNG", "JPEG"):
        raise ValueError(f"fmt must be 'PNG' or 'JPEG', got {fmt!r}")
    img = load_image(src, name=name)
    source_hash = image_hash(img)
    key = (source_hash, fmt, max_pixels)
    cached = DATA_URL_CACHE.get(key)
    if cached is not None:
        return cached
    sized = resize_to_budget(img, max_pixels) if max_pixels else img
    buffer = io.BytesIO()
    if fmt == "PNG":
        sized.save(buffer, format="PNG", compress_level=1)
    else:
        sized.save(buffer, format="JPEG", quality=_JPEG_QUALITY)
    payload = base64.b64encode(buffer.getvalue()).decode("ascii")
    sent_hash = source_hash if sized is img else image_hash(sized)
    item = EncodedImage(url=f"data:image/{fmt.lower()};base64,{payload}", hash=sent_hash, size=sized.size)
    DATA_URL_CACHE.put(key, item)
    return item


def to_data_url(img: ImageInput, *, fmt: Literal["PNG", "JPEG"] = "PNG", max_pixels: int | None = None) -> str:
    """A `data:image/...;base64,...` URL for a chat message (cached per image hash).

    Args:
        img (ImageInput): path, bytes or PIL image; validated with `load_image`.
        fmt ("PNG" | "JPEG", optional, defaults to "PNG"): the encoding.
        max_pixels (int, optional): shrink to this pixel budget first.

    Example:
        >>> to_data_url(Image.new("RGB", (4, 4)))[:22]
        'data:image/png;base64,'
    """
    return encode_image(img, fmt=fmt, max_pixels=max_pixels).url
