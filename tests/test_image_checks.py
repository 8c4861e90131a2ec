"""Model-free checks: sharpness (variance of the Laplacian), clipped highlights/shadows, horizon tilt."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from portraitcraft.tools.image_checks import measure, verdicts


def horizon(angle: float) -> Image.Image:
    sky_sea = np.zeros((200, 300), np.uint8)
    sky_sea[:100] = 60
    sky_sea[100:] = 180
    return Image.fromarray(sky_sea).rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=120)


def test_horizon_tilt_is_measured_with_its_sign() -> None:
    level, tilted, other_way = measure(horizon(0)), measure(horizon(6)), measure(horizon(-4))
    assert abs(level.tilt_deg) < 1 and level.line_strength > 0.5
    assert 4.5 < tilted.tilt_deg < 7.5 and -5.5 < other_way.tilt_deg < -2.5
    by_check = {v.check: v for v in verdicts(tilted, min_sharpness=1, max_clipped=0.5, max_tilt_deg=2)}
    assert by_check["horizon_tilt"].detected and "degrees" in by_check["horizon_tilt"].evidence
    assert not {v.check: v for v in verdicts(level, min_sharpness=1, max_clipped=0.5,
                                             max_tilt_deg=2)}["horizon_tilt"].detected


def test_sharpness_and_clipping() -> None:
    rng = np.random.default_rng(0)
    texture = Image.fromarray(rng.integers(40, 215, (128, 128, 3), dtype=np.uint8))
    sharp, soft = measure(texture), measure(texture.filter(ImageFilter.GaussianBlur(6)))
    assert sharp.sharpness > 100 * soft.sharpness
    blown = np.full((64, 64, 3), 255, np.uint8)
    blown[:16] = 90
    checks = measure(Image.fromarray(blown))
    assert checks.clipped_highlights == 0.75 and checks.clipped_shadows == 0.0
    exposure = {v.check: v for v in verdicts(checks, min_sharpness=0, max_clipped=0.25, max_tilt_deg=2)}["exposure"]
    assert exposure.detected and "highlights" in exposure.evidence
