"""tools/images.py: validation of odd and broken files, resizing, hashing, data URLs."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from portraitcraft.errors import PortraitcraftError
from portraitcraft.tools.images import (
    DATA_URL_CACHE,
    MAX_SOURCE_PIXELS,
    ImageError,
    encode_image,
    hflip,
    image_hash,
    load_image,
    resize_to_budget,
    to_data_url,
)


def _encoded(img: Image.Image, fmt: str, **save: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **save)
    return buf.getvalue()


def _noise(w: int = 96, h: int = 64, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height (no pixel data worth decoding)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


# ---------------------------------------------------------------- loading and validation


def test_loads_path_bytes_and_pil_to_identical_rgb(tmp_path: Path) -> None:
    img = _noise()
    path = tmp_path / "noise.png"
    img.save(path)
    from_path, from_bytes, from_pil = load_image(path), load_image(path.read_bytes()), load_image(img)
    assert from_path.mode == from_bytes.mode == from_pil.mode == "RGB"
    assert np.array_equal(np.asarray(from_path), np.asarray(img))
    assert image_hash(from_path) == image_hash(from_bytes) == image_hash(from_pil)


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: p, "file not found"),
        (lambda p: (p.write_bytes(b""), p)[1], "empty file (0 bytes)"),
        (lambda p: (p.write_bytes(b"this is not an image at all" * 4), p)[1], "not a recognised image format"),
        (lambda p: (p.mkdir(), p)[1], "not a file"),
    ],
    ids=["missing", "zero-bytes", "not-an-image", "directory"],
)
def test_unusable_files_raise_imageerror_naming_file_and_problem(tmp_path: Path, make, expected: str) -> None:
    path = make(tmp_path / "portrait_17.png")
    with pytest.raises(ImageError) as info:
        load_image(path)
    assert str(path) in str(info.value)
    assert expected in str(info.value)
    assert isinstance(info.value, PortraitcraftError)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_file_is_reported_as_truncated(fmt: str) -> None:
    data = _encoded(_noise(200, 200), fmt)
    with pytest.raises(ImageError, match=r"image cut\.img: truncated image data"):
        load_image(data[: len(data) // 2], name="cut.img")


def test_corrupt_pixel_data_is_reported() -> None:
    data = bytearray(_encoded(_noise(64, 64), "PNG"))
    data[60:400] = bytes(340)  # zero out the start of the compressed pixel stream
    with pytest.raises(ImageError, match=r"image bad\.png: (corrupt|truncated) image data"):
        load_image(bytes(data), name="bad.png")


def test_decompression_bomb_over_our_limit_is_refused_before_decoding() -> None:
    width, height = 12_000, 9_000  # 108 MP: over our limit, under Pillow's own hard limit
    assert width * height > MAX_SOURCE_PIXELS
    with pytest.raises(ImageError, match=r"image bomb\.png: 12000x9000 pixels is over the decompression-bomb"):
        load_image(_png_header_only(width, height), name="bomb.png")


def test_decompression_bomb_over_pillows_limit_is_refused() -> None:
    with pytest.raises(ImageError, match=r"image huge\.png: over the decompression-bomb safety limit"):
        load_image(_png_header_only(30_000, 30_000), name="huge.png")


def test_cmyk_becomes_rgb() -> None:
    cmyk = Image.new("CMYK", (8, 8), (255, 0, 0, 0))  # pure cyan ink
    out = load_image(_encoded(cmyk, "TIFF"))
    assert out.mode == "RGB"
    assert out.getpixel((3, 3)) == (0, 255, 255)


def test_16bit_grayscale_is_scaled_not_clipped() -> None:
    arr = np.array([[0, 256, 32768, 65535]], dtype=np.uint16)
    img = Image.fromarray(arr)
    assert img.mode.startswith("I;16")
    out = np.asarray(load_image(_encoded(img, "PNG")))
    assert out.shape == (1, 4, 3)
    assert list(out[0, :, 0]) == [0, 0, 127, 255]  # v * 255 // 65535: mid-grey stays mid-grey


def test_alpha_is_composited_on_white() -> None:
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    rgba.putpixel((1, 1), (255, 0, 0, 255))
    rgba.putpixel((2, 2), (0, 0, 0, 128))
    out = load_image(_encoded(rgba, "PNG"))
    assert out.getpixel((0, 0)) == (255, 255, 255)
    assert out.getpixel((1, 1)) == (255, 0, 0)
    assert all(abs(c - 127) <= 1 for c in out.getpixel((2, 2)))


def test_palette_with_transparency_and_grey_alpha() -> None:
    pal = Image.new("P", (4, 4), 0)
    pal.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    pal.putpixel((1, 1), 1)
    out = load_image(_encoded(pal, "PNG", transparency=0))
    assert out.getpixel((0, 0)) == (255, 255, 255)  # transparent index -> white
    assert out.getpixel((1, 1)) == (0, 255, 0)
    la = Image.new("LA", (2, 2), (10, 255))
    assert load_image(_encoded(la, "PNG")).getpixel((0, 0)) == (10, 10, 10)


def test_exif_orientation_is_applied() -> None:
    img = Image.new("RGB", (40, 20), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 20, 20))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    out = load_image(_encoded(img, "PNG", exif=exif))
    assert out.size == (20, 40)
    assert out.getpixel((10, 5)) == (255, 0, 0)  # the left half is now on top
    assert out.getpixel((10, 35)) == (0, 0, 255)


# ---------------------------------------------------------------- resize, hash, flip, data URLs


@settings(max_examples=40, deadline=None)
@given(w=st.integers(1, 300), h=st.integers(1, 300), budget=st.integers(1, 50_000))
def test_resize_respects_budget_and_aspect(w: int, h: int, budget: int) -> None:
    out = resize_to_budget(Image.new("RGB", (w, h)), budget)
    ow, oh = out.size
    assert ow * oh <= max(budget, 1)
    if w * h <= budget:
        assert (ow, oh) == (w, h)  # never enlarged
    else:
        assert ow <= w and oh <= h
        if min(ow, oh) >= 8:
            assert abs(ow / oh - w / h) / (w / h) < 0.2


def test_image_hash_is_about_pixels_and_size() -> None:
    img = _noise(16, 16)
    assert image_hash(img) == image_hash(load_image(_encoded(img, "PNG")))
    assert image_hash(img) == image_hash(load_image(_encoded(img, "BMP")))
    changed = img.copy()
    changed.putpixel((0, 0), tuple(255 - c for c in img.getpixel((0, 0))))
    assert image_hash(changed) != image_hash(img)
    row = Image.new("RGB", (4, 1), (1, 2, 3))
    col = Image.new("RGB", (1, 4), (1, 2, 3))
    assert row.tobytes() == col.tobytes() and image_hash(row) != image_hash(col)


def test_hflip_mirrors_left_and_right() -> None:
    img = _noise(10, 4)
    flipped = hflip(img)
    assert flipped.getpixel((0, 2)) == img.getpixel((9, 2))
    assert np.array_equal(np.asarray(hflip(flipped)), np.asarray(img))


def _decode(url: str) -> Image.Image:
    header, payload = url.split(",", 1)
    assert header.endswith(";base64")
    return Image.open(io.BytesIO(base64.b64decode(payload)))


def test_png_data_url_round_trips_exactly_and_jpeg_approximately() -> None:
    img = _noise(48, 32)
    png = _decode(to_data_url(img))
    assert png.format == "PNG" and np.array_equal(np.asarray(png.convert("RGB")), np.asarray(img))
    smooth = Image.fromarray(np.dstack([np.tile(np.arange(48, dtype=np.uint8) * 5, (32, 1))] * 3), "RGB")
    url = to_data_url(smooth, fmt="JPEG")
    assert url.startswith("data:image/jpeg;base64,")
    jpeg = np.asarray(_decode(url).convert("RGB"), dtype=int)
    assert jpeg.shape == (32, 48, 3) and np.abs(jpeg - np.asarray(smooth, dtype=int)).mean() < 3


def test_data_url_respects_pixel_budget_and_is_cached_per_hash(tmp_path: Path) -> None:
    DATA_URL_CACHE.clear()
    img = _noise(400, 300, seed=3)
    path = tmp_path / "big.png"
    img.save(path)
    first = encode_image(path, max_pixels=100 * 100)
    assert first.size[0] * first.size[1] <= 100 * 100
    assert _decode(first.url).size == first.size
    assert first.hash == image_hash(_decode(first.url).convert("RGB"))
    assert DATA_URL_CACHE.misses == 1 and DATA_URL_CACHE.hits == 0
    again = encode_image(img.copy(), max_pixels=100 * 100)  # same pixels, different object
    assert again is first and DATA_URL_CACHE.hits == 1
    full = encode_image(img)
    assert full.size == (400, 300) and full.hash == image_hash(img)


def test_data_url_rejects_unknown_format() -> None:
    with pytest.raises(ValueError, match="fmt must be"):
        to_data_url(_noise(4, 4), fmt="GIF")  # type: ignore[arg-type]
