"""Track 1 scoring against scipy on tied random data, hand-computed cases, and the CLI's --json contract."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from portraitcraft.cli import app
from portraitcraft.errors import DataError
from portraitcraft.eval.track1 import composite_score, score_track1
from portraitcraft.schemas import ATTRIBUTES, Track1Prediction, Track1TestItem
from portraitcraft.submission import write_track1_submission

CODES = ("A", "B", "C")


def gt_item(name: str, codes: list[str], total: float, answer: str = "A") -> dict[str, Any]:
    return {
        "image_path": f"images_03/{name}",
        "criteria": {a: {"level": c} for a, c in zip(ATTRIBUTES, codes, strict=True)},
        "total_score": total,
        "question": f"Question about {name}?",
        "options": {k: f"option {k}" for k in "ABCD"},
        "answer": answer,
    }


def pred_item(name: str, codes: list[str], total: Any, answer: Any = "A") -> dict[str, Any]:
    return {"image_path": name, "criteria": {a: {"level": c} for a, c in zip(ATTRIBUTES, codes, strict=True)},
            "total_score": total, "answer": answer}


def write(path: Path, records: list[Any]) -> Path:
    path.write_text(json.dumps(records))
    return path


def test_random_tied_data_matches_scipy_and_direct_counts(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    n = 120
    names = [f"unsplash_people_{i:05d}_{i:012x}.jpg" for i in range(n)]
    gt_codes = rng.choice(CODES, size=(n, 13))
    pred_codes = np.where(rng.random((n, 13)) < 0.6, gt_codes, rng.choice(CODES, size=(n, 13)))
    gt_total = rng.integers(40, 50, size=n).astype(float)  # 10 distinct values: many ties
    pred_total = np.round(gt_total + rng.normal(0, 3, size=n))  # rounded: ties on this side too
    gt_ans = rng.choice(list("ABCD"), size=n)
    pred_ans = np.where(rng.random(n) < 0.7, gt_ans, rng.choice(list("ABCD"), size=n))
    gt = [gt_item(names[i], list(gt_codes[i]), gt_total[i], gt_ans[i]) for i in range(n)]
    preds = [pred_item(names[i], list(pred_codes[i]), pred_total[i], pred_ans[i]) for i in range(n)]
    random.Random(1).shuffle(preds)  # joined by basename, not by position
    pred_file = tmp_path / "p.jsonl"
    pred_file.write_text("\n".join(json.dumps(p) for p in preds) + "\n")
    report = score_track1(pred_file, write(tmp_path / "gt.json", gt))

    assert len(set(gt_total)) < n and len(set(pred_total)) < n
    assert report.srcc == pytest.approx(stats.spearmanr(pred_total, gt_total).statistic, abs=1e-12)
    assert report.plcc == pytest.approx(stats.pearsonr(pred_total, gt_total).statistic, abs=1e-12)
    correct_labels = sum(pred_codes[i, j] == gt_codes[i, j] for i in range(n) for j in range(13))
    assert report.level_acc == pytest.approx(correct_labels / (n * 13))
    assert report.qa_acc == pytest.approx(float(np.mean(pred_ans == gt_ans)))
    expected = (report.srcc + report.plcc + report.level_acc + report.qa_acc) / 4
    assert report.composite == pytest.approx(expected)
    assert report.n == report.n_matched == n and not report.missing and not report.extra and not report.warnings


def test_composite_on_hand_computed_values() -> None:
    assert composite_score(0.5, 0.7, 0.6, 0.8) == pytest.approx(0.65)
    assert composite_score(0.5, 0.7, 0.6, None) == pytest.approx(0.6)
    # The Track 1 winner's published metrics give its published composite (0.8986) to rounding.
    assert composite_score(0.923, 0.922, 0.765, 0.985) == pytest.approx(0.8986, abs=5e-4)


def test_unusable_and_missing_predictions_are_refused_by_default(tmp_path: Path) -> None:
    all_b = ["B"] * 13
    gt = [gt_item("a.jpg", all_b, 10, "A"), gt_item("b.jpg", all_b, 20, "B"),
          gt_item("c.jpg", all_b, 30, "C"), gt_item("d.jpg", all_b, 40, "D")]
    preds = [
        pred_item("a.jpg", all_b, 12, "A"),
        pred_item("b.jpg", ["Z", *all_b[1:]], 25, "C"),     # an invalid level
        pred_item("c.jpg", ["C"] * 13, 20, "x"),            # an invalid answer
        pred_item("zz_extra.jpg", all_b, 50, "A"),          # matches nothing (harmless)
    ]
    with pytest.raises(DataError) as info:
        score_track1(write(tmp_path / "p.json", preds), write(tmp_path / "gt.json", gt))
    text = str(info.value)
    assert "2 unusable prediction(s) and 1 item(s) without a prediction" in text and "--allow-invalid" in text
    assert "(b.jpg): levels.Color Harmony" in text and "(c.jpg): answer" in text
    assert "images_03/d.jpg: no prediction" in text


def test_allow_invalid_fills_like_the_submission_writer(tmp_path: Path) -> None:
    all_b = ["B"] * 13
    gt = [gt_item("a.jpg", all_b, 10, "A"), gt_item("b.jpg", ["A"] * 13, 20, "B"),
          gt_item("c.jpg", all_b, 30, "C"), gt_item("d.jpg", all_b, 40, "A")]
    preds = [
        pred_item("a.jpg", all_b, 12, "A"),
        pred_item("b.jpg", ["Z", *all_b[1:]], 25, "C"),
        pred_item("c.jpg", ["C"] * 13, 34, "x"),
        pred_item("zz_extra.jpg", all_b, 50, "A"),
    ]
    report = score_track1(write(tmp_path / "p.json", preds), write(tmp_path / "gt.json", gt), allow_invalid=True)
    assert report.n == 4 and report.n_matched == 1 and report.n_filled == 3
    assert report.filled == ["images_03/b.jpg", "images_03/c.jpg", "images_03/d.jpg"]
    assert report.missing == ["images_03/d.jpg"] and report.extra == ["zz_extra.jpg"]
    # repaired FIELD BY FIELD (issue 21 item 16): b keeps its total 25, answer C and 12 levels (only the bad
    # level -> B); c keeps its levels and total 34 (answer -> A); d (no record) gets all B, answer A and the
    # median of the usable totals (12, 25, 34 -> 25)
    assert report.filled_fields == {"images_03/b.jpg": ["criteria.Color Harmony"],
                                    "images_03/c.jpg": ["answer"], "images_03/d.jpg": ["all"]}
    assert report.level_acc == pytest.approx((13 + 0 + 0 + 13) / (4 * 13))
    assert report.qa_acc == pytest.approx(2 / 4)
    assert report.srcc == pytest.approx(stats.spearmanr([12, 25, 34, 25], [10, 20, 30, 40]).statistic)
    assert any("3 of 4 items had unusable or missing fields" in w for w in report.warnings)


def test_bad_totals_never_raise_the_score(tmp_path: Path) -> None:
    """The issue's case: NaN/Infinity/string totals used to be dropped from SRCC/PLCC, lifting them."""
    totals = [10, 20, 30, 40, 50, 60]
    guesses: list[Any] = [60, float("nan"), float("inf"), "high", 50, 58]
    gt = [gt_item(f"{i}.jpg", ["B"] * 13, t, "A") for i, t in enumerate(totals)]
    raw = [pred_item(f"{i}.jpg", ["B"] * 13, g, "A") for i, g in enumerate(guesses)]
    pred_file = tmp_path / "p.json"
    pred_file.write_text(json.dumps(raw))  # json writes NaN / Infinity literals, as the file had
    with pytest.raises(DataError, match=r"3 unusable prediction\(s\)"):
        score_track1(pred_file, write(tmp_path / "gt.json", gt))
    filled = score_track1(pred_file, tmp_path / "gt.json", allow_invalid=True)
    usable_only = score_track1([raw[i] for i in (0, 4, 5)], [gt[i] for i in (0, 4, 5)])
    assert filled.n == 6 and filled.n_filled == 3
    assert filled.srcc < usable_only.srcc and filled.composite < usable_only.composite
    # scoring the file equals scoring the zip `data submit track1 --allow-missing` writes from it
    template = [Track1TestItem.model_validate(r | {"criteria": {a: {"level": "x"} for a in ATTRIBUTES},
                                                   "answer": "x", "total_score": 0}) for r in gt]
    from portraitcraft.predictions import read_track1_predictions

    zip_path = tmp_path / "sub.zip"
    write_track1_submission(template, read_track1_predictions(pred_file).by_key.values(), zip_path,
                            allow_missing=True)
    assert score_track1(zip_path, tmp_path / "gt.json").composite == pytest.approx(filled.composite)


