"""Generative outpainting (tools/diffusion/outpaint.py) with tiny random models, and the reframing editor using
it to pad where no crop meets the target: the pad is painted by the model, the source pixels kept exactly."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from portraitcraft.config import EditorConfig
from portraitcraft.tools.diffusion.metadata import meta_of
from portraitcraft.tools.diffusion.outpaint import InpaintOutpainter
from portraitcraft.tools.gpu import ModelPool

pytest_plugins = ["diffusion_fixtures"]


def padded_picture() -> tuple[Image.Image, Image.Image]:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    mask = Image.new("L", (64, 48), 0)
    mask.paste(255, (0, 0, 16, 48))  # a 16 px pad on the left
    return img, mask


@pytest.mark.parametrize("model_fixture", ["tiny_zimage"])  # tiny_qwen_image passes too (slow here)
def test_outpaint_repaints_only_the_pad(model_fixture: str, request: pytest.FixtureRequest,
                                        cpu_cfg: Callable[..., Any], cpu_pool: ModelPool) -> None:
    model = request.getfixturevalue(model_fixture)
    backend = InpaintOutpainter(cpu_cfg(EditorConfig, model, backend="img2img"), cpu_pool)
    img, mask = padded_picture()
    out = backend.outpaint(img, mask, "a park", seed=3)
    a, b = np.asarray(img, int), np.asarray(out, int)
    assert out.size == img.size
    assert np.array_equal(a[:, 16:], b[:, 16:])  # the source's pixels, exactly
    assert np.abs(a[:, :16] - b[:, :16]).mean() > 5  # the pad was repainted by the model
    again = backend.outpaint(img, mask, "a park", seed=3)
    assert np.array_equal(np.asarray(again), b)  # seeded
    meta = meta_of(out)
    assert meta.model == str(model) and meta.extra["pad_box"] == [0, 0, 16, 48] and meta.seed == 3


def test_a_mask_of_another_size_is_refused(tiny_zimage: Path, cpu_cfg: Callable[..., Any],
                                           cpu_pool: ModelPool) -> None:
    from portraitcraft.tools.diffusion.base import DiffusionError

    backend = InpaintOutpainter(cpu_cfg(EditorConfig, tiny_zimage, backend="img2img"), cpu_pool)
    img, _ = padded_picture()
    with pytest.raises(DiffusionError, match="mask"):
        backend.outpaint(img, Image.new("L", (8, 8)), "a park")


def test_reframe_pads_with_the_model_only_where_no_crop_meets_the_target(
        tiny_zimage: Path, cpu_cfg: Callable[..., Any], cpu_pool: ModelPool) -> None:
    pytest.importorskip("mediapipe")
    from skimage import data

    from portraitcraft.agents.reframe import parse_aspect, reframe
    from portraitcraft.tools.vision import analyze

    photo = Image.fromarray(data.astronaut())
    analysis = analyze(photo)
    fill = InpaintOutpainter(cpu_cfg(EditorConfig, tiny_zimage, backend="img2img"), cpu_pool).fill("a flag", 1)
    # a crop exists: no model, no pad
    plain = reframe(photo, analysis, horizontal="center", aspect=parse_aspect("9:16"), outpaint=fill, verify=False)
    assert plain.fill == "none" and plain.padding == (0, 0, 0, 0) and plain.pad_mask is None
    # the right third of a square frame: no pad-free crop, so the model paints the pad
    result = reframe(photo, analysis, horizontal="right", aspect=1.0, outpaint=fill, verify=False)
    left, top, _, _ = result.padding
    assert left > 0 and result.fill == str(tiny_zimage) and not result.needs_outpainting
    mask = np.asarray(result.pad_mask) > 127
    assert mask.shape == (result.image.height, result.image.width) and mask[:, :left].all() and not mask[:, left:].any()
    x0, y0, x1, y1 = result.crop_box
    kept = photo.crop((max(0, x0), max(0, y0), min(512, x1), min(512, y1)))
    assert np.array_equal(np.asarray(result.image)[top:top + kept.height, left:left + kept.width], np.asarray(kept))
    record = result.record("astronaut.png")
    assert record["fill"] == str(tiny_zimage) and record["padding"] == list(result.padding)


async def test_outpaint_runs_as_a_lane_job_like_a_direct_call(tiny_zimage: Path, cpu_cfg: Callable[..., Any]) -> None:
    from portraitcraft.config import GeneratorConfig
    from portraitcraft.tools.gpu_jobs import Drawer, LaneExecutor

    cfg = cpu_cfg(EditorConfig, tiny_zimage, backend="img2img", outpaint=True)
    img, mask = padded_picture()
    want = InpaintOutpainter(cfg).outpaint(img, mask, "a park", seed=4)
    drawer = Drawer(LaneExecutor(), cpu_cfg(GeneratorConfig, tiny_zimage), cfg)
    try:
        got = await drawer.outpaint(img, mask, "a park", seed=4, item_id="a")
    finally:
        await drawer.aclose()
    assert np.array_equal(np.asarray(got), np.asarray(want)) and meta_of(got) == meta_of(want)
    assert drawer.stats().per_kind_jobs == {"outpaint": 1}
