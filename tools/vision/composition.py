"""Composition features as a photographer means them: pure functions of pose, mask and face (no models).

Coordinates are normalised 0-1, origin top-left. Every direction is in the VIEWER's frame (the side of the
image); keypoint NAMES keep the subject's anatomy (`left_shoulder` is the subject's own left shoulder).
"""

from __future__ import annotations

import math

import numpy as np

from portraitcraft.schemas import (
    CROP_LEVELS,
    CropLevel,
    Direction,
    Horizontal,
    PersonDetection,
    SubjectFeatures,
    Vertical,
)

LOWER_CUT, UPPER_CUT = 5 / 12, 7 / 12
"""Placement cuts: half-way between a thirds line and the centre."""
THIRDS = (1 / 3, 2 / 3)
NOSE_TURN_FULL = 0.5
"""Nose offset from the shoulders' midpoint, in shoulder widths, that counts as fully turned."""
YAW_TURN_FULL = 60.0
"""Head yaw (degrees) that counts as fully turned."""

# crop level -> the joints whose presence in frame gives it (loosest first)
CROP_JOINTS: tuple[tuple[CropLevel, tuple[str, ...]], ...] = (
    ("full-body", ("left_ankle", "right_ankle")),
    ("three-quarter", ("left_knee", "right_knee")),
    ("half-body", ("left_hip", "right_hip", "left_elbow", "right_elbow")),
    ("head-and-shoulders", ("left_shoulder", "right_shoulder")),
    ("close-up", ("nose", "left_eye", "right_eye", "left_ear", "right_ear")),
)


def horizontal_of(x: float) -> Horizontal:
    """`left` when x < 5/12, `right` when x > 7/12, else `center` (the nearest of the thirds lines and centre).

    Example:
        >>> horizontal_of(0.3), horizontal_of(0.5), horizontal_of(0.7)
        ('left', 'center', 'right')
    """
    return "left" if x < LOWER_CUT else "right" if x > UPPER_CUT else "center"


def vertical_of(y: float) -> Vertical:
    """`upper` when y < 5/12, `lower` when y > 7/12, else `middle`."""
    return "upper" if y < LOWER_CUT else "lower" if y > UPPER_CUT else "middle"


def thirds_distance(x: float, y: float) -> float:
    """Distance (normalised units) from (x, y) to the nearest of the four thirds intersections."""
    return float(min(math.hypot(x - tx, y - ty) for tx in THIRDS for ty in THIRDS))


def seen(person: PersonDetection, name: str, threshold: float) -> bool:
    """The joint is in frame and its score reaches the threshold."""
    kp = person.keypoints.get(name)
    return kp is not None and kp[2] >= threshold and 0.0 <= kp[0] <= 1.0 and 0.0 <= kp[1] <= 1.0


def crop_level(person: PersonDetection, threshold: float) -> CropLevel | None:
    """The loosest crop the joints in frame show (ankles: full-body ... eyes/nose only: close-up); None if none.

    Example:
        >>> p = PersonDetection(box=(0, 0, 1, 1), score=1, keypoints={"nose": (.5, .2, .9), "left_hip": (.6, .9, .8)})
        >>> crop_level(p, 0.5)
        'half-body'
    """
    for level, joints in CROP_JOINTS:
        if any(seen(person, j, threshold) for j in joints):
            return level
    return None


HEAD_PER_FACE_BOX = 1.2
"""Head height (crown to chin) in face-box heights."""
EXTENT_LEVELS: tuple[tuple[float, CropLevel], ...] = (
    (1.6, "close-up"), (2.6, "head-and-shoulders"), (4.2, "half-body"), (6.5, "three-quarter"),
)
"""Crop level by how far the body reaches below the crown, in head heights (a standing adult is ~7.5)."""


def extent_level(top: float, bottom: float, face_height: float) -> CropLevel | None:
    """Crop level from the subject's extent (normalised top and bottom) in head heights.

    Example:
        >>> extent_level(0.1, 0.9, 0.08)
        'full-body'
    """
    head = HEAD_PER_FACE_BOX * face_height
    if head <= 0:
        return None
    heads = (bottom - top) / head
    for limit, level in EXTENT_LEVELS:
        if heads < limit:
            return level
    return "full-body"


