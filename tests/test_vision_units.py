"""Pure composition features, the geometric critic, the [vision] config and the rtmlib backend with tiny ONNX
stand-in models (no mediapipe needed)."""

from __future__ import annotations

import numpy as np
import pytest

from portraitcraft.agents.geometry_critic import critique_geometry, instruction
from portraitcraft.config import ConfigError, load_config
from portraitcraft.schemas import CompositionTargets, PersonDetection, SubjectFeatures
from portraitcraft.tools.pose_render import COCO17_NAMES
from portraitcraft.tools.vision.analysis import Analysis
from portraitcraft.tools.vision.composition import (
    crop_level,
    extent_level,
    facing_of,
    horizontal_of,
    subject_features,
    thirds_distance,
    tilt_deg,
    turn_score,
    vertical_of,
)


def person(**points: tuple[float, float, float]) -> PersonDetection:
    kps = {n: (0.0, 0.0, 0.0) for n in COCO17_NAMES}
    kps.update(points)
    return PersonDetection(box=(0.3, 0.1, 0.7, 0.9), score=0.9, keypoints=kps)


def test_placement_cuts_and_thirds() -> None:
    assert [horizontal_of(x) for x in (0.0, 0.41, 0.42, 0.58, 0.59, 1.0)] == [
        "left", "left", "center", "center", "right", "right"]
    assert [vertical_of(y) for y in (0.2, 0.5, 0.8)] == ["upper", "middle", "lower"]
    assert thirds_distance(1 / 3, 2 / 3) == pytest.approx(0.0)
    assert thirds_distance(0.5, 0.5) == pytest.approx(np.hypot(1 / 6, 1 / 6))


def test_crop_level_from_joints_in_frame() -> None:
    head = {"nose": (0.5, 0.2, 0.9)}
    assert crop_level(person(**head), 0.5) == "close-up"
    assert crop_level(person(**head, left_shoulder=(0.6, 0.4, 0.9)), 0.5) == "head-and-shoulders"
    assert crop_level(person(**head, left_hip=(0.6, 0.8, 0.9)), 0.5) == "half-body"
    assert crop_level(person(**head, right_knee=(0.6, 0.9, 0.9)), 0.5) == "three-quarter"
    assert crop_level(person(**head, right_ankle=(0.6, 0.99, 0.9)), 0.5) == "full-body"
    # an ankle out of frame or barely visible does not count
    assert crop_level(person(**head, right_ankle=(0.6, 1.2, 0.9)), 0.5) == "close-up"
    assert crop_level(person(**head, right_ankle=(0.6, 0.9, 0.3)), 0.5) == "close-up"
    assert extent_level(0.0, 0.15, 0.1) == "close-up" and extent_level(0.0, 1.0, 0.1) == "full-body"


def test_tilt_is_clockwise_positive() -> None:
    level = person(left_shoulder=(0.6, 0.4, 1), right_shoulder=(0.4, 0.4, 1))
    assert tilt_deg(level, 100, 100, 0.5) == pytest.approx(0.0)
    # image-right shoulder lower: the body turned clockwise
    tilted = person(left_shoulder=(0.6, 0.45, 1), right_shoulder=(0.4, 0.4, 1))
    assert tilt_deg(tilted, 100, 100, 0.5) > 10
    # torso axis leaning to the image right at the top
    lean = person(left_shoulder=(0.65, 0.3, 1), right_shoulder=(0.45, 0.3, 1), left_hip=(0.55, 0.7, 1),
                  right_hip=(0.45, 0.7, 1))
    assert tilt_deg(lean, 100, 100, 0.5) == pytest.approx(np.degrees(np.arctan2(0.05, 0.4)), abs=0.1)


def test_facing_from_nose_and_yaw_in_the_viewers_frame() -> None:
    body = {"left_shoulder": (0.6, 0.4, 1), "right_shoulder": (0.4, 0.4, 1)}
    assert facing_of(turn_score(person(nose=(0.5, 0.2, 1), **body), 0.0, 100, 100, 0.5), 0.3) == "camera"
    assert facing_of(turn_score(person(nose=(0.62, 0.2, 1), **body), 40.0, 100, 100, 0.5), 0.3) == "right"
    assert facing_of(turn_score(person(nose=(0.38, 0.2, 1), **body), -40.0, 100, 100, 0.5), 0.3) == "left"
    assert facing_of(turn_score(None, None, 100, 100, 0.5), 0.3) is None


