from __future__ import annotations

import pytest
from pydantic import ValidationError

from portraitcraft.ids import safe_id
from portraitcraft.schemas import ATTRIBUTES, Level, Track1Prediction, Track1TestItem, Track2Spec, level_from_score


def test_thirteen_attributes_in_benchmark_order() -> None:
    assert len(ATTRIBUTES) == 13
    assert ATTRIBUTES[0] == "Color Harmony" and ATTRIBUTES[-1] == "Subject Integrity"
    assert ATTRIBUTES[6] == "Application of Classical Composition Principles"


@pytest.mark.parametrize(
    ("score", "code"), [(0.0, "A"), (4.9, "A"), (4.99, "A"), (5.0, "B"), (6.9, "B"), (7.0, "C"), (10.0, "C")]
)
def test_score_to_level_rule(score: float, code: str) -> None:
    assert level_from_score(score).code == code
    assert Level.from_score(score) is Level.from_code(code)


def test_level_codes_and_names() -> None:
    assert [lv.code for lv in Level] == ["A", "B", "C"]
    assert Level.from_code("medium") is Level.MEDIUM
    with pytest.raises(ValueError, match="not one of A, B, C"):
        Level.from_code("D")


def test_custom_thresholds() -> None:
    assert level_from_score(6.0, (4.5, 6.0)) is Level.GOOD


def _test_item(**kw) -> dict:
    item = {"image_path": "a.jpg", "criteria": {a: {"level": "x"} for a in ATTRIBUTES}, "total_score": 0,
            "question": "q", "options": {k: k.lower() for k in "ABCD"}, "answer": "x"}
    item.update(kw)
    return item


def test_template_placeholders_are_not_labels() -> None:
    item = Track1TestItem.model_validate(_test_item())
    assert item.is_placeholder
    assert all(v is None for v in item.levels.values())
    labelled = Track1TestItem.model_validate(
        _test_item(criteria={a: {"level": "C"} for a in ATTRIBUTES}, answer="B", total_score=70)
    )
    assert not labelled.is_placeholder and labelled.levels["Sharpness"] is Level.GOOD


def test_prediction_accepts_codes_and_needs_all_attributes() -> None:
    pred = Track1Prediction(image_path="a.jpg", levels={a: "B" for a in ATTRIBUTES}, total_score=55.4, answer="C")
    assert pred.levels["Sharpness"] is Level.MEDIUM
    with pytest.raises(ValidationError, match="missing attribute"):
        Track1Prediction(image_path="a.jpg", levels={"Sharpness": "B"}, total_score=1, answer="A")


def test_track2_spec_id_is_raw_and_its_name_is_file_safe() -> None:
    spec = Track2Spec(image_path="../../etc/passwd", content="c", composition="k")
    assert spec.id == "passwd" and spec.output_name == "passwd"
    odd = Track2Spec(image_path="a.jpg", content="c", composition="k", id="../../x")
    assert odd.id == "../../x"  # the identity is kept; the name is made once, where a path is built
    assert "/" not in safe_id(odd.id) and not safe_id(odd.id).startswith(".")
