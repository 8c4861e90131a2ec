"""Vote aggregation on scripted view records, and calibration on synthetic validation sets."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from portraitcraft.agents.assessor_calibration import (
    DEFAULT_LINEAR,
    Calibration,
    CalibrationRow,
    cut_levels,
    fit_calibration,
    fit_linear,
    fit_thresholds,
    join_rows,
    level_accuracy,
)
from portraitcraft.agents.assessor_vote import VoteError, VoteSettings, majority, vote_qa, vote_track1
from portraitcraft.errors import DataError
from portraitcraft.schemas import ATTRIBUTES


def sample(overall: float, score: float | str, answer: str | None = "A", **per_attr: float | str) -> dict:
    criteria = {a: per_attr.get(a.split()[0].lower(), score) for a in ATTRIBUTES}
    out = {"overall": overall, "criteria": criteria}
    if answer is not None:
        out["answer"] = answer
    return out


def view(flip: bool, *samples: dict, expected: float | None = None, error: str | None = None) -> dict:
    return {"view": {"name": f"{'flip' if flip else 'orig'}", "flip": flip}, "samples": list(samples),
            "overall_expected": expected, "error": error}


def test_mean_and_trimmed_mean_overall() -> None:
    records = [view(False, sample(60, 6), sample(62, 6), sample(100, 6)), view(True, sample(58, 6), sample(60, 6))]
    mean = vote_track1(records, VoteSettings(overall="mean"))
    assert mean["total_score"] == pytest.approx((60 + 62 + 100 + 58 + 60) / 5)
    trimmed = vote_track1(records, VoteSettings(overall="trimmed_mean", trim=0.2))
    assert trimmed["total_score"] == pytest.approx((60 + 60 + 62) / 3)  # 58 and 100 cut
    assert trimmed["steps"]["overall"] == {"method": "trimmed_mean", "trim": 0.2, "values": 5}


def test_logprob_overall_uses_the_expected_scores_and_falls_back() -> None:
    records = [view(False, sample(10, 6), expected=70.0), view(True, sample(20, 6), expected=80.0)]
    vote = vote_track1(records, VoteSettings(overall="logprob"))
    assert vote["total_score"] == pytest.approx(75.0)
    assert vote["steps"]["overall"]["method"] == "logprob"
    no_logprobs = vote_track1([view(False, sample(10, 6)), view(True, sample(20, 6))], VoteSettings(overall="logprob"))
    assert no_logprobs["total_score"] == pytest.approx(15.0)
    assert no_logprobs["steps"]["overall"]["fallback_from"] == "logprob"


def test_levels_by_vote_and_by_averaged_thresholds_differ_as_scripted() -> None:
    # Color Harmony scores 4.9, 4.9, 9.9: the vote says Poor (2 of 3), the mean 6.57 says Medium
    records = [view(False, sample(50, 6, color=4.9), sample(50, 6, color=4.9), sample(50, 6, color=9.9))]
    voted = vote_track1(records, VoteSettings(level_mode="vote"))
    averaged = vote_track1(records, VoteSettings(level_mode="thresholds"))
    assert voted["levels"]["Color Harmony"] == "A"
    assert voted["level_votes"]["Color Harmony"] == {"Poor": 2, "Medium": 0, "Good": 1}
    assert averaged["levels"]["Color Harmony"] == "B"
    assert averaged["attribute_means"]["Color Harmony"] == pytest.approx((4.9 + 4.9 + 9.9) / 3)
    assert voted["levels"]["Sharpness"] == averaged["levels"]["Sharpness"] == "B"  # 6.0 everywhere


def test_level_answers_vote_and_tie_goes_to_the_level_nearest_the_mean() -> None:
    records = [view(False, sample(50, "Good"), sample(50, "Good"), sample(50, "Poor"))]
    assert vote_track1(records, VoteSettings(level_mode="vote"))["levels"]["Sharpness"] == "C"
    tie = [view(False, sample(50, "Good"), sample(50, "Medium"), sample(50, "Medium"), sample(50, "Good"),
                sample(50, "Poor"))]
    # Good 2, Medium 2: the mean midpoint (8+6+6+8+3)/5 = 6.2 is nearest Medium (6)
    assert vote_track1(tie, VoteSettings(level_mode="vote"))["levels"]["Sharpness"] == "B"


def test_calibrated_thresholds_change_the_cut() -> None:
    records = [view(False, sample(50, 6.5))]
    cal = Calibration({"Sharpness": (4.0, 6.0)})
    vote = vote_track1(records, VoteSettings(level_mode="thresholds"), cal)
    assert vote["levels"]["Sharpness"] == "C"  # 6.5 >= 6.0
    assert vote["levels"]["Color Harmony"] == "B"  # default 5/7
    assert vote["steps"]["levels"]["thresholds"] == "calibrated"


def test_vqa_vote_from_unflipped_views_only_and_fallback() -> None:
    records = [view(False, sample(50, 6, "B"), sample(50, 6, "B")),
               view(True, sample(50, 6, "C"), sample(50, 6, "C"), sample(50, 6, "C"))]
    assert vote_track1(records, VoteSettings(vqa_unflipped_only=True))["answer"] == "B"
    everything = vote_track1(records, VoteSettings(vqa_unflipped_only=False))
    assert everything["answer"] == "C"
    assert everything["answer_votes"] == {"B": 2, "C": 3}
    broken_unflipped = [view(False, error="VLMRequestError: refused"), records[1]]
    fallback = vote_track1(broken_unflipped, VoteSettings(vqa_unflipped_only=True))
    assert fallback["answer"] == "C"
    assert fallback["steps"]["answer"]["views"] == "all (no unflipped answer)"
    assert fallback["n_views"] == 2 and fallback["n_views_ok"] == 1


def test_invalid_samples_are_left_out_and_no_valid_sample_is_an_error() -> None:
    records = [view(False, sample(40, 4), {"error": "the reply is empty"}, sample(60, 6))]
    vote = vote_track1(records, VoteSettings())
    assert vote["n_samples"] == 3 and vote["n_valid"] == 2
    assert vote["total_score"] == pytest.approx(50)
    with pytest.raises(VoteError, match="the reply is empty"):
        vote_track1([view(False, {"error": "the reply is empty"}), view(True, error="timeout")], VoteSettings())


def test_consistency_step_pulls_towards_the_linear_relation() -> None:
    records = [view(False, sample(20, 6))]  # sum of sub-scores 78 -> 0.86 * 78 - 8.92 = 58.16
    target = DEFAULT_LINEAR[0] * 78 + DEFAULT_LINEAR[1]
    off = vote_track1(records, VoteSettings(linear_prior=0.0))
    half = vote_track1(records, VoteSettings(linear_prior=0.5))
    assert off["total_score"] == pytest.approx(20) and "consistency" not in off["steps"]
    assert half["total_score"] == pytest.approx(0.5 * 20 + 0.5 * target)
    assert half["steps"]["consistency"]["before"] == pytest.approx(20)
    fitted = vote_track1(records, VoteSettings(linear_prior=1.0), Calibration(linear=(1.0, 2.0)))
    assert fitted["total_score"] == pytest.approx(80.0)


def test_majority_and_qa_votes() -> None:
    assert majority(["C", "B", "B", "C"])[0] == "C"  # a tie goes to the first seen
    records = [view(False, {"answer": ["A", "C"]}, {"answer": ["C", "A"]}, {"answer": ["A"]})]
    assert vote_qa(records, "multiple", VoteSettings())["answer"] == ["A", "C"]
    open_records = [view(False, {"answer": "Left side."}, {"answer": "left  side"}, {"answer": "the centre"})]
    assert vote_qa(open_records, "open", VoteSettings())["answer"] == "Left side."
    tf = [view(False, {"answer": False}), view(True, {"answer": True}, {"answer": True})]
    assert vote_qa(tf, "truefalse", VoteSettings(vqa_unflipped_only=True))["answer"] is False
    assert vote_qa(tf, "truefalse", VoteSettings(vqa_unflipped_only=False))["answer"] is True


# ---------------------------------------------------------------------------------------------- calibration


def test_fit_thresholds_finds_a_perfect_cut() -> None:
    rng = np.random.default_rng(0)
    scores = rng.uniform(0, 10, 500)
    truth = cut_levels(scores, (3.7, 8.2))
    (t1, t2), acc = fit_thresholds(scores, truth)
    assert acc == 1.0
    assert cut_levels(scores, (t1, t2)).tolist() == truth.tolist()
    assert 3.5 <= t1 <= 3.8 and 8.0 <= t2 <= 8.3


def synthetic_rows(n: int, seed: int, shifts: dict[str, tuple[float, float]]) -> list[CalibrationRow]:
    """Predicted means = true latent score + noise; true levels cut at SHIFTED thresholds (not 5 / 7)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        means, levels = {}, {}
        for attr in ATTRIBUTES:
            latent = rng.uniform(1, 9.5)
            means[attr] = latent + rng.gauss(0, 0.3)
            levels[attr] = int(cut_levels(np.array([latent]), shifts[attr])[0])
        total = 0.9 * sum(means.values()) - 12 + rng.gauss(0, 1)
        rows.append(CalibrationRow(f"img_{i}.jpg", means, levels, total))
    return rows


