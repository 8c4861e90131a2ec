"""Expected output slices of every tiny diffusers backend, diffusers style (`image[-3:, -3:, -1]`).

The tiny models are random but built from a fixed seed (tools/diffusion/tiny.py) and torch is pinned
(torch==2.13.0, CPU, float32): a change in the scheduler set-up, the seed handling, the latent packing, the
VAE decode or the post-processing moves these numbers, where "the output differs" tests stay green. After an
intended change (a new tiny-model RECIPE_VERSION, a diffusers upgrade), regenerate them by printing `slice_of`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from PIL import Image

from portraitcraft.config import EditorConfig, GeneratorConfig
from portraitcraft.tools.diffusion import build_editor, build_generator
from portraitcraft.tools.gpu import ModelPool

pytest_plugins = ["diffusion_fixtures"]
pytestmark = pytest.mark.diffusion

PROMPT = "a woman on the left third, facing right"
INSTRUCTION = "turn the head left"
TOLERANCE = 3  # uint8 levels (diffusers' 1e-2 on [0, 1] is 2.55)
EXPECTED = {
    "zimage-turbo": [102, 138, 118, 110, 151, 134, 142, 143, 131],
    "qwen-image": [137, 147, 106, 130, 161, 121, 137, 134, 131],
    "qwen-image-edit": [137, 147, 106, 131, 161, 122, 137, 134, 131],
    "qwen-image-edit-plus": [137, 147, 106, 131, 161, 121, 137, 134, 131],
    "img2img": [84, 110, 113, 133, 126, 114, 141, 143, 135],
}


def slice_of(image: Image.Image) -> list[int]:
    return np.asarray(image, dtype=np.int16)[-3:, -3:, -1].flatten().tolist()


def gradient() -> Image.Image:
    return Image.fromarray(np.linspace(0, 255, 64 * 48 * 3).reshape(48, 64, 3).astype(np.uint8))


@pytest.mark.parametrize("backend", list(EXPECTED))
def test_expected_slice(backend: str, request: pytest.FixtureRequest, cpu_cfg: Callable[..., Any],
                        cpu_pool: ModelPool) -> None:
    if backend in ("zimage-turbo", "qwen-image"):
        model = request.getfixturevalue("tiny_zimage" if backend == "zimage-turbo" else "tiny_qwen_image")
        image = build_generator(cpu_cfg(GeneratorConfig, model, backend=backend), cpu_pool).generate(
            PROMPT, 64, 48, seed=1)
    else:
        model = request.getfixturevalue("tiny_zimage" if backend == "img2img" else "tiny_qwen_edit")
        editor = build_editor(cpu_cfg(EditorConfig, model, backend=backend, edit_max_area=64 * 64, strength=0.6),
                              cpu_pool)
        image = editor.edit(gradient(), INSTRUCTION, seed=1)
    assert image.size == (64, 48)
    got = slice_of(image)
    assert np.abs(np.subtract(got, EXPECTED[backend])).max() <= TOLERANCE, f"{backend}: {got}"
