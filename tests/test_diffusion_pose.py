"""The OpenPose-style skeleton renderer (control images for the pose ControlNet); no torch needed."""

from __future__ import annotations

import numpy as np
import pytest

from portraitcraft.errors import InputError
from portraitcraft.tools.pose_render import OPENPOSE_COLOURS, render_pose, to_openpose18


def person(score: float = 1.0) -> np.ndarray:
    kp = np.zeros((17, 3))
    kp[:, 2] = score
    kp[0, :2] = (50, 20)  # nose
    kp[5, :2] = (40, 40)  # left shoulder
    kp[6, :2] = (60, 40)  # right shoulder
    kp[7, :2] = (30, 60)  # left elbow
    kp[9, :2] = (25, 80)  # left wrist
    kp[1:5, 2] = 0.0  # eyes / ears not seen
    kp[8:, 2] = 0.0
    kp[9, 2] = score
    kp[7, 2] = score
    return kp


def test_joints_are_drawn_in_their_openpose_colour_at_their_place() -> None:
    image = render_pose(person(), 100, 120)
    assert image.size == (100, 120) and image.mode == "RGB"
    assert image.getpixel((50, 20)) == OPENPOSE_COLOURS[0]  # nose
    assert image.getpixel((50, 40)) == OPENPOSE_COLOURS[1]  # neck = shoulders' midpoint
    assert image.getpixel((60, 40)) == OPENPOSE_COLOURS[2]  # right shoulder
    assert image.getpixel((40, 40)) == OPENPOSE_COLOURS[5]  # left shoulder
    assert image.getpixel((25, 80)) == OPENPOSE_COLOURS[7]  # left wrist
    assert image.getpixel((90, 110)) == (0, 0, 0)  # background
    # the limb left elbow -> left wrist (OpenPose limb 5) runs half-way in its dimmed colour
    dimmed = tuple(int(c * 0.6) for c in OPENPOSE_COLOURS[5])
    assert dimmed in {image.getpixel((x, 70)) for x in range(25, 31)}


def test_low_scored_points_and_their_limbs_are_not_drawn() -> None:
    kp = person()
    kp[9, 2] = 0.1  # left wrist unsure
    image = render_pose(kp, 100, 120)
    assert image.getpixel((25, 80)) == (0, 0, 0)
    assert {image.getpixel((x, 70)) for x in range(25, 31)} == {(0, 0, 0)}
    points = to_openpose18(kp, 0.3)
    assert points[7] is None and points[6] == (30.0, 60.0)


def test_neck_needs_both_shoulders() -> None:
    kp = person()
    kp[6, 2] = 0.0
    assert to_openpose18(kp, 0.3)[1] is None


def test_several_people_and_scaling_from_the_source_image() -> None:
    a, b = person(), person()
    b[:, 0] += 100
    image = render_pose(np.stack([a, b])[..., :2], 100, 60, source_size=(200, 120))  # (x, y) only: score 1
    assert image.getpixel((25, 10)) == OPENPOSE_COLOURS[0]
    assert image.getpixel((75, 10)) == OPENPOSE_COLOURS[0]


@pytest.mark.parametrize("bad", [np.zeros((16, 3)), np.zeros((2, 17, 4)), [["a"] * 3] * 17])
def test_malformed_keypoints_are_refused(bad: object) -> None:
    with pytest.raises(InputError, match="keypoints"):
        render_pose(bad, 64, 48)


def test_non_finite_points_and_bad_sizes_are_refused() -> None:
    kp = person()
    kp[0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        render_pose(kp, 64, 48)
    with pytest.raises(InputError, match="0x48"):
        render_pose(person(), 0, 48)
