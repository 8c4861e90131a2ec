"""The final image's provenance and canvas: chunks on every round image, kept by the submission copy (a JPEG's
in its COM segment), and the planned size reached by downscaling or a refiner that does not smear."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from generate_fixtures import ScriptedDrawer
from PIL import Image, ImageFilter
from scipy import ndimage
from test_generate_graph import rows_by_id, run

from portraitcraft.graphs.generate_steps import _to_canvas
from portraitcraft.schemas import Track2Spec
from portraitcraft.tools.diffusion.metadata import META_KEY, ImageMeta, attach_meta
from portraitcraft.tools.provenance import (
    REFRAME_KEY,
    copy_with_provenance,
    read_provenance,
    save_with_provenance,
)


def photo(size: tuple[int, int]) -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut()).resize(size, Image.Resampling.LANCZOS)


def textured(width: int = 96, height: int = 64, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))


def test_every_copy_keeps_the_chunks(tmp_path: Path) -> None:
    img = attach_meta(textured(), ImageMeta(backend="zimage-turbo", model="m", prompt="a portrait", seed=7,
                                            width=96, height=64))
    record = {"source": "items/a/round_0.png", "mirrored": True, "crop_box": [1, 2, 3, 4]}
    png = save_with_provenance(img, tmp_path / "round_1.png", {REFRAME_KEY: record})
    chunks = read_provenance(png)
    assert json.loads(chunks[REFRAME_KEY]) == record and json.loads(chunks[META_KEY])["seed"] == 7
    assert chunks["parameters"].startswith("a portrait")
    for name in ("sub.png", "sub.jpg", "sub.jpeg", "sub.webp"):
        out = copy_with_provenance(png, tmp_path / name)
        assert read_provenance(out) == chunks, name
    assert (tmp_path / "sub.png").read_bytes() == png.read_bytes()  # same format: the bytes as they are
    with Image.open(tmp_path / "sub.jpg") as jpg:
        assert jpg.format == "JPEG" and json.loads(jpg.info["comment"])[REFRAME_KEY] == json.dumps(record)
    assert read_provenance(copy_with_provenance(tmp_path / "sub.jpg", tmp_path / "again.jpg")) == chunks


class MetaDrawer(ScriptedDrawer):
    """Painted drafts that carry their generation parameters, as the real backends attach them."""

    async def generate(self, prompt: str, width: int, height: int, seed: int, **kw: Any) -> Image.Image:
        img = await super().generate(prompt, width, height, seed, **kw)
        return attach_meta(img, ImageMeta(backend="zimage-turbo", model="tiny", prompt=prompt, seed=seed,
                                          width=width, height=height))


async def test_round_images_and_a_jpeg_submission_carry_the_parameters(tmp_path: Path) -> None:
    spec = Track2Spec(image_path="images_00/x.jpg", content="a woman", composition="left third")
    _, folder = await run(tmp_path, [spec], MetaDrawer(drafts=[0.25]), sections={"critic": {"geometry": True}})
    row = rows_by_id(folder)["x"]
    assert row["passed"] and row["final_image"].endswith("x.jpg")
    draft = read_provenance(folder.root / row["history"][0]["image"])
    assert json.loads(draft[META_KEY])["seed"] == row["history"][0]["seed"]
    submitted = folder.root / row["final_image"]
    with Image.open(submitted) as im:
        assert im.format == "JPEG"
    assert read_provenance(submitted) == draft


class Refiner:
    def __init__(self, blur: float) -> None:
        self.blur, self.calls = blur, 0

    async def refine(self, image: Image.Image, prompt: str, *, seed: int, item_id: str | None) -> Image.Image:
        self.calls += 1
        if self.blur:  # a smearing pass
            return image.filter(ImageFilter.GaussianBlur(self.blur))
        return photo(image.size)  # a pass that draws the fine detail back


def ctx_with(refiner: Refiner | None) -> Any:
    generator = SimpleNamespace(refiner=SimpleNamespace(model="tiny-refiner") if refiner else None,
                                refiner_strength=0.3)
    return SimpleNamespace(cfg=SimpleNamespace(generator=generator), drawer=refiner or object())


@pytest.mark.parametrize(("crop", "refiner", "size", "how"), [
    ((192, 128), None, (96, 64), "downscaled from 192x128"),
    ((60, 40), None, (60, 40), "kept 60x40 (smaller than the planned 96x64; no refiner)"),
    ((60, 40), Refiner(0), (96, 64), "refined from 60x40 with tiny-refiner at strength 0.3"),
    ((60, 40), Refiner(3), (60, 40), "kept 60x40: the refiner's 96x64 kept only"),
])
async def test_the_planned_size_without_a_blind_upscale(crop, refiner, size, how) -> None:
    image = photo(crop)
    out, done = await _to_canvas(ctx_with(refiner), image, {"width": 96, "height": 64, "prompt": "p"}, seed=1,
                                 item_id="a")
    assert out.size == size and done.startswith(how)
    if size == crop:
        assert np.array_equal(np.asarray(out), np.asarray(image))  # its own pixels, untouched


class OutpaintDrawer(ScriptedDrawer):
    """Fills a pad with photo-like grain (the lane's inpaint job in the real Drawer)."""

    def __init__(self) -> None:
        super().__init__()
        self.outpaints: list[tuple[tuple[int, int], int]] = []

    async def outpaint(self, image: Image.Image, mask: Image.Image, prompt: str, *, seed: int,
                       item_id: str | None) -> Image.Image:
        self.outpaints.append((image.size, seed))
        rng = np.random.default_rng(seed)
        grain = np.clip(rng.normal(90, 30, (image.height, image.width, 3)), 0, 255).astype(np.uint8)
        return Image.composite(Image.fromarray(grain), image, mask)


async def test_the_loop_pads_with_the_editor_model_only_when_asked(tmp_path: Path) -> None:
    pytest.importorskip("mediapipe")
    import matplotlib.cbook as cbook

    from portraitcraft.agents.planner.targets import extract_targets

    init = tmp_path / "init"
    init.mkdir()
    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as im:
        source = im.convert("RGB")
    source.save(init / "grace_hopper.png")
    spec = Track2Spec(image_path="grace_hopper.png", content="A naval officer, a head-and-shoulders portrait.",
                      composition="The officer is placed on the left third of a square frame.")
    drawer = OutpaintDrawer()
    _, folder = await run(tmp_path, [spec], drawer, init_images=init, analyze=None, geometry=None, reframe=True,
                          targets=extract_targets(spec.content, spec.composition),
                          sections={"critic": {"geometry": True}, "planner": {"long_side": 512},
                                    "editor": {"outpaint": True, "model": "tiny-inpaint"}, "loop": {"max_rounds": 1}})
    row = rows_by_id(folder)["grace_hopper"]
    reframed = row["history"][1]
    record = reframed["reframe"]
    assert reframed["made_by"] == "reframe" and len(drawer.outpaints) >= 1
    assert record["fill"] == "tiny-inpaint" and record["padding"][2] > 0 and not record["needs_outpainting"]
    with Image.open(folder.root / record["pad_mask"]) as mask, Image.open(folder.root / reframed["image"]) as im:
        assert mask.size == tuple(record["size"]) == im.size
        assert json.loads(im.info[REFRAME_KEY])["fill"] == "tiny-inpaint"
        x0, y0, x1, y1 = record["crop_box"]
        left, top = record["padding"][:2]
        canvas = Image.new("RGB", (x1 - x0, y1 - y0))
        canvas.paste(source.crop((max(0, x0), max(0, y0), min(source.width, x1), min(source.height, y1))),
                     (left, top))
        expected = np.asarray(canvas.resize(im.size, Image.Resampling.LANCZOS), float)
        inside = ndimage.binary_erosion(np.asarray(mask) < 128, iterations=3)
        assert inside.mean() > 0.5 and (~inside).mean() > 0.1  # the pad is recorded where it is
        diff = np.abs(expected - np.asarray(im.convert("RGB"), float))[inside]
        assert diff.mean() < 1.0  # outside the pad: the photo's own pixels (downscaled), untouched by the model
