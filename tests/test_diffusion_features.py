"""LoRA adapters and the pose ControlNet on tiny Z-Image: each changes the output, and removing it restores it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from portraitcraft.config import GeneratorConfig, LoraConfig
from portraitcraft.tools.diffusion import DiffusionError, GenParams, build_generator, meta_of
from portraitcraft.tools.diffusion.lora import adapter_name, sync_loras, unload_loras
from portraitcraft.tools.diffusion.zimage import ZImageGenerator
from portraitcraft.tools.gpu import ModelPool
from portraitcraft.tools.pose_render import render_pose

pytest_plugins = ["diffusion_fixtures"]
pytestmark = pytest.mark.diffusion

PROMPT = "a woman on the left third, facing right"


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def standing_person(width: int = 64, height: int = 48) -> np.ndarray:
    """COCO-17 keypoints of a person standing in the left half of the canvas."""
    x, top = width * 0.3, height * 0.1
    rows = [
        (x, top), (x - 2, top - 1), (x + 2, top - 1), (x - 4, top), (x + 4, top),  # face
        (x - 6, top + 8), (x + 6, top + 8), (x - 8, top + 16), (x + 8, top + 16), (x - 9, top + 23),
        (x + 9, top + 23), (x - 4, top + 22), (x + 4, top + 22), (x - 4, top + 30), (x + 4, top + 30),
        (x - 4, top + 38), (x + 4, top + 38),
    ]
    return np.array([(px, py, 1.0) for px, py in rows])


@pytest.fixture()
def zimage(cpu_cfg: Callable[..., Any], tiny_zimage: Path, tiny_controlnet: Path,
           cpu_pool: ModelPool) -> ZImageGenerator:
    gen = build_generator(cpu_cfg(GeneratorConfig, tiny_zimage, controlnet=str(tiny_controlnet)), cpu_pool)
    assert isinstance(gen, ZImageGenerator)
    return gen


def test_a_lora_changes_the_output_and_unloading_restores_it(zimage: ZImageGenerator, tiny_lora: Path) -> None:
    base = pixels(zimage.generate(PROMPT, 64, 48, seed=1))
    zimage.set_loras([LoraConfig(path=str(tiny_lora), weight=1.0)])
    with_lora = zimage.generate(PROMPT, 64, 48, seed=1)
    zimage.set_loras([LoraConfig(path=str(tiny_lora), weight=0.3)])
    weaker = pixels(zimage.generate(PROMPT, 64, 48, seed=1))
    zimage.set_loras([])
    restored = pixels(zimage.generate(PROMPT, 64, 48, seed=1))
    assert np.abs(pixels(with_lora) - base).mean() > 1.0
    assert not np.array_equal(weaker, pixels(with_lora)) and not np.array_equal(weaker, base)
    assert np.array_equal(restored, base)
    (lora_meta,) = meta_of(with_lora).loras
    assert lora_meta.path == str(tiny_lora) and lora_meta.weight == 1.0


def test_loras_from_the_config_and_fusing(cpu_cfg: Callable[..., Any], tiny_zimage: Path, tiny_lora: Path,
                                         cpu_pool: ModelPool) -> None:
    lora = LoraConfig(path=str(tiny_lora), weight=0.8, name="dpo")
    plain = build_generator(cpu_cfg(GeneratorConfig, tiny_zimage), cpu_pool)
    adapted = build_generator(cpu_cfg(GeneratorConfig, tiny_zimage, loras=[lora]), cpu_pool)
    fused = build_generator(cpu_cfg(GeneratorConfig, tiny_zimage, loras=[lora], fuse_loras=True), cpu_pool)
    base = pixels(plain.generate(PROMPT, 64, 48, seed=2))
    a = pixels(adapted.generate(PROMPT, 64, 48, seed=2))
    f = pixels(fused.generate(PROMPT, 64, 48, seed=2))
    # generators sharing one pooled model each get their own adapter set on every call
    assert np.abs(a - base).mean() > 1.0
    assert np.abs(f - a).max() <= 2  # fused weights compute the same thing, up to rounding
    back = pixels(plain.generate(PROMPT, 64, 48, seed=2))
    assert np.abs(back - base).max() <= 1  # unfused and unloaded again


def test_sync_loras_on_a_pipeline_directly(zimage: ZImageGenerator, tiny_lora: Path) -> None:
    from diffusers import ZImagePipeline

    pipe = zimage.local.get(ZImagePipeline)
    lora = LoraConfig(path=str(tiny_lora), weight=0.5)
    sync_loras(pipe, [lora])
    assert pipe.get_active_adapters() == [adapter_name(lora)]
    unload_loras(pipe)
    assert pipe.get_list_adapters() == {}


def test_a_bad_lora_is_a_clear_error_and_leaves_the_model_usable(zimage: ZImageGenerator, tmp_path: Path) -> None:
    base = pixels(zimage.generate(PROMPT, 64, 48, seed=1))
    zimage.set_loras([LoraConfig(path=str(tmp_path / "missing.safetensors"))])
    with pytest.raises(DiffusionError, match=r"missing\.safetensors"):
        zimage.generate(PROMPT, 64, 48, seed=1)
    zimage.set_loras([])
    assert np.array_equal(pixels(zimage.generate(PROMPT, 64, 48, seed=1)), base)


def test_the_pose_controlnet_changes_the_output(zimage: ZImageGenerator) -> None:
    pose = standing_person()
    plain = pixels(zimage.generate(PROMPT, 64, 48, seed=3))
    posed = zimage.generate(PROMPT, 64, 48, seed=3, params=GenParams(pose=[pose]))
    again = pixels(zimage.generate(PROMPT, 64, 48, seed=3, params=GenParams(pose=[pose])))
    moved = pose.copy()
    moved[:, 0] += 30
    elsewhere = pixels(zimage.generate(PROMPT, 64, 48, seed=3, params=GenParams(pose=[moved])))
    assert posed.size == (64, 48)
    assert np.abs(pixels(posed) - plain).mean() > 1.0
    assert np.array_equal(pixels(posed), again)
    assert not np.array_equal(pixels(posed), elsewhere)
    meta = meta_of(posed)
    assert meta.controlnet == zimage.cfg.controlnet and meta.controlnet_scale == 0.75


def test_a_ready_control_image_equals_the_rendered_pose(zimage: ZImageGenerator) -> None:
    pose = standing_person()
    from_pose = pixels(zimage.generate(PROMPT, 64, 48, seed=4, params=GenParams(pose=[pose])))
    control = render_pose([pose], 64, 48)
    from_image = pixels(zimage.generate(PROMPT, 64, 48, seed=4, params=GenParams(control_image=control)))
    assert np.array_equal(from_pose, from_image)


def test_the_controlnet_is_a_from_pipe_variant_sharing_the_transformer(zimage: ZImageGenerator) -> None:
    from diffusers import ZImagePipeline

    zimage.generate(PROMPT, 64, 48, seed=1, params=GenParams(pose=[standing_person()]))
    base = zimage.local.get(ZImagePipeline)
    name = f"controlnet:{zimage.cfg.controlnet}"
    variant = zimage.local.get(variant=name)
    assert variant.transformer is base.transformer and variant.vae is base.vae
    assert variant.controlnet.t_embedder is base.transformer.t_embedder  # from_transformer sharing


def test_single_file_controlnet_loads_with_a_local_config(
    cpu_cfg: Callable[..., Any], tiny_zimage: Path, tiny_controlnet: Path, zimage: ZImageGenerator
) -> None:
    single = build_generator(cpu_cfg(GeneratorConfig, tiny_zimage,
                                     controlnet=str(tiny_controlnet / "diffusion_pytorch_model.safetensors"),
                                     controlnet_config=str(tiny_controlnet)), ModelPool(device="cpu"))
    params = GenParams(pose=[standing_person()])
    assert np.array_equal(pixels(single.generate(PROMPT, 64, 48, seed=5, params=params)),
                          pixels(zimage.generate(PROMPT, 64, 48, seed=5, params=params)))
    no_config = build_generator(cpu_cfg(GeneratorConfig, tiny_zimage,
                                        controlnet=str(tiny_controlnet / "diffusion_pytorch_model.safetensors")),
                                ModelPool(device="cpu"))
    with pytest.raises(DiffusionError, match="needs `controlnet_config`"):
        no_config.generate(PROMPT, 64, 48, seed=5, params=params)


def test_attention_backend_is_set_on_the_transformer(cpu_cfg: Callable[..., Any], tiny_zimage: Path) -> None:
    from diffusers import ZImagePipeline

    gen = build_generator(cpu_cfg(GeneratorConfig, tiny_zimage, attention_backend="native"), ModelPool("cpu"))
    assert gen.generate(PROMPT, 32, 32, seed=1).size == (32, 32)
    transformer = gen.local.get(ZImagePipeline).transformer
    backends = {getattr(m.processor._attention_backend, "value", None) for m in transformer.modules()
                if hasattr(getattr(m, "processor", None), "_attention_backend")}
    assert backends == {"native"}  # every attention processor of the transformer uses the chosen kernel
    bad = build_generator(cpu_cfg(GeneratorConfig, tiny_zimage, attention_backend="no-such-kernel"),
                          ModelPool("cpu"))
    with pytest.raises(DiffusionError, match="no-such-kernel"):
        bad.generate(PROMPT, 32, 32, seed=1)