def test_a_backslash_path_scores_and_submits_the_same(tmp_path: Path) -> None:
    gt = [gt_item(f"{i}.jpg", ["B"] * 13, 10 * i, "A") for i in range(3)]
    preds = [pred_item(f"images_03\\{i}.jpg", ["B"] * 13, 11 * i, "A") for i in range(3)]
    report = score_track1(write(tmp_path / "p.json", preds), write(tmp_path / "gt.json", gt))
    assert report.n_matched == 3 and report.n_filled == 0
    template = [Track1TestItem.model_validate(r | {"criteria": {a: {"level": "x"} for a in ATTRIBUTES},
                                                   "answer": "x", "total_score": 0}) for r in gt]
    from portraitcraft.predictions import read_track1_predictions

    sub = write_track1_submission(template, read_track1_predictions(tmp_path / "p.json").by_key.values(),
                                  tmp_path / "s.zip")
    assert sub.n_fallback == 0


def test_constant_prediction_scores_zero_with_a_warning(tmp_path: Path) -> None:
    gt = [gt_item(f"{i}.jpg", ["A"] * 13, 10 * i) for i in range(5)]
    preds = [pred_item(f"{i}.jpg", ["A"] * 13, 55) for i in range(5)]
    report = score_track1(write(tmp_path / "p.json", preds), write(tmp_path / "gt.json", gt))
    assert report.srcc == 0.0 and report.plcc == 0.0
    assert report.level_acc == 1.0 and report.qa_acc == 1.0
    assert report.composite == pytest.approx(0.5)
    assert sum("constant" in w for w in report.warnings) == 2