def test_mask_weighted_centroid_and_stray_segments() -> None:
    prob = np.zeros((100, 100), np.float32)
    prob[20:90, 10:40] = 1.0  # the subject
    prob[5:15, 80:95] = 1.0  # a stray segment far from the subject
    p = PersonDetection(box=(0.12, 0.2, 0.38, 0.9), score=1, keypoints={"nose": (0.25, 0.25, 0.9)})
    f = subject_features(p, width=100, height=100, prob=prob)
    assert f.centroid == pytest.approx((0.25, 0.55), abs=0.01)
    assert f.box == pytest.approx((0.10, 0.20, 0.40, 0.90), abs=0.01)
    assert f.horizontal == "left" and f.vertical == "upper" and f.headroom == pytest.approx(0.2, abs=0.01)


def _analysis(horizontal: str = "left", x: float = 0.3, visibility: float = 0.95) -> Analysis:
    p = person(nose=(x, 0.3, visibility), left_shoulder=(x + 0.1, 0.5, visibility),
               right_shoulder=(x - 0.1, 0.5, visibility))
    s = SubjectFeatures(box=(x - 0.2, 0.1, x + 0.2, 1.0), centroid=(x, 0.6), face_center=(x, 0.3),
                        horizontal=horizontal, vertical="upper", thirds_distance=0.05, headroom=0.1,
                        crop_level="half-body", facing="camera", gaze=None, tilt_deg=0.0, people=1)
    return Analysis(768, 1024, [p], s, np.ones((8, 6), bool))


def test_critic_compares_set_targets_only_in_the_viewers_frame() -> None:
    targets = CompositionTargets(horizontal="right", crop_level="half-body", orientation="portrait",
                                 phrases={"horizontal": "on the right side of the frame"})
    findings = critique_geometry(targets, _analysis())
    assert [f.rule for f in findings] == ["horizontal", "crop_level", "orientation"]
    h = findings[0]
    assert h.detected and h.expected == "right" and h.measured == "left" and h.frame == "viewer"
    assert h.source == "geometry" and "viewer's right" in h.instruction and "on the right side" in h.evidence
    assert not findings[1].detected and not findings[2].detected and findings[1].instruction == ""


def test_low_visibility_lowers_confidence_and_gaze_unmeasured_is_not_a_violation() -> None:
    t = CompositionTargets(horizontal="right", gaze="left")
    sure = critique_geometry(t, _analysis(visibility=0.95))
    unsure = critique_geometry(t, _analysis(visibility=0.55))
    assert unsure[0].confidence < sure[0].confidence
    gaze = sure[1]
    assert gaze.rule == "gaze" and not gaze.detected and gaze.measured is None and gaze.confidence <= 0.2


def test_missing_subject_is_its_own_finding() -> None:
    findings = critique_geometry(CompositionTargets(horizontal="left", people=2),
                                 Analysis(64, 64, [], None, None))
    assert [f.rule for f in findings] == ["people", "subject"]
    assert all(f.detected for f in findings) and findings[0].measured == 0
    assert instruction("people", 1) == "Show exactly 1 person in the picture."


def test_vision_config_section() -> None:
    cfg = load_config(overrides={"vision": {"pose_backend": "rtmlib", "reframe_max_pad": 0.2}})
    assert cfg.vision.pose_backend == "rtmlib" and cfg.vision.reframe_max_pad == 0.2
    with pytest.raises(ConfigError, match="vision"):
        load_config(overrides={"vision": {"pose_backend": "openpose"}})
    with pytest.raises(ConfigError, match="model_complexity"):
        load_config(overrides={"vision": {"model_complexity": 2}})  # only the bundled model


# --- rtmlib with tiny stand-in ONNX models (docs/stack-notes.md) ---

