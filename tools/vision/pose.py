"""Body pose: every person's box and COCO-17 keypoints, normalised to the image (origin top-left).

Two backends, chosen by `[vision] pose_backend`:
- `mediapipe` (default): `mediapipe.solutions.pose`, weights bundled in the `mediapipe==0.10.14` wheel, runs
  on any CPU. It finds ONE person per image (the most prominent); `tools.vision.face.count_faces` counts the
  people. Its 33 landmarks map to COCO-17 by index and keep the SUBJECT's anatomy: `left_shoulder` is the
  subject's left shoulder, on the image's right when the subject faces the camera.
- `rtmlib`: YOLOX person detector + RTMPose through onnxruntime, every person, from LOCAL .onnx files only
  (`rtmlib_det_model`, `rtmlib_pose_model`). No detection means no person: rtmlib's whole-image fallback,
  which invents one, is never used.

When the backend finds nobody, the image is tried again turned by +-15 and +-30 degrees (`RETRY_ANGLES`) and
the keypoints are mapped back, so a tilted person is still found (with the tilt measured in the original).
"""

from __future__ import annotations

import math
import os
from contextlib import redirect_stdout

import numpy as np
from PIL import Image

from portraitcraft.config import VisionConfig
from portraitcraft.errors import InputError
from portraitcraft.schemas import PersonDetection
from portraitcraft.tools.pose_render import COCO17_NAMES
from portraitcraft.tools.vision import models

# COCO-17 index -> mediapipe pose landmark index.
MEDIAPIPE_TO_COCO17 = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)
RETRY_ANGLES = (15.0, -15.0, 30.0, -30.0)
"""When the pose model finds nobody, the image is tried again turned by these angles (degrees, counter-clockwise
positive): mediapipe's person detector misses people tilted by about 15 degrees or more."""
MIN_RETRY_CONTRAST = 4.0
"""The tilt retry runs only on an image with some structure (grey-level standard deviation, 0-255): turned, a
flat picture gets corners and edges of the turn's fill, in which the pose model can invent a person."""
HEAD_TOP_PER_EAR_SPAN = 0.8
"""Head top above the eyes, in ear-to-ear spans (a frontal head is ~1.3 spans tall, eyes near its middle)."""


def detect_persons(rgb: np.ndarray, cfg: VisionConfig | None = None) -> list[PersonDetection]:
    """Every person found in an RGB uint8 array (H, W, 3), largest first; [] when there is none.

    Args:
        rgb (np.ndarray): the image, RGB, uint8, shape (H, W, 3).
        cfg (VisionConfig, optional, defaults to VisionConfig()): backend and thresholds.

    Example:
        >>> import numpy as np
        >>> detect_persons(np.zeros((64, 64, 3), np.uint8))
        []
    """
    cfg = cfg or VisionConfig()
    persons = _backend_persons(rgb, cfg)
    structured = float(np.asarray(rgb, dtype=np.float32).mean(axis=-1).std()) >= MIN_RETRY_CONTRAST
    for angle in RETRY_ANGLES if not persons and structured else ():
        persons = _rotated_persons(rgb, cfg, angle)
        if persons:
            break
    return sorted(persons, key=lambda p: -(p.box[2] - p.box[0]) * (p.box[3] - p.box[1]))


def _backend_persons(rgb: np.ndarray, cfg: VisionConfig) -> list[PersonDetection]:
    return _rtmlib_persons(rgb, cfg) if cfg.pose_backend == "rtmlib" else _mediapipe_persons(rgb, cfg)


def rotate_rgb(rgb: np.ndarray, angle: float) -> np.ndarray:
    """The image turned `angle` degrees counter-clockwise (PIL's sense), canvas grown to hold it, corners grey."""
    img = Image.fromarray(np.ascontiguousarray(rgb))
    return np.asarray(img.rotate(angle, resample=Image.Resampling.BILINEAR, expand=True, fillcolor=(128, 128, 128)))


def unrotate_points(points: np.ndarray, angle: float, size: tuple[int, int], rotated_size: tuple[int, int]
                    ) -> np.ndarray:
    """Pixel points (N, 2) of the image `rotate_rgb(rgb, angle)` (of `rotated_size`, W x H) mapped back into the
    original image of `size` (W x H).

    Example:
        >>> unrotate_points(np.array([[2.0, 0.0]]), 90, (10, 4), (4, 10)).round(6).tolist()  # top of the turned
        [[10.0, 2.0]]
    """
    t = math.radians(angle)
    dx = points[:, 0] - rotated_size[0] / 2
    dy = points[:, 1] - rotated_size[1] / 2
    x = dx * math.cos(t) - dy * math.sin(t) + size[0] / 2
    y = dx * math.sin(t) + dy * math.cos(t) + size[1] / 2
    return np.stack([x, y], axis=1)


