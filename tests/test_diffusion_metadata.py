"""PNG metadata and per-call params (no torch needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from portraitcraft.errors import DataError, InputError
from portraitcraft.tools.diffusion import GenParams, ImageMeta, attach_meta, meta_of, read_png_meta, save_png
from portraitcraft.tools.diffusion.base import check_seed, check_size
from portraitcraft.tools.diffusion.metadata import LoraMeta


def full_meta() -> ImageMeta:
    refiner = ImageMeta(backend="img2img", model="Tongyi-MAI/Z-Image-Turbo", prompt="p", seed=3, steps=8,
                        guidance_scale=0.0, strength=0.3, width=832, height=1216, instruction="p",
                        source_size=(832, 1216))
    return ImageMeta(
        backend="zimage", model="Tongyi-MAI/Z-Image", prompt="a woman on the left third, facing right",
        negative_prompt="blurry, extra fingers", seed=3, steps=50, guidance_scale=4.0, width=832, height=1216,
        loras=[LoraMeta(name="dpo", path="/loras/dpo.safetensors", weight=0.8)], controlnet="/cn.safetensors",
        controlnet_scale=0.75, refiner=refiner, extra={"note": "ünïcode ✓"},
    )


def test_png_round_trip_keeps_every_field(tmp_path: Path) -> None:
    meta = full_meta()
    image = attach_meta(Image.new("RGB", (32, 48), (1, 2, 3)), meta)
    path = save_png(image, tmp_path / "nested" / "x.png")
    assert read_png_meta(path) == meta
    with Image.open(path) as reopened:
        assert meta_of(reopened) == meta
        assert reopened.getpixel((0, 0)) == (1, 2, 3)
    assert [p.name for p in path.parent.iterdir()] == ["x.png"]  # no temp file left


def test_a1111_parameters_text_is_what_viewers_expect() -> None:
    text = full_meta().a1111_text()
    prompt, negative, pairs = text.split("\n")
    assert prompt == "a woman on the left third, facing right"
    assert negative == "Negative prompt: blurry, extra fingers"
    assert "Steps: 50" in pairs and "CFG scale: 4.0" in pairs and "Seed: 3" in pairs and "Size: 832x1216" in pairs
    assert "Lora hashes: dpo: 0.8" in pairs


def test_explicit_meta_wins_over_the_attached_one(tmp_path: Path) -> None:
    image = attach_meta(Image.new("RGB", (8, 8)), full_meta())
    other = full_meta().model_copy(update={"seed": 99})
    assert read_png_meta(save_png(image, tmp_path / "a.png", other)).seed == 99


def test_reading_an_image_without_metadata_names_the_file(tmp_path: Path) -> None:
    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(plain)
    with pytest.raises(DataError, match=r"plain\.png: has no `portraitcraft`"):
        read_png_meta(plain)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(DataError, match="not a readable image"):
        read_png_meta(broken)
    assert meta_of(Image.new("RGB", (4, 4))) is None


def test_params_merge_keeps_unset_fields_and_merges_extra() -> None:
    base = GenParams(steps=9, guidance_scale=0.0, negative_prompt=" ", extra={"a": 1, "b": 2})
    merged = base.merged(GenParams(steps=4, extra={"b": 3}))
    assert (merged.steps, merged.guidance_scale, merged.negative_prompt) == (4, 0.0, " ")
    assert merged.extra == {"a": 1, "b": 3}
    assert base.merged(None) is base


def test_check_size_names_the_size_and_the_multiple() -> None:
    check_size(832, 1216, 16, model="m")
    with pytest.raises(InputError, match=r"830x1216 .* multiples of 16"):
        check_size(830, 1216, 16, model="m")
    with pytest.raises(InputError, match="0x16"):
        check_size(0, 16, 16, model="m")


@pytest.mark.parametrize(("field", "value"), [
    ("steps", 0), ("steps", 2.5), ("strength", 0.0), ("strength", 1.5), ("guidance_scale", -1.0),
    ("true_cfg_scale", -0.1), ("max_sequence_length", 0), ("width", -16), ("height", "48"), ("steps", True),
])
def test_gen_params_refuse_values_no_pipeline_accepts(field: str, value: object) -> None:
    with pytest.raises(InputError, match=rf"generation parameter {field}=.* is not valid"):
        GenParams(**{field: value})


def test_seeds_are_checked_against_the_generator_range() -> None:
    assert check_seed(-(2**63)) == -(2**63) and check_seed(2**64 - 1) == 2**64 - 1
    for bad in (2**64, -(2**63) - 1, 1.5, "7", None):
        with pytest.raises(InputError, match="is not valid"):
            check_seed(bad)  # type: ignore[arg-type]
