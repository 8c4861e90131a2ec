"""Region fidelity metrics against scikit-image and colour-science references, and `eval fidelity` --json."""

from __future__ import annotations

import json
import math
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.color import rgb2lab
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from typer.testing import CliRunner

from portraitcraft.cli import app
from portraitcraft.errors import InputError
from portraitcraft.tools import fidelity
from portraitcraft.tools.colour_difference import ciede2000, srgb_to_lab
from portraitcraft.tools.fidelity import edit_drift, psnr, ssim
from portraitcraft.tools.vision import models

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # colour-science warns that matplotlib is missing
    import colour


def tied_image(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Few distinct values (many ties, flat patches) plus some full-range pixels."""
    img = rng.choice(np.array([0, 64, 128, 255], dtype=np.uint8), size=shape)
    noisy = rng.random(shape[:2]) < 0.3
    img[noisy] = rng.integers(0, 256, size=(int(noisy.sum()), *shape[2:]), dtype=np.uint8)
    return img


def person_mask(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return ((yy - h / 2) / (h / 3)) ** 2 + ((xx - w / 2) / (w / 4)) ** 2 <= 1


@pytest.mark.parametrize("shape", [(37, 53, 3), (40, 40)])
def test_psnr_and_ssim_match_scikit_image(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(3)
    a = tied_image(rng, shape)
    b = np.clip(a.astype(int) + rng.choice([-9, 0, 0, 4], size=shape), 0, 255).astype(np.uint8)
    region = ~person_mask(*shape[:2])
    assert psnr(a, b, region) == pytest.approx(peak_signal_noise_ratio(a[region], b[region], data_range=255))
    assert psnr(a, b) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255))
    reference = structural_similarity(
        a, b, data_range=255, channel_axis=-1 if len(shape) == 3 else None,
        gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    )
    assert ssim(a, b) == pytest.approx(reference, abs=1e-10)
    assert ssim(a, a) == pytest.approx(1.0)


def test_lab_conversion_matches_scikit_image() -> None:
    rng = np.random.default_rng(5)
    rgb = tied_image(rng, (32, 32, 3))
    assert np.abs(srgb_to_lab(rgb) - rgb2lab(rgb)).max() < 1e-3


def test_ciede2000_matches_colour_science_including_hard_cases() -> None:
    rng = np.random.default_rng(11)
    lab1 = srgb_to_lab(tied_image(rng, (24, 24, 3)))
    lab2 = srgb_to_lab(tied_image(rng, (24, 24, 3)))
    edge1 = np.array([[50, 0, 0], [50, 2.5, 0], [60, -30, 0.1], [50, 2.49, -0.001], [20, 0, 0]], dtype=float)
    edge2 = np.array([[50, -1, 2], [50, 0, -2.5], [60, -30, -0.1], [50, -2.49, 0.0009], [20, 0, 0]], dtype=float)
    for x, y in ((lab1, lab2), (edge1, edge2), (lab1, lab1)):
        np.testing.assert_allclose(ciede2000(x, y), colour.delta_E(x, y, method="CIE 2000"), atol=1e-9)
    # Sharma et al. (2005), Table 1, pair 1
    assert float(ciede2000(np.array([50.0, 2.6772, -79.7751]), np.array([50.0, 0.0, -82.7485]))) == \
        pytest.approx(2.0425, abs=1e-4)


def test_edit_drift_measures_each_region_separately() -> None:
    rng = np.random.default_rng(2)
    before = tied_image(rng, (48, 64, 3))
    mask = person_mask(48, 64)
    after = before.copy()
    after[mask] = np.clip(after[mask].astype(int) + 20, 0, 255)  # only the person changed
    rep = edit_drift(before, after, mask.astype(np.uint8) * 255)
    assert math.isinf(rep.psnr_background)
    a_lab, b_lab = srgb_to_lab(before[mask]), srgb_to_lab(after[mask])
    assert rep.delta_e_person == pytest.approx(float(colour.delta_E(a_lab, b_lab, method="CIE 2000").mean()))
    assert rep.ssim_global < 1.0 and rep.person_fraction == pytest.approx(mask.mean())
    data = rep.to_dict()
    assert data["psnr_background"] is None and any("identical" in n for n in data["notes"])
    json.dumps(data)  # strict-JSON safe

    after2 = before.copy()
    after2[~mask] = 255 - after2[~mask]  # only the background changed
    rep2 = edit_drift(before, after2, mask)
    assert rep2.delta_e_person == 0.0 and rep2.psnr_background < 10


def test_empty_mask_size_mismatch_and_resize() -> None:
    rng = np.random.default_rng(4)
    a = tied_image(rng, (32, 32, 3))
    empty = edit_drift(a, a, np.zeros((32, 32), dtype=np.uint8))
    assert empty.delta_e_person is None and empty.lpips_person is None and empty.notes
    with pytest.raises(InputError, match="does not match the image size"):
        edit_drift(a, a, np.zeros((16, 32), dtype=np.uint8))
    bigger = np.asarray(Image.fromarray(a).resize((64, 64)))
    with pytest.raises(InputError, match="differs from before"):
        edit_drift(a, bigger, np.ones((32, 32), dtype=bool))
    resized = edit_drift(a, bigger, np.ones((32, 32), dtype=bool), resize=True)
    with pytest.raises(InputError, match="8x10 images are too small"):
        edit_drift(a[:10, :8], a[:10, :8], np.ones((10, 8), dtype=bool))
    assert resized.psnr_background is None and resized.delta_e_person is not None


def test_lpips_is_reported_unavailable_not_faked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "lpips", None)  # an import of lpips now fails
    models.clear()
    try:
        a = np.full((40, 40, 3), 100, dtype=np.uint8)
        rep = edit_drift(a, a, np.ones((40, 40), dtype=bool))
    finally:
        models.clear()
    assert rep.lpips_person is None and rep.lpips_status.startswith("unavailable: the lpips package")


def test_lpips_without_backbone_weights_is_unavailable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "lpips", types.ModuleType("lpips"))  # importable, never loaded
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    models.clear()
    try:
        value, status = fidelity.lpips_region(np.zeros((40, 40, 3)), np.zeros((40, 40, 3)), np.ones((40, 40), bool))
    finally:
        models.clear()
    assert value is None
    assert status.startswith("unavailable: the AlexNet backbone weights") and str(tmp_path) in status


def test_cli_fidelity_json(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    a = tied_image(rng, (30, 40, 3))
    b = a.copy()
    b[:5] = 0
    mask = np.zeros((30, 40), dtype=np.uint8)
    mask[10:25, 10:30] = 255
    for name, arr in (("a.png", a), ("b.png", b), ("m.png", mask)):
        Image.fromarray(arr).save(tmp_path / name)
    res = CliRunner().invoke(app, ["eval", "fidelity", str(tmp_path / "a.png"), str(tmp_path / "b.png"),
                                   "--mask", str(tmp_path / "m.png"), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    bg = mask == 0
    assert out["psnr_background"] == pytest.approx(peak_signal_noise_ratio(a[bg], b[bg], data_range=255))
    assert out["delta_e_person"] == 0.0 and out["lpips_status"].startswith("unavailable")
    missing = CliRunner().invoke(app, ["eval", "fidelity", str(tmp_path / "a.png"), str(tmp_path / "nope.png"),
                                       "--mask", str(tmp_path / "m.png")])
    assert missing.exit_code != 0 and "nope.png" in str(missing.exception)