def test_train_format_ground_truth_maps_scores_to_levels_and_has_no_qa(tmp_path: Path) -> None:
    scores = [4.99, 5.0, 6.9, 7.0, 10.0, 0.0, 5.5, 6.99, 7.1, 3.0, 8.0, 9.5, 1.0]
    expected = ["A", "B", "B", "C", "C", "A", "B", "B", "C", "A", "C", "C", "A"]
    gt = [{"image_path": f"{i}.jpg", "total_score": 10 * i,
           "criteria": {a: {"score": s, "reason": "r"} for a, s in zip(ATTRIBUTES, scores, strict=True)}}
          for i in range(3)]
    preds = [
        pred_item("0.jpg", expected, 1),
        {"image_path": "1.jpg", "levels": dict(zip(ATTRIBUTES, ["Poor"] * 13, strict=True)), "total_score": 2},
        {"image_path": "2.jpg", "total_score": 3,
         "criteria": {a: {"score": s} for a, s in zip(ATTRIBUTES, scores, strict=True)}},
    ]
    report = score_track1(write(tmp_path / "p.json", preds),
                          write(tmp_path / "train.json", gt))
    assert report.qa_acc is None and "qa_acc is null" in report.composite_over
    assert report.level_acc == pytest.approx((13 + expected.count("A") + 13) / 39)
    assert report.composite == pytest.approx((report.srcc + report.plcc + report.level_acc) / 3)


def test_submission_zip_and_per_attribute_confusion(tmp_path: Path) -> None:
    gt_records = [gt_item("a.jpg", ["A"] * 13, 10, "B"), gt_item("b.jpg", ["C"] * 13, 90, "C"),
                  gt_item("c.jpg", ["B"] * 13, 50, "A")]
    template = [Track1TestItem.model_validate(r | {"criteria": {a: {"level": "x"} for a in ATTRIBUTES},
                                                   "answer": "x", "total_score": 0}) for r in gt_records]
    first = ["B"] + ["A"] * 12
    preds = [Track1Prediction(image_path="a.jpg", levels=dict(zip(ATTRIBUTES, first, strict=True)),
                              total_score=12.4, answer="B"),
             Track1Prediction(image_path="b.jpg", levels=dict.fromkeys(ATTRIBUTES, "C"), total_score=80, answer="C"),
             Track1Prediction(image_path="c.jpg", levels=dict.fromkeys(ATTRIBUTES, "C"), total_score=95, answer="D")]
    zip_path = tmp_path / "submission.zip"
    write_track1_submission(template, preds, zip_path)
    report = score_track1(zip_path, write(tmp_path / "gt.json", gt_records), per_attribute=True)
    assert report.per_attribute is not None
    color = report.per_attribute["Color Harmony"]
    assert color.confusion == [[0, 1, 0], [0, 0, 1], [0, 0, 1]]
    assert color.accuracy == pytest.approx(1 / 3)
    sharp = report.per_attribute["Sharpness"]
    assert sharp.confusion == [[1, 0, 0], [0, 0, 1], [0, 0, 1]] and sharp.accuracy == pytest.approx(2 / 3)
    assert report.qa_acc == pytest.approx(2 / 3)
    assert report.srcc == pytest.approx(0.5)  # submission totals 12, 80, 95 against 10, 90, 50