def _det_model(path, boxes: list[list[float]]) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    dets = np.array([boxes], np.float32)
    labels = np.zeros((1, len(boxes)), np.int64)
    nodes = [
        helper.make_node("Constant", [], ["dets"], value=helper.make_tensor("d", TensorProto.FLOAT, dets.shape,
                                                                            dets.ravel())),
        helper.make_node("Constant", [], ["labels"], value=helper.make_tensor("l", TensorProto.INT64, labels.shape,
                                                                              labels.ravel())),
    ]
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 640, 640])]
    graph = helper.make_graph(nodes, "det", inputs,
                              [helper.make_tensor_value_info("dets", TensorProto.FLOAT, dets.shape),
                               helper.make_tensor_value_info("labels", TensorProto.INT64, labels.shape)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)


def _pose_model(path) -> None:
    """SimCC peaks at the centre of the input for every joint: each keypoint lands on its box's centre."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    sx = np.zeros((1, 17, 384), np.float32)
    sy = np.zeros((1, 17, 512), np.float32)
    sx[..., 192] = 0.9
    sy[..., 256] = 0.9
    nodes = [
        helper.make_node("Constant", [], ["simcc_x"], value=helper.make_tensor("x", TensorProto.FLOAT, sx.shape,
                                                                               sx.ravel())),
        helper.make_node("Constant", [], ["simcc_y"], value=helper.make_tensor("y", TensorProto.FLOAT, sy.shape,
                                                                               sy.ravel())),
    ]
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 256, 192])]
    graph = helper.make_graph(nodes, "pose", inputs,
                              [helper.make_tensor_value_info("simcc_x", TensorProto.FLOAT, sx.shape),
                               helper.make_tensor_value_info("simcc_y", TensorProto.FLOAT, sy.shape)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)


@pytest.mark.pose
def test_rtmlib_backend_finds_every_person_and_never_invents_one(tmp_path) -> None:
    pytest.importorskip("rtmlib")
    pytest.importorskip("onnxruntime")
    from portraitcraft.config import VisionConfig
    from portraitcraft.tools.vision.pose import detect_persons

    pose = tmp_path / "pose.onnx"
    _pose_model(pose)
    two = tmp_path / "two.onnx"
    # a 640x640 input holds a 640x480 image at ratio 1: boxes are in image pixels
    _det_model(two, [[40, 40, 240, 440, 0.9], [400, 100, 500, 300, 0.8], [10, 10, 20, 20, 0.1]])
    cfg = VisionConfig(pose_backend="rtmlib", rtmlib_det_model=str(two), rtmlib_pose_model=str(pose))
    image = np.zeros((480, 640, 3), np.uint8)
    persons = detect_persons(image, cfg)
    assert len(persons) == 2  # the 0.1-score box is below person_threshold
    big = persons[0]
    assert big.box == pytest.approx((40 / 640, 40 / 480, 240 / 640, 440 / 480), abs=1e-3)
    nose = big.keypoints["nose"]
    assert nose[:2] == pytest.approx((140 / 640, 240 / 480), abs=0.01) and nose[2] == pytest.approx(0.9)
    none = tmp_path / "none.onnx"
    _det_model(none, [[40, 40, 240, 440, 0.2]])
    cfg_none = cfg.model_copy(update={"rtmlib_det_model": str(none)})
    assert detect_persons(image, cfg_none) == []


def test_rtmlib_backend_needs_local_files(tmp_path) -> None:
    from portraitcraft.config import VisionConfig
    from portraitcraft.errors import InputError
    from portraitcraft.tools.vision.pose import detect_persons

    with pytest.raises(InputError, match="rtmlib_det_model"):
        detect_persons(np.zeros((8, 8, 3), np.uint8), VisionConfig(pose_backend="rtmlib"))
    with pytest.raises(InputError, match="no such file"):
        detect_persons(np.zeros((8, 8, 3), np.uint8), VisionConfig(
            pose_backend="rtmlib", rtmlib_det_model=str(tmp_path / "x.onnx"), rtmlib_pose_model="y.onnx"))
