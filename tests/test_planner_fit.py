"""Fitting the canvas policy on a synthetic train set whose image sizes follow its descriptions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from planner_synthetic import SyntheticSet, make_synthetic_set

from portraitcraft.agents.planner.canvas_policy import load_policy, rule_policy
from portraitcraft.agents.planner.plan_fit import (
    FitSettings,
    fit_policy,
    image_size,
    nearest_class,
    read_train_set,
    report_of,
    split_indices,
)
from portraitcraft.config import PlannerConfig
from portraitcraft.errors import InputError

RATIOS = PlannerConfig().aspect_ratios
SETTINGS = FitSettings(maxiter=120, holdout=0.25, seed=1)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> SyntheticSet:
    return make_synthetic_set(tmp_path_factory.mktemp("synth"), 400, seed=3, n_missing=4, n_corrupt=3)


@pytest.fixture(scope="module")
def fitted(synthetic: SyntheticSet):
    return fit_policy(read_train_set(synthetic.train_json, synthetic.images_dir), rule_policy(RATIOS), SETTINGS)


def test_train_set_reads_real_image_sizes(synthetic: SyntheticSet) -> None:
    ts = read_train_set(synthetic.train_json, synthetic.images_dir)
    assert ts.n_records == 400 and len(ts.texts) == 400 - 4 - 3
    usable = [r for r, p in zip(synthetic.ratios, json.loads(synthetic.train_json.read_text()), strict=True)
              if p["image_path"] not in synthetic.missing + synthetic.corrupt]
    classes = sorted(set(RATIOS))
    # sizes jitter by a pixel, yet every image snaps back to the class it was drawn for
    assert not np.allclose(ts.ratios, usable)
    assert nearest_class(ts.ratios, classes).tolist() == nearest_class(usable, classes).tolist()


def test_missing_and_corrupt_images_are_counted_and_listed(fitted, synthetic: SyntheticSet) -> None:
    report = report_of(fitted)
    assert sorted(i.image_path for i in report.missing) == sorted(synthetic.missing)
    assert sorted(i.image_path for i in report.unreadable) == sorted(synthetic.corrupt)
    assert all("not found" in i.problem for i in report.missing)
    assert all("unreadable image" in i.problem for i in report.unreadable)
    assert report.n_records == 400 and report.n_used == 393
    assert report.n_train + report.n_holdout == 393 and report.n_holdout == round(393 * 0.25)


def test_fitted_policy_beats_always_square_on_held_out_items(fitted) -> None:
    report = report_of(fitted)
    held = report.holdout
    assert held["fitted"].n == report.n_holdout
    assert held["fitted"].accuracy > held["square"].accuracy + 0.25
    assert held["fitted"].mean_log_error < held["square"].mean_log_error
    assert fitted.method == "fitted" and fitted.classes == rule_policy(RATIOS).classes
    assert sum(report.class_counts.values()) == report.n_train
    assert report.fitted_phrases > 0 and report.generations > 0


def test_fit_changes_weights_and_square_score_matches_class_share(fitted, synthetic: SyntheticSet) -> None:
    rule = rule_policy(RATIOS)
    changed = [p for p in rule.weights if fitted.weights[p] != rule.weights[p]]
    assert changed
    report = report_of(fitted)
    share = report.class_counts["1:1"] / report.n_train
    assert report.train["square"].accuracy == pytest.approx(share)


def test_fitted_policy_file_round_trips_and_explains(fitted, tmp_path: Path) -> None:
    path = fitted.save(tmp_path / "policy.json")
    again = load_policy(path)
    assert again.method == "fitted" and again.fit == fitted.fit
    canvas = again.choose("She is shown full-body, head to toe, in a vertical frame.", long_side=1024, multiple=16)
    assert canvas.policy == "fitted" and canvas.orientation == "portrait"
    assert {e.phrase for e in canvas.evidence} >= {"full body", "head to toe", "vertical frame"}
    assert canvas.reasons[-1].startswith("fitted policy -> ")


def test_labels_come_from_the_images_not_the_text(synthetic: SyntheticSet, tmp_path: Path) -> None:
    """Same descriptions, every image rewritten square: the fit sees only square targets."""
    images = tmp_path / "square_images"
    for path in synthetic.images_dir.rglob("*.jpg"):
        target = images / path.relative_to(synthetic.images_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (10, 10)).save(target)
    policy = fit_policy(read_train_set(synthetic.train_json, images), rule_policy(RATIOS),
                        FitSettings(maxiter=40, holdout=0.25))
    report = report_of(policy)
    assert report.class_counts["1:1"] == report.n_train
    assert report.holdout["square"].accuracy == 1.0
    assert report.holdout["fitted"].accuracy > report.holdout["rule"].accuracy + 0.3


def test_invalid_records_are_listed_not_fatal(tmp_path: Path) -> None:
    synth = make_synthetic_set(tmp_path, 30, seed=5)
    records = json.loads(synth.train_json.read_text())
    del records[2]["content_description"]
    records[5] = "not an object"
    synth.train_json.write_text(json.dumps(records))
    ts = read_train_set(synth.train_json, synth.images_dir)
    assert len(ts.texts) == 28
    assert sorted(i.index for i in ts.invalid) == [2, 5]
    assert any("content" in i.problem for i in ts.invalid)


def test_too_few_usable_items_is_an_input_error(tmp_path: Path) -> None:
    synth = make_synthetic_set(tmp_path, 3, n_missing=2)
    with pytest.raises(InputError, match="need at least 2 train items"):
        fit_policy(read_train_set(synth.train_json, synth.images_dir), rule_policy(RATIOS))


def test_image_size_reads_header_and_rejects_non_images(tmp_path: Path) -> None:
    Image.new("RGB", (7, 3)).save(tmp_path / "a.png")
    assert image_size(tmp_path / "a.png") == (7, 3)
    (tmp_path / "b.jpg").write_bytes(b"")
    with pytest.raises(OSError):
        image_size(tmp_path / "b.jpg")


def test_split_is_seeded_and_disjoint() -> None:
    train, held = split_indices(50, 0.2, seed=7)
    assert len(held) == 10 and not set(train) & set(held) and len(train) + len(held) == 50
    again = split_indices(50, 0.2, seed=7)
    assert train.tolist() == again[0].tolist() and held.tolist() == again[1].tolist()
    assert split_indices(50, 0.2, seed=8)[1].tolist() != held.tolist()


def test_strong_entries_are_kept_only_where_they_beat_the_weak_cues() -> None:
    from portraitcraft.agents.planner.plan_fit import fit_strong
    from portraitcraft.schemas import CompositionTargets

    base = rule_policy(RATIOS)
    classes = base.classes
    tall, wide = classes.index(2 / 3 if 2 / 3 in classes else 0.666667), classes.index(1.5)
    full = [CompositionTargets(crop_level="full-body")] * 10
    close = [CompositionTargets(crop_level="close-up")] * 10
    truth = np.array([tall] * 9 + [wide] + [wide] * 10)
    weak = np.array([wide] * 10 + [wide] * 10)  # the weak cues call everything wide
    strong, evidence = fit_strong(base, full + close, truth, weak, min_count=3)
    by_value = {e["value"]: e for e in evidence}
    assert by_value["full-body"]["n"] == 10 and by_value["full-body"]["share"] == 0.9
    assert by_value["full-body"]["result"] == "2:3 portrait"
    kept = {(r.key, r.value): r for r in strong}
    assert kept[("crop_level", "full-body")].aspect == classes[tall] and kept[("crop_level", "full-body")].n == 10
    assert ("crop_level", "close-up") not in kept  # its items are wide: the weak cues already get them
    assert by_value["close-up"]["result"].startswith("dropped")
    assert ("crop_level", "half-body") in kept  # seen fewer than min_count times: the rule's entry stays


def test_fit_report_has_the_orientation_distribution_and_strong_evidence(fitted) -> None:
    report = report_of(fitted)
    counts = report.orientation_counts
    assert set(counts) == {"true", "fitted", "rule"}
    assert all(sum(c.values()) == report.n_holdout for c in counts.values())
    assert {row["key"] for row in report.strong} == {"orientation", "people", "crop_level"}
    assert all("result" in row for row in report.strong)
