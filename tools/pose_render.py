"""Render COCO-17 keypoints as an OpenPose-style skeleton image (the control image of a pose ControlNet).

Pose ControlNets (Z-Image Fun-Controlnet-Union among them) were trained on OpenPose renderings: 18 body
points (COCO-17 plus a neck at the shoulders' midpoint), one fixed colour per limb and per joint, black
background. This module draws that from COCO-17 keypoints with PIL.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from portraitcraft.errors import InputError

COCO17_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee",
    "left_ankle", "right_ankle",
)
# OpenPose-18 order, as indices into COCO-17; index 1 (neck) is derived from the shoulders.
_OPENPOSE_FROM_COCO = (0, None, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3)
# OpenPose limbs over the 18 points, and the colour of each limb / joint.
OPENPOSE_LIMBS = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13),
    (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)
OPENPOSE_COLOURS = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0), (0, 255, 0),
    (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255),
    (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)


def _as_people(keypoints: object) -> np.ndarray:
    """(P, 17, 3) float array: x, y, score (score 1 when only x, y were given)."""
    try:
        arr = np.asarray(keypoints, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError("pose keypoints must be numbers shaped (17, 2|3) or (people, 17, 2|3)") from None
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1] != 17 or arr.shape[2] not in (2, 3):
        raise InputError(f"pose keypoints have shape {arr.shape}; expected (17, 2|3) or (people, 17, 2|3)")
    if arr.shape[2] == 2:
        arr = np.concatenate([arr, np.ones((*arr.shape[:2], 1))], axis=2)
    if not np.isfinite(arr).all():
        raise InputError("pose keypoints contain NaN or infinite values")
    return arr


def to_openpose18(person: np.ndarray, min_score: float) -> list[tuple[float, float] | None]:
    """One person's COCO-17 rows -> 18 OpenPose points (None where the score is below `min_score`)."""
    points: list[tuple[float, float] | None] = []
    for coco in _OPENPOSE_FROM_COCO:
        if coco is None:  # neck: midpoint of both shoulders when both are visible
            ls, rs = person[5], person[6]
            ok = ls[2] >= min_score and rs[2] >= min_score
            points.append(((ls[0] + rs[0]) / 2, (ls[1] + rs[1]) / 2) if ok else None)
        else:
            x, y, score = person[coco]
            points.append((float(x), float(y)) if score >= min_score else None)
    return points


def render_pose(
    keypoints: Sequence[object] | np.ndarray,
    width: int,
    height: int,
    *,
    source_size: tuple[int, int] | None = None,
    min_score: float = 0.3,
    line_width: int | None = None,
    radius: int | None = None,
) -> Image.Image:
    """Draw one or more COCO-17 skeletons, OpenPose style, on a black RGB canvas of `width` x `height`.

    Args:
        keypoints (array-like): (17, 2|3) for one person or (people, 17, 2|3); columns x, y[, score].
        width, height (int): the canvas (the generation size).
        source_size ((int, int), optional): (w, h) of the image the keypoints were measured on; points are
            scaled from it to the canvas. Default: keypoints are already in canvas pixels.
        min_score (float, optional, defaults to 0.3): points scored below this are not drawn.
        line_width, radius (int, optional): limb width / joint radius; default scales with the canvas.

    Raises:
        InputError: keypoints of the wrong shape, non-finite values, or a non-positive size.

    Example:
        >>> img = render_pose(np.zeros((17, 3)) + [32, 24, 1.0], 64, 48)
        >>> img.size
        (64, 48)
    """
    if width <= 0 or height <= 0:
        raise InputError(f"pose canvas size {width}x{height} must be positive")
    people = _as_people(keypoints)
    if source_size is not None:
        sw, sh = source_size
        if sw <= 0 or sh <= 0:
            raise InputError(f"pose source size {sw}x{sh} must be positive")
        people = people.copy()
        people[..., 0] *= width / sw
        people[..., 1] *= height / sh
    unit = max(1, round(min(width, height) / 128))
    line_width = line_width or 2 * unit
    radius = radius or 2 * unit
    canvas = Image.new("RGB", (width, height), (0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    for person in people:
        points = to_openpose18(person, min_score)
        for (a, b), colour in zip(OPENPOSE_LIMBS, OPENPOSE_COLOURS, strict=False):
            pa, pb = points[a], points[b]
            if pa is not None and pb is not None:
                dimmed = tuple(int(c * 0.6) for c in colour)
                draw.line([pa, pb], fill=dimmed, width=line_width)
        for point, colour in zip(points, OPENPOSE_COLOURS, strict=True):
            if point is not None:
                x, y = point
                draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colour)
    return canvas
