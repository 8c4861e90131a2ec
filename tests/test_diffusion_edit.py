"""Editors on tiny random checkpoints: Qwen-Image-Edit (original and Plus) with a clamped input area, and
img2img (SDEdit) on Z-Image and Qwen-Image."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from portraitcraft.config import EditorConfig
from portraitcraft.errors import InputError
from portraitcraft.tools.diffusion import DiffusionError, GenParams, build_editor, meta_of
from portraitcraft.tools.diffusion.img2img import Img2ImgEditor
from portraitcraft.tools.diffusion.qwen_edit import QwenImageEditor, edit_area_limit
from portraitcraft.tools.gpu import ModelPool

pytest_plugins = ["diffusion_fixtures"]
pytestmark = pytest.mark.diffusion

EDIT_AREA = 64 * 64


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def source_image(width: int = 64, height: int = 48) -> Image.Image:
    gradient = np.linspace(0, 255, width * height * 3).reshape(height, width, 3).astype(np.uint8)
    return Image.fromarray(gradient)


@pytest.fixture(params=["qwen-image-edit", "qwen-image-edit-plus"])
def qwen_editor(request: pytest.FixtureRequest, cpu_cfg: Callable[..., Any], tiny_qwen_edit: Path,
                cpu_pool: ModelPool) -> QwenImageEditor:
    editor = build_editor(cpu_cfg(EditorConfig, tiny_qwen_edit, backend=request.param, edit_max_area=EDIT_AREA),
                          cpu_pool)
    assert isinstance(editor, QwenImageEditor)
    return editor


def test_edit_area_limit_caps_the_resize_target_only_inside_the_block() -> None:
    from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit as edit_module
    from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit_plus as plus_module

    with edit_area_limit(EDIT_AREA):
        w, h, _ = edit_module.calculate_dimensions(1024 * 1024, 4 / 3)
        pw, ph = plus_module.calculate_dimensions(1024 * 1024, 4 / 3)
    assert w * h <= 2 * EDIT_AREA and pw * ph <= 2 * EDIT_AREA
    w, h, _ = edit_module.calculate_dimensions(1024 * 1024, 4 / 3)
    assert w * h > 900_000  # outside the block the pipelines behave as upstream


def test_qwen_edit_keeps_the_size_and_encodes_a_clamped_input(
    qwen_editor: QwenImageEditor, monkeypatch: pytest.MonkeyPatch
) -> None:
    from diffusers import QwenImageEditPipeline, QwenImageEditPlusPipeline

    cls = QwenImageEditPlusPipeline if qwen_editor.cfg.backend.endswith("plus") else QwenImageEditPipeline
    pipe = qwen_editor.local.get(cls)
    seen: list[tuple[int, ...]] = []
    encode = pipe.vae.encode

    def spy(x: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(tuple(x.shape))
        return encode(x, *args, **kwargs)

    monkeypatch.setattr(pipe.vae, "encode", spy)
    src = source_image()
    out = qwen_editor.edit(src, "make the background red", seed=1)
    assert out.size == (64, 48)
    assert seen and all(shape[-1] * shape[-2] <= 2 * EDIT_AREA for shape in seen), seen
    meta = meta_of(out)
    assert meta.backend == qwen_editor.cfg.backend and meta.instruction == "make the background red"
    assert meta.source_size == (64, 48) and meta.true_cfg_scale == 4.0


def test_qwen_edit_is_seeded_and_follows_the_instruction(qwen_editor: QwenImageEditor) -> None:
    src = source_image()
    a = pixels(qwen_editor.edit(src, "turn the head left", seed=5))
    b = pixels(qwen_editor.edit(src, "turn the head left", seed=5))
    c = pixels(qwen_editor.edit(src, "turn the head left", seed=6))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_edit_plus_takes_reference_images(cpu_cfg: Callable[..., Any], tiny_qwen_edit: Path,
                                          cpu_pool: ModelPool) -> None:
    cfg = cpu_cfg(EditorConfig, tiny_qwen_edit, backend="qwen-image-edit-plus", edit_max_area=EDIT_AREA)
    editor = build_editor(cfg, cpu_pool)
    src = source_image()
    alone = pixels(editor.edit(src, "match the pose", seed=2))
    ref = Image.fromarray(np.full((48, 32, 3), 200, np.uint8))
    with_ref = pixels(editor.edit(src, "match the pose", seed=2, params=GenParams(reference_images=[ref])))
    assert with_ref.shape == alone.shape and not np.array_equal(alone, with_ref)
    original = build_editor(cpu_cfg(EditorConfig, tiny_qwen_edit, backend="qwen-image-edit",
                                    edit_max_area=EDIT_AREA), cpu_pool)
    with pytest.raises(DiffusionError, match="qwen-image-edit-plus"):
        original.edit(src, "match the pose", seed=2, params=GenParams(reference_images=[ref]))


def test_explicit_output_size_and_bad_sizes(qwen_editor: QwenImageEditor) -> None:
    out = qwen_editor.edit(source_image(), "zoom out", seed=1, params=GenParams(width=48, height=64))
    assert out.size == (48, 64)
    with pytest.raises(InputError, match="44x64"):
        qwen_editor.edit(source_image(), "zoom out", seed=1, params=GenParams(width=44, height=64))
    with pytest.raises(InputError, match="edit instruction is empty"):
        qwen_editor.edit(source_image(), "", seed=1)


@pytest.mark.parametrize("model_fixture", ["tiny_zimage", "tiny_qwen_image"])
def test_img2img_redraws_at_the_given_strength(
    model_fixture: str, request: pytest.FixtureRequest, cpu_cfg: Callable[..., Any], cpu_pool: ModelPool
) -> None:
    model = request.getfixturevalue(model_fixture)
    editor = build_editor(cpu_cfg(EditorConfig, model, backend="img2img", steps=8), cpu_pool)
    assert isinstance(editor, Img2ImgEditor)
    src = source_image()
    steps: list[int] = []

    def count_steps(pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        steps.append(step)
        return kwargs

    def edit(strength: float) -> Image.Image:
        steps.clear()
        return editor.edit(src, "a portrait", seed=3,
                           params=GenParams(strength=strength, extra={"callback_on_step_end": count_steps}))

    light = edit(0.25)
    light_steps = len(steps)
    heavy = edit(1.0)
    heavy_steps = len(steps)
    again = edit(0.25)
    assert light.size == heavy.size == (64, 48)
    assert (light_steps, heavy_steps) == (2, 8)  # SDEdit: strength x steps of denoising
    assert np.array_equal(pixels(light), pixels(again))
    assert not np.array_equal(pixels(light), pixels(heavy))
    assert meta_of(light).strength == 0.25 and meta_of(heavy).strength == 1.0


def test_a_text_to_image_backend_as_editor_means_sdedit(
    cpu_cfg: Callable[..., Any], tiny_zimage: Path, cpu_pool: ModelPool
) -> None:
    editor = build_editor(cpu_cfg(EditorConfig, tiny_zimage, backend="zimage-turbo"), cpu_pool)
    assert isinstance(editor, Img2ImgEditor)
    assert editor.edit(source_image(), "a portrait", seed=1).size == (64, 48)
    # a photo off the model's multiple (4 for the tiny VAE) is rounded down, as the Qwen editor does
    odd = source_image().resize((66, 51))
    assert editor.edit(odd, "a portrait", seed=1).size == (64, 48)
    with pytest.raises(InputError, match=r"image size 0x0 is not valid"):
        editor.edit(odd.resize((3, 3)), "a portrait", seed=1)


def test_a_checkpoint_that_cannot_do_img2img_is_a_clear_error(
    cpu_cfg: Callable[..., Any], tiny_qwen_edit: Path, cpu_pool: ModelPool
) -> None:
    editor = build_editor(cpu_cfg(EditorConfig, tiny_qwen_edit, backend="img2img"), cpu_pool)
    with pytest.raises(DiffusionError, match=r"QwenImageEditPipeline.*cannot serve as img2img"):
        editor.edit(source_image(), "a portrait", seed=1)
