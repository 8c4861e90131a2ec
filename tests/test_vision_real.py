"""The vision tools on real photos through the real mediapipe models (bundled weights, CPU)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageOps
from vision_fixtures import PERSON_PHOTOS, analyzed, load, pad, photos  # noqa: F401

from portraitcraft.schemas import CROP_LEVELS
from portraitcraft.tools.images import ImageError

SWAP = {"left": "right", "right": "left", "camera": "camera", None: None}


def test_importing_the_vision_code_and_the_cli_loads_no_model() -> None:
    code = ("import sys, portraitcraft.tools.vision, portraitcraft.agents.geometry_critic, "
            "portraitcraft.agents.reframe, portraitcraft.cli; "
            "from portraitcraft.tools.vision import models; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('mediapipe', 'torch', 'rtmlib', 'onnxruntime')]; "
            "assert not bad and not models.loaded(), bad; print('clean')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0 and "clean" in out.stdout, out.stderr


@pytest.mark.parametrize("name", PERSON_PHOTOS)
def test_horizontal_flip_mirrors_centroid_shoulders_facing_and_gaze(name, photos, analyzed) -> None:  # noqa: F811
    plain = analyzed(name)
    flipped = analyzed(name, "flip", ImageOps.mirror(load(photos[name])))
    a, b = plain.subject, flipped.subject
    assert a is not None and b is not None
    assert b.centroid[0] == pytest.approx(1 - a.centroid[0], abs=0.04)
    assert b.facing == SWAP[a.facing]
    assert b.gaze == SWAP[a.gaze]
    # anatomy: the subject's left shoulder in the mirror sits where the right one was, mirrored
    right_before = plain.persons[0].keypoints["right_shoulder"]
    left_after = flipped.persons[0].keypoints["left_shoulder"]
    left_before = plain.persons[0].keypoints["left_shoulder"]
    assert left_after[0] == pytest.approx(1 - right_before[0], abs=0.05)
    assert left_after[1] == pytest.approx(right_before[1], abs=0.05)
    assert abs(left_after[0] - (1 - right_before[0])) < abs(left_after[0] - (1 - left_before[0])) / 3


def test_camera_man_faces_and_looks_to_the_viewers_right(analyzed) -> None:  # noqa: F811
    s = analyzed("camera").subject
    assert s.facing == "right" and s.gaze == "right" and s.horizontal == "left"
    assert s.crop_level == "three-quarter"


@pytest.mark.parametrize(("side", "expected"), [("right", "left"), ("left", "right")])
def test_a_wide_blank_pad_on_one_side_moves_the_subjects_third(side, expected, photos, analyzed) -> None:  # noqa: F811
    img = load(photos["grace_hopper"])
    before = analyzed("grace_hopper").subject
    assert before.horizontal == "center"
    width = img.width
    padded = pad(img, left=width if side == "left" else 0, right=width if side == "right" else 0)
    after = analyzed("grace_hopper", f"pad-{side}", padded).subject
    assert after is not None and after.horizontal == expected
    shifted = before.centroid[0] / 2 + (0.5 if side == "left" else 0.0)
    assert after.centroid[0] == pytest.approx(shifted, abs=0.05)


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
@pytest.mark.parametrize("angle", [15, -15])
def test_rotation_changes_tilt_by_about_the_angle_with_its_sign(name, angle, photos, analyzed) -> None:  # noqa: F811
    img = load(photos[name])
    # PIL rotates counter-clockwise: -angle turns the picture `angle` degrees clockwise
    rotated = img.rotate(-angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(128, 128, 128))
    before = analyzed(name).subject.tilt_deg
    after = analyzed(name, f"rot{angle}", rotated).subject.tilt_deg
    assert before is not None and after is not None
    assert after - before == pytest.approx(angle, abs=6)


@pytest.mark.parametrize("name", ["camera", "astronaut"])
def test_a_tighter_crop_never_gives_a_looser_crop_level(name, photos, analyzed) -> None:  # noqa: F811
    img = load(photos[name])
    levels = [analyzed(name).subject.crop_level]
    for keep in (0.8, 0.6, 0.45):
        crop = img.crop((0, 0, img.width, round(img.height * keep)))
        s = analyzed(name, f"crop{keep}", crop).subject
        levels.append(s.crop_level if s else None)
    ranks = [CROP_LEVELS.index(v) for v in levels if v is not None]
    assert ranks == sorted(ranks, reverse=True), levels
    assert ranks[0] > ranks[-1], levels  # cropping did tighten it


def test_the_no_person_photo_gives_no_subject(analyzed) -> None:  # noqa: F811
    a = analyzed("coffee")
    assert a.persons == [] and a.subject is None and a.mask is None
    assert a.to_json() == {"width": 600, "height": 400, "persons": [], "subject": None}


def test_a_corrupt_file_is_a_clear_error(tmp_path: Path) -> None:
    from portraitcraft.tools.vision import analyze

    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(ImageError, match=r"broken\.png"):
        analyze(bad)


def test_json_has_the_contract_keys_and_normalised_coordinates(analyzed) -> None:  # noqa: F811
    data = analyzed("astronaut").to_json()
    assert set(data) == {"width", "height", "persons", "subject"}
    assert set(data["subject"]) == {"box", "centroid", "face_center", "horizontal", "vertical", "thirds_distance",
                                    "headroom", "crop_level", "facing", "gaze", "tilt_deg", "people"}
    person = data["persons"][0]
    assert set(person) == {"box", "score", "keypoints"} and len(person["keypoints"]) == 17
    assert all(0 <= v <= 1 for v in person["box"] + data["subject"]["box"] + data["subject"]["centroid"])
    assert data["subject"]["people"] == 1


def test_concurrent_calls_share_the_models_and_agree(photos) -> None:  # noqa: F811
    from concurrent.futures import ThreadPoolExecutor

    from portraitcraft.tools.vision import analyze, models

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: analyze(photos["grace_hopper"]).to_json(), range(3)))
    assert results[0] == results[1] == results[2]
    keys = [k for k in models.loaded() if k[0] == "mediapipe"]
    assert len(keys) == len(set(keys)) >= 4


def test_people_are_counted_with_the_face_detector(photos, analyzed) -> None:  # noqa: F811
    import numpy as np

    left, right = load(photos["astronaut"]), load(photos["grace_hopper"]).resize((512, 600))
    pair = Image.new("RGB", (1024, 600), (128, 128, 128))
    pair.paste(left, (0, 44))
    pair.paste(right, (512, 0))
    a = analyzed("pair", "plain", pair)
    assert a.subject is not None and a.subject.people == 2 and len(a.faces) == 2
    assert len(a.persons) == 1  # mediapipe's pose model poses one person
    assert np.isfinite(a.subject.centroid).all()