def _rotated_persons(rgb: np.ndarray, cfg: VisionConfig, angle: float) -> list[PersonDetection]:
    """People found on the image turned by `angle` degrees, their keypoints (and boxes) mapped back."""
    height, width = rgb.shape[:2]
    turned = rotate_rgb(rgb, angle)
    th, tw = turned.shape[:2]
    out = []
    for p in _backend_persons(turned, cfg):
        raw = np.array([[p.keypoints[n][0] * tw, p.keypoints[n][1] * th] for n in COCO17_NAMES])
        scores = np.array([p.keypoints[n][2] for n in COCO17_NAMES])
        keypoints = unrotate_points(raw, angle, (width, height), (tw, th))
        seen = (scores >= cfg.keypoint_threshold) & _in_frame(keypoints, width, height)
        person = _detection(keypoints, scores, width, height, seen, score=p.score)
        if person is not None:
            out.append(person)
    return out


def keypoint_box(keypoints: np.ndarray, seen: np.ndarray, width: int, height: int) -> tuple[float, ...]:
    """A normalised box around the seen keypoints (pixels in), extended up to the top of the head."""
    pts = keypoints[seen]
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    ears = [i for i in (3, 4) if seen[i]]
    eyes = [i for i in (1, 2) if seen[i]]
    if eyes:
        span = (abs(keypoints[3, 0] - keypoints[4, 0]) if len(ears) == 2
                else 2.5 * abs(keypoints[1, 0] - keypoints[2, 0]) if len(eyes) == 2 else 0.0)
        eye_y = float(np.mean(keypoints[eyes, 1]))
        y0 = min(y0, eye_y - HEAD_TOP_PER_EAR_SPAN * span)
        eye_x = float(np.mean(keypoints[eyes, 0]))
        x0, x1 = min(x0, eye_x - span / 2), max(x1, eye_x + span / 2)
    box = (max(0.0, x0 / width), max(0.0, y0 / height), min(1.0, x1 / width), min(1.0, y1 / height))
    return tuple(float(v) for v in box)


def _detection(keypoints: np.ndarray, scores: np.ndarray, width: int, height: int, seen: np.ndarray,
               box: tuple[float, ...] | None = None, score: float | None = None) -> PersonDetection | None:
    """A PersonDetection (normalised) from pixel keypoints; its box from the `seen` joints unless given."""
    if box is None:
        if not seen.any():
            return None
        box = keypoint_box(keypoints, seen, width, height)
    kps = {name: (float(keypoints[i, 0] / width), float(keypoints[i, 1] / height), float(scores[i]))
           for i, name in enumerate(COCO17_NAMES)}
    return PersonDetection(box=tuple(float(v) for v in box), score=float(np.mean(scores) if score is None else score),
                           keypoints=kps)


def _in_frame(keypoints: np.ndarray, width: int, height: int) -> np.ndarray:
    return ((keypoints[:, 0] >= 0) & (keypoints[:, 0] <= width) & (keypoints[:, 1] >= 0)
            & (keypoints[:, 1] <= height))


def _mediapipe_pose(complexity: int) -> object:
    mp = models.import_mediapipe()

    return models.warmed(mp.solutions.pose.Pose(static_image_mode=True, model_complexity=complexity))


# COCO-17 index of the same joint on the other side (for reading a mirrored image back).
_MIRROR = (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)


def _mediapipe_landmarks(rgb: np.ndarray, complexity: int) -> tuple[np.ndarray, np.ndarray] | None:
    """COCO-17 pixel keypoints and visibilities, or None when the pose model finds nobody."""
    height, width = rgb.shape[:2]
    with models.use(("mediapipe", "pose", complexity), lambda: _mediapipe_pose(complexity)) as pose:
        result = pose.process(np.ascontiguousarray(rgb))
    if not result.pose_landmarks:
        return None
    marks = result.pose_landmarks.landmark
    keypoints = np.array([[marks[i].x * width, marks[i].y * height] for i in MEDIAPIPE_TO_COCO17])
    return keypoints, np.array([marks[i].visibility for i in MEDIAPIPE_TO_COCO17])