def test_calibration_raises_accuracy_on_thresholds_shifted_from_5_and_7() -> None:
    rng = random.Random(1)
    shifts = {a: (5 + rng.uniform(-1.5, 1.5), 7 + rng.uniform(-1.2, 1.5)) for a in ATTRIBUTES}
    validation = synthetic_rows(600, seed=2, shifts=shifts)
    test = synthetic_rows(400, seed=3, shifts=shifts)
    cal = fit_calibration(validation)
    before, after = level_accuracy(test, None), level_accuracy(test, cal)
    assert after > before + 0.05, (before, after)
    assert after > 0.9
    for attr in ATTRIBUTES:
        low, high = cal.thresholds_for(attr)
        assert abs(low - shifts[attr][0]) < 0.4 and abs(high - shifts[attr][1]) < 0.4
    (a, _), r2 = cal.linear, cal.r2
    assert a == pytest.approx(0.9, abs=0.05) and r2 is not None and r2 > 0.9
    assert cal.report["fit_accuracy_calibrated"] > cal.report["fit_accuracy_default"]
    with_holdout = fit_calibration(validation, holdout=0.25)
    assert with_holdout.report["n_holdout"] == 150
    assert with_holdout.report["holdout_accuracy_calibrated"] > with_holdout.report["holdout_accuracy_default"]


