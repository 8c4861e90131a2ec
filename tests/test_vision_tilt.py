"""People at any tilt: the pose retry on turned images (tools/vision/pose.py), on real photos and models."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from vision_fixtures import PERSON_PHOTOS, analyzed, load, photos  # noqa: F401

from portraitcraft.config import VisionConfig


def turned(img: Image.Image, clockwise: int) -> Image.Image:
    return img.rotate(-clockwise, resample=Image.Resampling.BILINEAR, expand=True, fillcolor=(128, 128, 128))


def test_unrotate_points_inverts_the_turn() -> None:
    from portraitcraft.tools.vision.pose import rotate_rgb, unrotate_points

    rgb = np.zeros((40, 100, 3), np.uint8)
    rgb[18:22, 90:94] = 255  # a white dot centred at (92, 20)
    for angle in (90.0, 30.0, -15.0):
        out = rotate_rgb(rgb, angle)
        ys, xs = np.nonzero(out[..., 0] > 200)
        back = unrotate_points(np.array([[xs.mean() + 0.5, ys.mean() + 0.5]]), angle, (100, 40),
                               (out.shape[1], out.shape[0]))
        assert np.allclose(back, [[92, 20]], atol=1.0)


def test_the_camera_photo_turned_10_degrees_needs_the_retry(photos, monkeypatch) -> None:  # noqa: F811
    from portraitcraft.tools.vision import pose

    rgb = np.asarray(turned(load(photos["camera"]), 10))
    found = pose.detect_persons(rgb, VisionConfig())
    assert found and found[0].keypoints["nose"][2] > 0.5
    x, y = found[0].keypoints["nose"][:2]
    assert 0 < x < 1 and 0 < y < 1  # mapped back into this picture's frame
    monkeypatch.setattr(pose, "RETRY_ANGLES", ())
    assert pose.detect_persons(rgb, VisionConfig()) == []  # mediapipe alone misses him


@pytest.mark.parametrize("name", PERSON_PHOTOS)
def test_a_turned_person_is_found_with_the_tilt_of_the_turn(name, photos, analyzed) -> None:  # noqa: F811
    from portraitcraft.tools.vision import analyze

    img = load(photos[name])
    base = analyzed(name).subject.tilt_deg
    assert base is not None
    for clockwise in (-30, -10, 10, 30):
        s = analyze(turned(img, clockwise)).subject
        assert s is not None and s.tilt_deg is not None, (name, clockwise)
        delta = s.tilt_deg - base
        assert np.sign(delta) == np.sign(clockwise) and abs(delta) > 0.5 * abs(clockwise), (name, clockwise, delta)


@pytest.mark.parametrize("colour", [(10, 0, 0), (40, 0, 0), (128, 128, 128), (250, 250, 250)])
def test_a_flat_picture_never_gets_a_person_from_the_tilt_retry(colour: tuple[int, int, int]) -> None:
    """Turned, a flat picture shows the turn's fill corners; the retry must not invent a person there (a nearly
    black 64 px square did before the contrast guard)."""
    from portraitcraft.tools.vision.pose import detect_persons

    rgb = np.zeros((64, 64, 3), np.uint8) + np.array(colour, np.uint8)
    assert detect_persons(rgb) == []