def _mediapipe_persons(rgb: np.ndarray, cfg: VisionConfig) -> list[PersonDetection]:
    """mediapipe's one pose. Its person detector misses some framings (a crop through the legs, an odd
    aspect); then the mirrored image, then the image letterboxed to a square, are tried before giving up."""
    height, width = rgb.shape[:2]
    found = _mediapipe_landmarks(rgb, cfg.model_complexity)
    if found is None:
        mirrored = _mediapipe_landmarks(rgb[:, ::-1], cfg.model_complexity)
        if mirrored is not None:
            kp, vis = mirrored
            kp = kp[list(_MIRROR)]
            kp[:, 0] = width - kp[:, 0]
            found = (kp, vis[list(_MIRROR)])
    if found is None and width != height:
        side = max(width, height)
        square = np.full((side, side, 3), 128, np.uint8)
        square[:height, :width] = rgb
        found = _mediapipe_landmarks(square, cfg.model_complexity)
    if found is None:
        return []
    keypoints, scores = found
    seen = (scores >= cfg.keypoint_threshold) & _in_frame(keypoints, width, height)
    person = _detection(keypoints, scores, width, height, seen)
    return [person] if person is not None else []


def _onnx_path(value: str | None, key: str) -> str:
    if not value:
        raise InputError(f"[vision] {key} is not set: the rtmlib backend needs a local .onnx file "
                         "(rtmlib would otherwise download one; this project never does)")
    if not os.path.isfile(value):
        raise InputError(f"[vision] {key} = {value!r}: no such file (the rtmlib backend takes local .onnx files)")
    return value


def _rtmlib_models(cfg: VisionConfig) -> tuple[object, object]:
    det_path = _onnx_path(cfg.rtmlib_det_model, "rtmlib_det_model")
    pose_path = _onnx_path(cfg.rtmlib_pose_model, "rtmlib_pose_model")
    from rtmlib import YOLOX, RTMPose

    with open(os.devnull, "w") as sink, redirect_stdout(sink):  # rtmlib prints on every load
        det = YOLOX(det_path, model_input_size=tuple(cfg.rtmlib_det_input_size), backend="onnxruntime",
                    device=cfg.rtmlib_device)
        pose = RTMPose(pose_path, model_input_size=tuple(cfg.rtmlib_pose_input_size), backend="onnxruntime",
                       device=cfg.rtmlib_device)
    return det, pose


def _rtmlib_persons(rgb: np.ndarray, cfg: VisionConfig) -> list[PersonDetection]:
    height, width = rgb.shape[:2]
    bgr = np.ascontiguousarray(rgb[..., ::-1])  # rtmlib follows OpenCV: BGR in
    key = ("rtmlib", cfg.rtmlib_det_model, cfg.rtmlib_pose_model, tuple(cfg.rtmlib_det_input_size),
           tuple(cfg.rtmlib_pose_input_size), cfg.rtmlib_device)
    with models.use(key, lambda: _rtmlib_models(cfg)) as (det, pose):
        boxes, box_scores = _detect_boxes(det, bgr, cfg.person_threshold)
        if not len(boxes):
            return []  # never rtmlib's invented whole-image person
        keypoints, scores = pose(bgr, bboxes=[list(b) for b in boxes])
    out = []
    for i, (bx, bs) in enumerate(zip(boxes, box_scores, strict=True)):
        box = (max(0.0, bx[0] / width), max(0.0, bx[1] / height), min(1.0, bx[2] / width), min(1.0, bx[3] / height))
        kp, sc = np.asarray(keypoints[i], float), np.asarray(scores[i], float)
        out.append(_detection(kp, sc, width, height, sc >= cfg.keypoint_threshold, box=box, score=float(bs)))
    return out


def _detect_boxes(det: object, bgr: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Person boxes (pixels) and scores above `threshold`; YOLOX end2end `dets` (1, N, 5) read directly
    (rtmlib's own post-processing hard-codes a 0.3 score and drops the scores)."""
    image, ratio = det.preprocess(bgr)
    outputs = det.inference(image)
    dets = np.asarray(outputs[0])
    if dets.ndim == 3 and dets.shape[-1] == 5:
        boxes, scores = dets[0, :, :4] / ratio, dets[0, :, 4]
        if len(outputs) > 1:  # labels: keep persons (class 0)
            labels = np.asarray(outputs[1]).reshape(-1)
            keep = labels == 0
            boxes, scores = boxes[keep], scores[keep]
        keep = scores >= threshold
        return boxes[keep], scores[keep]
    boxes = np.asarray(det.postprocess(dets, ratio)).reshape(-1, 4)
    return boxes, np.ones(len(boxes))