def _px(person: PersonDetection, name: str, width: int, height: int) -> np.ndarray:
    kp = person.keypoints[name]
    return np.array([kp[0] * width, kp[1] * height])


def tilt_deg(person: PersonDetection, width: int, height: int, threshold: float) -> float | None:
    """Body tilt in degrees, clockwise positive: the torso axis (hips' midpoint -> shoulders' midpoint) from the
    vertical when hips and shoulders are seen, else the shoulder line (image-left -> image-right) from the
    horizontal; None when the shoulders are not both seen. Rotating the image clockwise by t adds t."""
    if not (seen(person, "left_shoulder", threshold) and seen(person, "right_shoulder", threshold)):
        return None
    ls, rs = _px(person, "left_shoulder", width, height), _px(person, "right_shoulder", width, height)
    if seen(person, "left_hip", threshold) and seen(person, "right_hip", threshold):
        hips = (_px(person, "left_hip", width, height) + _px(person, "right_hip", width, height)) / 2
        axis = (ls + rs) / 2 - hips
        angle = math.degrees(math.atan2(axis[1], axis[0])) + 90.0
    else:
        a, b = (ls, rs) if ls[0] <= rs[0] else (rs, ls)
        angle = math.degrees(math.atan2(b[1] - a[1], b[0] - a[0]))
    return float((angle + 180.0) % 360.0 - 180.0)


def turn_score(person: PersonDetection | None, yaw_deg: float | None, width: int, height: int,
               threshold: float) -> float | None:
    """How far the subject turns toward the viewer's right (+1) or left (-1), 0 facing the camera: the mean of
    the nose's offset from the shoulders' midpoint (in shoulder widths) and the head yaw, each scaled to
    +-1 at a full turn; None when neither is measurable."""
    parts = []
    if person is not None and all(seen(person, j, threshold) for j in ("nose", "left_shoulder", "right_shoulder")):
        ls, rs = _px(person, "left_shoulder", width, height), _px(person, "right_shoulder", width, height)
        span = abs(ls[0] - rs[0])
        if span > 1e-6:
            nose = _px(person, "nose", width, height)
            parts.append(float(np.clip((nose[0] - (ls[0] + rs[0]) / 2) / span / NOSE_TURN_FULL, -1, 1)))
    if yaw_deg is not None:
        parts.append(float(np.clip(yaw_deg / YAW_TURN_FULL, -1, 1)))
    return float(np.mean(parts)) if parts else None


def facing_of(score: float | None, threshold: float) -> Direction | None:
    if score is None:
        return None
    return "right" if score > threshold else "left" if score < -threshold else "camera"


def subject_region(person: PersonDetection, prob: np.ndarray | None, mask_threshold: float
                   ) -> tuple[tuple[float, float, float, float], tuple[float, float], np.ndarray | None]:
    """The subject's box and mask-weighted centroid (normalised), and the subject's own mask (or None).

    The subject's mask is the union of the connected parts of the person mask that reach into the person's
    pose box (a stray segment elsewhere, which the segmenter also produces, does not count). With no such
    part the box centre stands in for the centroid.
    """
    from scipy import ndimage

    box = person.box
    centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
    if prob is None:
        return box, centre, None
    h, w = prob.shape
    on = prob >= mask_threshold
    labels, count = ndimage.label(on)
    if count == 0:
        return box, centre, None
    x0, x1 = int(box[0] * w), max(int(box[0] * w) + 1, math.ceil(box[2] * w))
    y0, y1 = int(box[1] * h), max(int(box[1] * h) + 1, math.ceil(box[3] * h))
    inside = np.unique(labels[y0:y1, x0:x1])
    inside = inside[inside > 0]
    if inside.size == 0:
        return box, centre, None
    mine = np.isin(labels, inside)
    weights = np.where(mine, prob, 0.0).astype(np.float64)
    total = weights.sum()
    cx = float((weights.sum(axis=0) * (np.arange(w) + 0.5)).sum() / total) / w
    cy = float((weights.sum(axis=1) * (np.arange(h) + 0.5)).sum() / total) / h
    ys, xs = np.nonzero(mine)
    mbox = (xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h)
    union = (min(mbox[0], box[0]), min(mbox[1], box[1]), max(mbox[2], box[2]), max(mbox[3], box[3]))
    return tuple(float(v) for v in union), (cx, cy), mine


