"""Text-to-image backends on tiny random Z-Image / Qwen-Image checkpoints loaded with from_pretrained."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from portraitcraft.config import DiffusionConfig, GeneratorConfig
from portraitcraft.errors import InputError
from portraitcraft.tools.diffusion import DiffusionError, GenParams, build_generator, meta_of, read_png_meta, save_png
from portraitcraft.tools.diffusion.img2img import RefinedGenerator
from portraitcraft.tools.diffusion.qwen_image import QwenImageGenerator
from portraitcraft.tools.diffusion.zimage import ZImageGenerator
from portraitcraft.tools.gpu import ModelPool

pytest_plugins = ["diffusion_fixtures"]
pytestmark = pytest.mark.diffusion


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


@pytest.fixture()
def zimage(cpu_cfg: Callable[..., Any], tiny_zimage: Path, cpu_pool: ModelPool) -> ZImageGenerator:
    gen = build_generator(cpu_cfg(GeneratorConfig, tiny_zimage), cpu_pool)
    assert isinstance(gen, ZImageGenerator)
    return gen


@pytest.fixture()
def qwen(cpu_cfg: Callable[..., Any], tiny_qwen_image: Path, cpu_pool: ModelPool) -> QwenImageGenerator:
    gen = build_generator(cpu_cfg(GeneratorConfig, tiny_qwen_image, backend="qwen-image"), cpu_pool)
    assert isinstance(gen, QwenImageGenerator)
    return gen


@pytest.mark.parametrize("size", [(64, 48), (48, 64), (32, 32)])
def test_zimage_draws_at_the_planned_size(zimage: ZImageGenerator, size: tuple[int, int]) -> None:
    image = zimage.generate("a woman on the left third, facing right", *size, seed=1)
    assert image.size == size and image.mode == "RGB"
    assert pixels(image).std() > 0  # not a blank (or NaN-black) canvas


def test_qwen_image_draws_at_the_planned_size(qwen: QwenImageGenerator) -> None:
    image = qwen.generate("a man on the right, facing left", 64, 48, seed=1)
    assert image.size == (64, 48)
    meta = meta_of(image)
    assert meta.true_cfg_scale == 4.0 and meta.negative_prompt == " " and meta.guidance_scale is None


@pytest.mark.parametrize("which", ["zimage", "qwen"])
def test_seeds_reproduce(which: str, request: pytest.FixtureRequest) -> None:
    gen = request.getfixturevalue(which)
    a = pixels(gen.generate("a portrait", 64, 48, seed=7))
    b = pixels(gen.generate("a portrait", 64, 48, seed=7))
    c = pixels(gen.generate("a portrait", 64, 48, seed=8))
    assert np.array_equal(a, b)
    assert np.abs(a - c).mean() > 1.0


@pytest.mark.parametrize("which", ["zimage", "qwen"])
def test_the_prompt_reaches_the_model(which: str, request: pytest.FixtureRequest) -> None:
    gen = request.getfixturevalue(which)
    a = pixels(gen.generate("a portrait of a woman", 64, 48, seed=3))
    b = pixels(gen.generate("a dog on a beach at night", 64, 48, seed=3))
    assert not np.array_equal(a, b)


def test_params_override_the_config(zimage: ZImageGenerator) -> None:
    base = zimage.generate("a portrait", 64, 48, seed=2)
    more_steps = zimage.generate("a portrait", 64, 48, seed=2, params=GenParams(steps=3))
    cfg_on = zimage.generate("a portrait", 64, 48, seed=2, params=GenParams(guidance_scale=4.0,
                                                                          negative_prompt="blurry"))
    assert meta_of(base).steps == 2 and meta_of(more_steps).steps == 3
    assert meta_of(cfg_on).guidance_scale == 4.0 and meta_of(cfg_on).negative_prompt == "blurry"
    assert meta_of(base).negative_prompt is None  # Turbo: CFG off, the negative prompt is unused
    assert not np.array_equal(pixels(base), pixels(more_steps))
    assert not np.array_equal(pixels(base), pixels(cfg_on))


def test_png_metadata_round_trips(zimage: ZImageGenerator, tmp_path: Path) -> None:
    image = zimage.generate("a woman on the left third", 64, 48, seed=11)
    meta = meta_of(image)
    assert (meta.prompt, meta.seed, meta.steps, meta.width, meta.height) == ("a woman on the left third", 11, 2, 64,
                                                                             48)
    assert (meta.backend, meta.model, meta.guidance_scale) == ("zimage-turbo", str(zimage.cfg.model), 0.0)
    path = save_png(image, tmp_path / "out" / "draft.png")
    assert read_png_meta(path) == meta
    with Image.open(path) as reopened:
        assert np.array_equal(pixels(reopened.convert("RGB")), pixels(image))
        assert "Seed: 11" in reopened.info["parameters"] and "Size: 64x48" in reopened.info["parameters"]


def test_sizes_off_the_model_multiple_are_refused(zimage: ZImageGenerator, qwen: QwenImageGenerator) -> None:
    with pytest.raises(InputError, match=r"62x48.*multiples of 4"):
        zimage.generate("a portrait", 62, 48, seed=1)
    with pytest.raises(InputError, match=r"64x44.*multiples of 8"):
        qwen.generate("a portrait", 64, 44, seed=1)
    with pytest.raises(InputError, match="prompt is empty"):
        zimage.generate("   ", 64, 48, seed=1)


def test_pose_on_qwen_image_is_a_clear_error(qwen: QwenImageGenerator) -> None:
    with pytest.raises(DiffusionError, match="Z-Image backends only"):
        qwen.generate("a portrait", 64, 48, seed=1, params=GenParams(pose=[[[1, 1, 1]] * 17]))


def test_pose_without_a_controlnet_is_a_clear_error(zimage: ZImageGenerator) -> None:
    with pytest.raises(DiffusionError, match="needs `controlnet` set"):
        zimage.generate("a portrait", 64, 48, seed=1, params=GenParams(pose=[[[1, 1, 1]] * 17]))


def test_cascaded_refiner_runs_img2img_on_the_draft(
    cpu_cfg: Callable[..., Any], tiny_zimage: Path, zimage: ZImageGenerator, cpu_pool: ModelPool
) -> None:
    refiner = cpu_cfg(DiffusionConfig, tiny_zimage, backend="img2img", steps=8)
    gen = build_generator(cpu_cfg(GeneratorConfig, tiny_zimage, refiner=refiner, refiner_strength=0.3), cpu_pool)
    assert isinstance(gen, RefinedGenerator)
    draft = zimage.generate("a portrait", 64, 48, seed=4)
    refined = gen.generate("a portrait", 64, 48, seed=4)
    assert refined.size == (64, 48)
    diff = np.abs(pixels(refined) - pixels(draft)).mean()
    assert diff > 0.5  # the refiner changed the draft ...
    meta = meta_of(refined)
    assert meta.backend == "zimage-turbo" and meta.refiner is not None
    assert meta.refiner.backend == "img2img" and meta.refiner.strength == 0.3
    # ... sharing the generator's weights: one model in the pool, the img2img pipeline a from_pipe variant
    assert cpu_pool.loaded().count(gen.base.local.key) == 1


def test_a_missing_model_is_a_clear_error(cpu_cfg: Callable[..., Any], tmp_path: Path) -> None:
    gen = build_generator(cpu_cfg(GeneratorConfig, tmp_path / "no-such-model"))
    with pytest.raises(DiffusionError, match=r"no-such-model.*could not be loaded"):
        gen.generate("a portrait", 64, 48, seed=1)


def test_device_and_backend_mistakes_are_refused_early(
    cpu_cfg: Callable[..., Any], tiny_zimage: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DiffusionError, match="no CUDA GPU"):
        build_generator(cpu_cfg(GeneratorConfig, tiny_zimage, device="cuda"))
    with pytest.raises(DiffusionError, match="offload = 'model' needs an accelerator"):
        build_generator(cpu_cfg(GeneratorConfig, tiny_zimage, offload="model"))
    with pytest.raises(DiffusionError, match="cannot be used as the generator"):
        build_generator(cpu_cfg(GeneratorConfig, tiny_zimage, backend="qwen-image-edit"))
    with pytest.raises(DiffusionError, match=r"wants device 'cpu'.*'cuda'"):
        ZImageGenerator(cpu_cfg(GeneratorConfig, tiny_zimage), ModelPool(device="cuda"))


def test_tiny_zimage_takes_a_full_length_prompt_and_a_canvas_over_128_px(zimage: ZImageGenerator) -> None:
    # the default max_sequence_length (512 byte tokens) and a canvas wider than the old 128 px RoPE table
    prompt = "A woman stands on the left third, facing right, in a wide coastal landscape. " * 12
    image = zimage.generate(prompt, 160, 96, seed=1, params=GenParams(steps=1))
    assert image.size == (160, 96) and meta_of(image).prompt == prompt.strip()


def test_bad_call_arguments_are_clear_errors_not_tracebacks(zimage: ZImageGenerator) -> None:
    with pytest.raises(InputError, match=r"seed 18446744073709551616 is not valid"):
        zimage.generate("a portrait", 64, 48, seed=2**64)
    with pytest.raises(InputError, match=r"sides must be integers"):
        zimage.generate("a portrait", "64", 48, seed=1)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="prompt must be text"):
        zimage.generate(["a portrait"], 64, 48, seed=1)  # type: ignore[arg-type]
    with pytest.raises(DiffusionError, match=r"ZImagePipeline .*refused the call.*no_such_argument"):
        zimage.generate("a portrait", 64, 48, seed=1, params=GenParams(extra={"no_such_argument": 1}))
    assert zimage.generate("a portrait", 64, 48, seed=1).size == (64, 48)  # the backend is still usable


@pytest.mark.parametrize("backend", ["qwen-image-edit-plus", "remote"])
def test_a_refiner_must_refine_by_strength(backend: str) -> None:
    refiner = DiffusionConfig(backend=backend, model="Qwen/Qwen-Image-Edit-2509", device="cpu")
    cfg = GeneratorConfig(backend="remote", model="gpt-image-1", refiner=refiner)
    with pytest.raises(DiffusionError, match=rf"refiner backend '{backend}' cannot refine at a strength .*img2img"):
        build_generator(cfg)
