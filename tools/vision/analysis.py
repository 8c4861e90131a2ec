"""`analyze(image)`: pose + person mask + face on one image -> persons, the main subject's features, the mask."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from portraitcraft.config import VisionConfig
from portraitcraft.schemas import PersonDetection, SubjectFeatures
from portraitcraft.tools.images import load_image
from portraitcraft.tools.pose_render import COCO17_NAMES
from portraitcraft.tools.vision.composition import seen, subject_features, subject_region
from portraitcraft.tools.vision.face import FaceBox, FaceInfo, analyze_face, detect_faces
from portraitcraft.tools.vision.mask import person_probability
from portraitcraft.tools.vision.pose import detect_persons

# Face detection keypoints (right eye, left eye, nose tip, mouth, right ear, left ear) -> COCO-17 names.
_FACE_TO_COCO = {0: "right_eye", 1: "left_eye", 2: "nose", 4: "right_ear", 5: "left_ear"}
PEOPLE_SOURCE = {
    "mediapipe": "people counted with mediapipe's face detector (its pose model finds one person)",
    "rtmlib": "people counted by rtmlib's person detector",
}


@dataclass
class Analysis:
    """What the vision models see in one image (normalised coordinates, viewer's frame).

    `persons` are largest first and `subject` describes `persons[0]`; `mask` is the union person mask (H x W
    bool, at the analysed size) or None when no person is found; `subject_mask` the parts of it that belong
    to the subject; `face` is the subject's face.
    """

    width: int
    height: int
    persons: list[PersonDetection]
    subject: SubjectFeatures | None
    mask: np.ndarray | None
    face: FaceInfo | None = None
    faces: list[FaceBox] = field(default_factory=list)
    backend: str = "mediapipe"
    keypoint_threshold: float = 0.5
    subject_mask: np.ndarray | None = None

    def to_json(self) -> dict[str, Any]:
        """The `portraitcraft inspect --json` keys (minus `image`): width, height, persons, subject."""
        return {
            "width": self.width,
            "height": self.height,
            "persons": [_round(p.model_dump(mode="json")) for p in self.persons],
            "subject": _round(self.subject.model_dump(mode="json")) if self.subject else None,
        }

    @property
    def people_note(self) -> str:
        return PEOPLE_SOURCE.get(self.backend, "")

    def keypoint_visibility(self) -> float:
        """Mean score of the subject's shoulders, hips and head points that are in frame (0 when none)."""
        if not self.persons:
            return 0.0
        person = self.persons[0]
        names = ("nose", "left_eye", "right_eye", "left_shoulder", "right_shoulder", "left_hip", "right_hip")
        scores = [person.keypoints[n][2] for n in names
                  if n in person.keypoints and 0 <= person.keypoints[n][0] <= 1 and 0 <= person.keypoints[n][1] <= 1]
        return float(np.mean(scores)) if scores else 0.0


def _round(data: Any, digits: int = 4) -> Any:
    if isinstance(data, float):
        return round(data, digits)
    if isinstance(data, dict):
        return {k: _round(v, digits) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_round(v, digits) for v in data]
    return data


def _rgb(image: Image.Image | str | Path, max_side: int) -> tuple[np.ndarray, int, int]:
    img = load_image(image) if isinstance(image, str | Path) else load_image(image, name="image")
    width, height = img.size
    scale = max_side / max(width, height)
    if scale < 1:
        img = img.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.LANCZOS)
    return np.asarray(img, dtype=np.uint8), width, height


def _face_person(face: FaceBox, width: int, height: int) -> PersonDetection:
    """A person seen only by the face detector (a tight close-up the pose model missed)."""
    kps = {name: (0.0, 0.0, 0.0) for name in COCO17_NAMES}
    for i, name in _FACE_TO_COCO.items():
        if i < len(face.keypoints):
            kps[name] = (*face.keypoints[i], face.score)
    return PersonDetection(box=face.box, score=face.score, keypoints=kps)


def analyze(image: Image.Image | str | Path, config: VisionConfig | None = None) -> Analysis:
    """Run pose, person mask and face models on one image (models load once per process).

    Args:
        image (PIL.Image | str | Path): the picture, or its file (an unreadable file raises `ImageError`
            naming it).
        config (VisionConfig, optional, defaults to VisionConfig()): backend and thresholds.

    Example:
        >>> from PIL import Image
        >>> analyze(Image.new("RGB", (64, 48))).subject is None
        True
    """
    cfg = config or VisionConfig()
    rgb, width, height = _rgb(image, cfg.max_side)
    h, w = rgb.shape[:2]
    persons = detect_persons(rgb, cfg)
    faces = detect_faces(rgb, cfg.face_threshold)
    if not persons and faces:
        persons = [_face_person(f, w, h) for f in faces]
    if not persons:
        return Analysis(width, height, [], None, None, None, faces, cfg.pose_backend, cfg.keypoint_threshold)
    subject = persons[0]
    nose = subject.keypoints.get("nose")
    near = nose[:2] if nose and seen(subject, "nose", cfg.keypoint_threshold) else None
    if near is None:
        near = ((subject.box[0] + subject.box[2]) / 2, subject.box[1])
    face = analyze_face(rgb, cfg, near=near, faces=faces)
    if face is not None and not _face_on(face, subject):
        face = None  # a face elsewhere (another person) says nothing about the subject's head
    prob = person_probability(rgb)
    people = max(len(persons), len(faces)) if cfg.pose_backend == "mediapipe" else len(persons)
    region = subject_region(subject, prob, cfg.mask_threshold)
    features = subject_features(
        subject, width=w, height=h, prob=prob,
        face_center=face.center if face else None,
        yaw_deg=face.yaw_deg if face else None,
        gaze=face.gaze if face else None,
        people=people,
        keypoint_threshold=cfg.keypoint_threshold,
        mask_threshold=cfg.mask_threshold,
        facing_threshold=cfg.facing_threshold,
        region=region,
        face_height=(face.box[3] - face.box[1]) if face else None,
    )
    mask = prob >= cfg.mask_threshold
    return Analysis(width, height, persons, features, mask, face, faces, cfg.pose_backend, cfg.keypoint_threshold,
                    subject_mask=region[2])


def _face_on(face: FaceInfo, person: PersonDetection) -> bool:
    """The face's centre lies in the person's box grown by a quarter of its size."""
    x0, y0, x1, y1 = person.box
    gx, gy = (x1 - x0) / 4, (y1 - y0) / 4
    return x0 - gx <= face.center[0] <= x1 + gx and y0 - gy <= face.center[1] <= y1 + gy
