"""Faces: boxes (mediapipe face detection, also used to COUNT people), head yaw and gaze (face mesh + irises).

Directions are in the VIEWER's frame. `yaw_deg` > 0: the face turns toward the viewer's right (its nose
moves to the image's right). `gaze_deg` = head yaw + the eye's own turn, read from where the iris sits
between the eye corners (an iris displaced by a fraction f of the eye width is an eye turned by
asin(2 f)); > 0 looks toward the viewer's right. Without a face mesh (small faces) the gaze follows the head.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from portraitcraft.config import VisionConfig
from portraitcraft.schemas import Direction
from portraitcraft.tools.vision import models

# Face mesh indices (refine_landmarks=True: 478 points).
NOSE_TIP = 1
CHEEK_IMAGE_LEFT, CHEEK_IMAGE_RIGHT = 234, 454  # the face's outline at ear height
EYES = ((33, 133), (362, 263))  # (corner, corner) of each eye
IRIS_CENTRES = (468, 473)
# Face detection keypoints: right eye, left eye, nose tip, mouth, right ear tragion, left ear tragion.
DET_NOSE, DET_EAR_A, DET_EAR_B = 2, 4, 5
EYE_READ_MAX_YAW = 45.0


@dataclass(frozen=True)
class FaceBox:
    """One detected face (normalised): box, score, and the detector's 6 keypoints as (x, y)."""

    box: tuple[float, float, float, float]
    score: float
    keypoints: tuple[tuple[float, float], ...]

    @property
    def center(self) -> tuple[float, float]:
        return ((self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2)


@dataclass(frozen=True)
class FaceInfo:
    """The subject's face: box and centre (normalised), head yaw, gaze angle and direction (viewer's frame)."""

    box: tuple[float, float, float, float]
    center: tuple[float, float]
    yaw_deg: float
    gaze_deg: float
    gaze: Direction
    source: str  # "mesh" (irises seen) or "detection" (gaze follows the head)


def _detector() -> object:
    mp = models.import_mediapipe()

    return models.warmed(mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.2))


def _mesh() -> object:
    mp = models.import_mediapipe()

    return models.warmed(mp.solutions.face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=True,
                                                         max_num_faces=4, min_detection_confidence=0.5))


def detect_faces(rgb: np.ndarray, threshold: float = 0.5) -> list[FaceBox]:
    """Every face with a detection score >= threshold, largest first (full-range model: small faces too).

    Example:
        >>> import numpy as np
        >>> detect_faces(np.zeros((64, 64, 3), np.uint8))
        []
    """
    with models.use(("mediapipe", "face_detection"), _detector) as det:
        result = det.process(np.ascontiguousarray(rgb))
    faces = []
    for d in result.detections or []:
        score = float(d.score[0]) if d.score else 0.0
        if score < threshold:
            continue
        rb = d.location_data.relative_bounding_box
        box = (max(0.0, rb.xmin), max(0.0, rb.ymin), min(1.0, rb.xmin + rb.width), min(1.0, rb.ymin + rb.height))
        kps = tuple((float(k.x), float(k.y)) for k in d.location_data.relative_keypoints)
        faces.append(FaceBox(box=tuple(float(v) for v in box), score=score, keypoints=kps))
    return sorted(faces, key=lambda f: -(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))


def count_faces(rgb: np.ndarray, threshold: float = 0.5) -> int:
    """How many faces the detector finds: the people count with the mediapipe pose backend (one pose only)."""
    return len(detect_faces(rgb, threshold))


def _direction(angle: float, threshold: float) -> Direction:
    return "right" if angle > threshold else "left" if angle < -threshold else "camera"


def _yaw(nose_x: float, side_a: float, side_b: float) -> float:
    half = abs(side_b - side_a) / 2
    if half <= 1e-9:
        return 0.0
    ratio = (nose_x - (side_a + side_b) / 2) / half
    return math.degrees(math.asin(max(-1.0, min(1.0, ratio))))


def analyze_face(rgb: np.ndarray, cfg: VisionConfig | None = None, *, near: tuple[float, float] | None = None,
                 faces: list[FaceBox] | None = None) -> FaceInfo | None:
    """The face nearest `near` (normalised; default the largest): box, yaw and gaze; None when no face.

    Args:
        rgb (np.ndarray): RGB uint8 (H, W, 3).
        cfg (VisionConfig, optional): thresholds.
        near (tuple, optional): a point on the subject's head (e.g. the pose's nose) to pick the right face.
        faces (list[FaceBox], optional): detections already made (`detect_faces`), reused as the fallback.
    """
    cfg = cfg or VisionConfig()
    height, width = rgb.shape[:2]
    with models.use(("mediapipe", "face_mesh"), _mesh) as mesh:
        result = mesh.process(np.ascontiguousarray(rgb))
    meshes = [np.array([(p.x, p.y) for p in m.landmark]) for m in (result.multi_face_landmarks or [])]
    meshes = [m for m in meshes if len(m) >= 478]
    if meshes:
        pts = min(meshes, key=lambda m: _distance(m.mean(axis=0), near)) if near else meshes[0]
        return _from_mesh(pts, width, height, cfg)
    if faces is None:
        faces = detect_faces(rgb, cfg.face_threshold)
    if not faces:
        return None
    face = min(faces, key=lambda f: _distance(np.array(f.center), near)) if near else faces[0]
    kps = face.keypoints
    yaw = _yaw(kps[DET_NOSE][0], kps[DET_EAR_A][0], kps[DET_EAR_B][0]) if len(kps) >= 6 else 0.0
    return FaceInfo(box=face.box, center=face.center, yaw_deg=yaw, gaze_deg=yaw,
                    gaze=_direction(yaw, cfg.gaze_threshold_deg), source="detection")


def _distance(a: np.ndarray, b: tuple[float, float] | None) -> float:
    return 0.0 if b is None else float(np.hypot(a[0] - b[0], a[1] - b[1]))


def _from_mesh(pts: np.ndarray, width: int, height: int, cfg: VisionConfig) -> FaceInfo:
    x0, y0 = pts[:468].min(axis=0)
    x1, y1 = pts[:468].max(axis=0)
    box = (float(max(0.0, x0)), float(max(0.0, y0)), float(min(1.0, x1)), float(min(1.0, y1)))
    yaw = _yaw(pts[NOSE_TIP, 0], pts[CHEEK_IMAGE_LEFT, 0], pts[CHEEK_IMAGE_RIGHT, 0])
    offsets = []
    for a, b in EYES:
        ca, cb = pts[a], pts[b]
        mid = (ca + cb) / 2
        eye_width = abs(cb[0] - ca[0]) * width
        if eye_width < 2:  # a closed-up or profile eye gives no reading
            continue
        iris = min((pts[i] for i in IRIS_CENTRES), key=lambda p, m=mid: float(np.hypot(*(p - m))))
        offsets.append((iris[0] - mid[0]) * width / eye_width)
    # Beyond EYE_READ_MAX_YAW the far eye is foreshortened or hidden and its corners say little: follow the head.
    eye_turn = (math.degrees(math.asin(max(-1.0, min(1.0, 2 * float(np.mean(offsets))))))
                if offsets and abs(yaw) < EYE_READ_MAX_YAW else 0.0)
    gaze = max(-90.0, min(90.0, yaw + eye_turn))
    center = (float((box[0] + box[2]) / 2), float((box[1] + box[3]) / 2))
    return FaceInfo(box=box, center=center, yaw_deg=float(yaw), gaze_deg=float(gaze),
                    gaze=_direction(gaze, cfg.gaze_threshold_deg), source="mesh")