def test_calibration_file_round_trip_and_errors(tmp_path: Path) -> None:
    cal = Calibration({"Sharpness": (4.2, 7.9)}, (0.9, -10.0), 0.95, 100)
    path = cal.save(tmp_path / "calib.json")
    again = Calibration.load(path)
    assert again.thresholds == {"Sharpness": (4.2, 7.9)} and again.linear == (0.9, -10.0)
    (tmp_path / "bad.json").write_text(json.dumps({"thresholds": {"Sharpness": [8, 4]}}))
    with pytest.raises(DataError, match="not ordered"):
        Calibration.load(tmp_path / "bad.json")
    (tmp_path / "unknown.json").write_text(json.dumps({"thresholds": {"Hue": [4, 8]}}))
    with pytest.raises(DataError, match="unknown attribute"):
        Calibration.load(tmp_path / "unknown.json")
    with pytest.raises(DataError, match="does not exist"):
        Calibration.load(tmp_path / "missing.json")


def test_fit_linear_degenerate_input_keeps_the_default() -> None:
    assert fit_linear([50.0, 50.0], [30.0, 40.0]) == (DEFAULT_LINEAR, None)


def test_join_rows_with_train_format_truth() -> None:
    truth = [{"image_path": "shard/a.jpg", "total_score": 61,
              "criteria": {attr: {"score": 7.5, "reason": ""} for attr in ATTRIBUTES}}]
    means = dict.fromkeys(ATTRIBUTES, 6.0)
    votes = [{"image_path": "a.jpg", "status": "finished", "vote": {"attribute_means": means}},
             {"image_path": "b.jpg", "status": "finished", "vote": {"attribute_means": means}},
             {"image_path": "c.jpg", "status": "failed", "vote": None}]
    rows, problems = join_rows(votes, truth)
    assert [r.key for r in rows] == ["a.jpg"]
    assert rows[0].truth_levels["Sharpness"] == 2 and rows[0].truth_total == 61
    assert len(problems) == 2 and "not in the ground truth" in problems[0]
    with pytest.raises(DataError, match="nothing to fit on"):
        fit_calibration([])


def test_fingerprint_changes_with_what_is_asked_not_with_how_it_is_voted() -> None:
    from portraitcraft.agents.views import build_views
    from portraitcraft.config import AssessorConfig
    from portraitcraft.graphs.understand import fingerprint

    def fp(**kw: object) -> str:
        cfg = AssessorConfig(**kw)
        return fingerprint(cfg, build_views(flip=cfg.flip, max_pixels=cfg.max_pixels, templates=cfg.templates,
                                            option_orders=cfg.option_orders))

    base = fp()
    assert fp(level_mode="vote", vqa_unflipped_only=False, linear_prior=0.5, overall="trimmed_mean") == base
    assert fp(calibration="calib.json") == base
    for changed in ({"model": "other"}, {"samples": 7}, {"flip": False}, {"templates": ["brief"]},
                    {"output": "levels"}, {"overall": "logprob"}, {"max_pixels": [1000]}):
        assert fp(**changed) != base, changed


def test_join_rows_joins_windows_and_posix_paths_on_one_item_key() -> None:
    truth = [{"image_path": "images_03\\a.jpg", "total_score": 61,
              "criteria": {attr: {"score": 7.5, "reason": ""} for attr in ATTRIBUTES}}]
    means = dict.fromkeys(ATTRIBUTES, 6.0)
    votes = [{"image_path": "images_03/a.jpg", "status": "finished", "vote": {"attribute_means": means}}]
    rows, problems = join_rows(votes, truth)
    assert problems == [] and [r.key for r in rows] == ["a.jpg"]
    windows_votes = [dict(votes[0], image_path="images_03\\a.jpg")]
    rows, problems = join_rows(windows_votes, [dict(truth[0], image_path="a.jpg")])
    assert problems == [] and [r.key for r in rows] == ["a.jpg"]
