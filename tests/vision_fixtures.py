"""Real public-domain photos from installed packages (skimage, matplotlib), written to a session folder, and a
per-session cache of their analyses so the real-model tests stay fast."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("mediapipe")
skdata = pytest.importorskip("skimage.data")
cbook = pytest.importorskip("matplotlib.cbook")

PERSON_PHOTOS = ("astronaut", "camera", "grace_hopper")


def _photo(name: str) -> Image.Image:
    if name == "astronaut":
        return Image.fromarray(skdata.astronaut())
    if name == "camera":
        return Image.fromarray(skdata.camera()).convert("RGB")
    if name == "coffee":
        return Image.fromarray(skdata.coffee())
    if name == "grace_hopper":
        with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as img:
            return img.convert("RGB")
    raise KeyError(name)


@pytest.fixture(scope="session")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("photos")
    out = {}
    for name in (*PERSON_PHOTOS, "coffee"):
        path = folder / f"{name}.png"
        _photo(name).save(path)
        out[name] = path
    return out


@pytest.fixture(scope="session")
def analyzed(photos: dict[str, Path]) -> Callable[..., object]:
    """analyzed(name, variant="plain") -> Analysis, computed once per session."""
    from portraitcraft.tools.vision import analyze

    cache: dict[tuple[str, str], object] = {}

    def get(name: str, variant: str = "plain", image: Image.Image | None = None) -> object:
        key = (name, variant)
        if key not in cache:
            cache[key] = analyze(image if image is not None else photos[name])
        return cache[key]

    return get


def load(path: Path) -> Image.Image:
    with Image.open(path) as img:
        return img.convert("RGB")


def pad(img: Image.Image, left: int = 0, right: int = 0, colour: int = 128) -> Image.Image:
    arr = np.asarray(img)
    return Image.fromarray(np.pad(arr, ((0, 0), (left, right), (0, 0)), constant_values=colour))