def test_template_as_ground_truth_is_a_clear_error(tmp_path: Path) -> None:
    record = gt_item("a.jpg", ["x"] * 13, 0, "x")
    with pytest.raises(DataError, match="placeholder"):
        score_track1(write(tmp_path / "p.json", []), write(tmp_path / "gt.json", [record]))


def test_cli_json_has_the_contract_keys(tmp_path: Path) -> None:
    gt = [gt_item(f"{i}.jpg", ["B"] * 13, 10 * i, "A") for i in range(4)]
    preds = [pred_item(f"{i}.jpg", ["B"] * 13, 11 * i, "A") for i in range(3)]
    res = CliRunner().invoke(app, ["eval", "track1", str(write(tmp_path / "p.json", preds)),
                                   str(write(tmp_path / "gt.json", gt)), "--json", "--per-attribute",
                                   "--allow-invalid"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert {"srcc", "plcc", "level_acc", "qa_acc", "composite", "n"} <= set(out)
    assert out["n"] == 4 and out["missing"] == ["images_03/3.jpg"] and out["n_filled"] == 1
    assert out["level_acc"] == 1.0 and out["qa_acc"] == 1.0  # the fallback (B, A) happens to be right here
    assert out["per_attribute"]["Subject Integrity"]["confusion"] == [[0, 0, 0], [0, 4, 0], [0, 0, 0]]
    table = CliRunner().invoke(app, ["eval", "track1", str(tmp_path / "p.json"), str(tmp_path / "gt.json"),
                                     "--allow-invalid"])
    assert table.exit_code == 0 and "composite" in table.output and "1 filled" in table.output


def test_cli_refuses_unusable_predictions_with_exit_2(tmp_path: Path) -> None:
    from console_script import run_script

    gt = [gt_item(f"{i}.jpg", ["B"] * 13, 10 * i, "A") for i in range(4)]
    good = json.dumps(pred_item("0.jpg", ["B"] * 13, 1, "A"))
    lines = [
        good,
        '{"image_path": "1.jpg", "criteria": ',                           # cut off: malformed JSON line
        json.dumps(pred_item("2.jpg", ["B"] * 11 + ["NOT_RES", "x"], None, "E")),
        json.dumps(pred_item("3.jpg", ["B"] * 13, 30, "A")),
    ]
    pred_file = tmp_path / "p.jsonl"
    pred_file.write_text("\n".join(lines) + "\n")
    run = run_script("eval", "track1", pred_file, write(tmp_path / "gt.json", gt))
    assert run.code == 2, run.output
    assert "malformed JSON on line 2" in run.stderr and "images_03/1.jpg: no prediction" in run.stderr
    for field_name in ("levels.Appropriateness of Negative Space", "levels.Subject Integrity", "total_score",
                       "answer"):
        assert f"(2.jpg): {field_name}:" in run.stderr
    ok = run_script("eval", "track1", pred_file, tmp_path / "gt.json", "--allow-invalid", "--json")
    assert ok.code == 0, ok.output
    out = json.loads(ok.stdout)
    assert out["n_filled"] == 2 and out["filled"] == ["images_03/1.jpg", "images_03/2.jpg"]


def test_unrecognisable_ground_truth_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"ground truth .*gt\.json: cannot tell the file kind"):
        score_track1(write(tmp_path / "p.json", []), write(tmp_path / "gt.json", [{"foo": 1}]))