def head_center(person: PersonDetection, threshold: float) -> tuple[float, float] | None:
    """Mean of the seen nose and eyes: the face centre when no face model saw the face."""
    pts = [person.keypoints[n][:2] for n in ("nose", "left_eye", "right_eye") if seen(person, n, threshold)]
    if not pts:
        return None
    return (float(np.mean([p[0] for p in pts])), float(np.mean([p[1] for p in pts])))


def subject_features(
    person: PersonDetection,
    *,
    width: int,
    height: int,
    prob: np.ndarray | None = None,
    face_center: tuple[float, float] | None = None,
    yaw_deg: float | None = None,
    gaze: Direction | None = None,
    people: int = 1,
    keypoint_threshold: float = 0.5,
    mask_threshold: float = 0.5,
    facing_threshold: float = 0.3,
    region: tuple[tuple[float, float, float, float], tuple[float, float], np.ndarray | None] | None = None,
    face_height: float | None = None,
) -> SubjectFeatures:
    """The main subject's composition features (viewer's frame, normalised).

    Args:
        person (PersonDetection): the main subject (normalised box and keypoints).
        width, height (int): the image size in pixels (angles and turns are measured in pixels).
        prob (np.ndarray, optional): person probability per pixel (H x W); gives the mask-weighted centroid.
        face_center (tuple, optional): the face's centre; else the seen nose/eyes; placement's vertical uses
            it (the eyes are what a portrait puts on a thirds line), the centroid when there is no face.
        yaw_deg (float, optional): head yaw, > 0 toward the viewer's right.
        gaze (Direction, optional): the gaze direction (None when no face is seen).
        people (int): how many people the image shows.
        region (tuple, optional): `subject_region(person, prob, mask_threshold)` when already computed.
        face_height (float, optional): the face box's normalised height; with the subject's mask it bounds the
            crop level by the body's extent in head heights (the tighter of that and the joints' reading:
            a pose model guesses joints past a crop edge, or misses the body).

    Example:
        >>> p = PersonDetection(box=(0.2, 0.1, 0.4, 0.9), score=1, keypoints={"nose": (0.3, 0.2, 0.9)})
        >>> f = subject_features(p, width=100, height=100)
        >>> f.horizontal, f.vertical, f.crop_level
        ('left', 'upper', 'close-up')
    """
    box, centroid, own_mask = region or subject_region(person, prob, mask_threshold)
    level = crop_level(person, keypoint_threshold)
    if face_height and own_mask is not None:
        by_extent = extent_level(box[1], box[3], face_height)
        if level is None or (by_extent is not None and CROP_LEVELS.index(by_extent) < CROP_LEVELS.index(level)):
            level = by_extent
        elif not any(seen(person, j, keypoint_threshold) for j in ("left_shoulder", "right_shoulder")):
            level = by_extent or level  # only the head was posed: the extent is the better reading
    if face_center is None:
        face_center = head_center(person, keypoint_threshold)
    ref_y = face_center[1] if face_center is not None else centroid[1]
    score = turn_score(person, yaw_deg, width, height, keypoint_threshold)
    return SubjectFeatures(
        box=box,
        centroid=centroid,
        face_center=face_center,
        horizontal=horizontal_of(centroid[0]),
        vertical=vertical_of(ref_y),
        thirds_distance=thirds_distance(centroid[0], ref_y),
        headroom=float(max(0.0, box[1])),
        crop_level=level,
        facing=facing_of(score, facing_threshold),
        gaze=gaze,
        tilt_deg=tilt_deg(person, width, height, keypoint_threshold),
        people=max(1, int(people)),
    )


def looser(a: CropLevel | None, b: CropLevel | None) -> bool:
    """True when crop level `a` shows more of the body than `b`."""
    if a is None or b is None:
        return False
    return CROP_LEVELS.index(a) > CROP_LEVELS.index(b)
