"""Fitting the reading convention of "her left": votes from measured images, the policy stores it, the planner
reads with it. The real-model tests run the vision models on real photos (tests/vision_fixtures.py)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image, ImageOps
from typer.testing import CliRunner

from portraitcraft.agents.planner import Planner
from portraitcraft.agents.planner.canvas_policy import load_policy, rule_policy
from portraitcraft.agents.planner.convention_fit import fit_convention
from portraitcraft.cli.plan import app
from portraitcraft.config import PlannerConfig
from portraitcraft.schemas import SubjectFeatures, Track2Spec

OTHER = {"left": "right", "right": "left"}
runner = CliRunner()


def subject(**kw) -> SubjectFeatures:
    base = {"box": (0.2, 0.1, 0.8, 0.9), "centroid": (0.5, 0.5), "horizontal": "center", "vertical": "middle",
            "thirds_distance": 0.1, "headroom": 0.1}
    return SubjectFeatures(**{**base, **kw})


def write_set(folder: Path, rows: list[tuple[str, str]]) -> Path:
    """rows: (image name, description); a tiny image is written for each name that has no file yet."""
    items = []
    for name, text in rows:
        if not (folder / name).exists() and not name.startswith("missing"):
            Image.new("RGB", (8, 8)).save(folder / name)
        items.append({"image_path": name, "content_description": text, "composition_analysis": ""})
    path = folder / "train.json"
    path.write_text(json.dumps(items))
    return path


def test_votes_follow_the_measured_side(tmp_path: Path) -> None:
    """Descriptions say 'her left' where the image shows the viewer's left: loose wins, with its counts."""
    measured = {"a.png": "left", "b.png": "right", "c.png": "left", "d.png": "right", "e.png": "camera"}
    rows = [("a.png", "She faces the camera and looks to her left."),
            ("b.png", "She faces the camera and looks to her right."),
            ("c.png", "A man faces us and gazes toward his left."),
            ("d.png", "She is turned to her right, facing the window."),
            ("e.png", "He faces the camera and glances to his left."),
            ("f.png", "A woman looks to the viewer's left."),  # viewer's frame: not informative
            ("missing.png", "She looks to her left."),
            ("g.png", "He faces the camera and looks to his right.")]
    train = write_set(tmp_path, rows)

    def analyze(path: Path) -> SimpleNamespace:
        if path.name == "g.png":
            return SimpleNamespace(subject=None)
        side = measured[path.name]
        return SimpleNamespace(subject=subject(gaze=side, facing=side))

    report = fit_convention(train, tmp_path, analyze=analyze)
    assert report.value == "loose"
    assert (report.loose, report.strict, report.neither) == (4, 0, 1)
    assert (report.n_records, report.informative, report.missing, report.no_person) == (8, 7, 1, 1)
    assert report.per_key["gaze"] == {"strict": 0, "loose": 3, "neither": 1} and report.per_key["facing"]["loose"] == 1
    assert {e.id for e in report.examples} >= {"a", "b", "c", "d"}
    first = next(e for e in report.examples if e.id == "a")
    assert (first.strict, first.loose, first.measured, first.vote) == ("right", "left", "left", "loose")

    flipped = fit_convention(train, tmp_path, analyze=lambda p: SimpleNamespace(
        subject=None if p.name == "g.png" else subject(gaze=OTHER.get(measured[p.name], "camera"),
                                                       facing=OTHER.get(measured[p.name], "camera"))))
    assert flipped.value == "strict" and flipped.strict == 4 and flipped.loose == 0
    assert fit_convention(train, tmp_path, analyze=analyze, limit=2).informative == 2


def test_the_fitted_convention_drives_the_planner(tmp_path: Path) -> None:
    policy = rule_policy(PlannerConfig().aspect_ratios).model_copy(
        update={"convention": {"value": "loose", "strict": 1, "loose": 9}})
    path = policy.save(tmp_path / "p.json")
    assert load_policy(path).reading_convention == "loose"
    spec = Track2Spec(image_path="x.png", content="She faces the camera and looks to her left.", composition="")
    fitted = Planner(PlannerConfig(policy=str(path))).plan(spec)
    assert (fitted.convention, fitted.targets.gaze) == ("loose", "left")
    overridden = Planner(PlannerConfig(policy=str(path), convention="strict")).plan(spec)
    assert (overridden.convention, overridden.targets.gaze) == ("strict", "right")
    assert Planner().plan(spec).targets.gaze == "right"  # no fitted convention: strict


# ------------------------------------------------------------------------------------------------ real models

pytest.importorskip("mediapipe")
from vision_fixtures import analyzed, photos  # noqa: E402, F401  (fixtures)


@pytest.fixture(scope="module")
def sided(photos, analyzed, tmp_path_factory) -> tuple[Path, str, str]:  # noqa: F811
    """A real photo and its mirror in a folder, with a key the models measure as a side on it."""
    for name in ("camera", "grace_hopper", "astronaut"):
        got = analyzed(name).subject
        for key in ("gaze", "facing"):
            side = getattr(got, key) if got is not None else None
            if side in OTHER:
                folder = tmp_path_factory.mktemp("convention")
                with Image.open(photos[name]) as img:
                    img.save(folder / "plain.png")
                    ImageOps.mirror(img).save(folder / "mirror.png")
                return folder, key, side
    pytest.fail("the vision models measured no left/right gaze or facing on any real photo (test_vision_real "
                "expects the camera man to face the viewer's right)")


def test_real_models_measure_the_convention(sided) -> None:
    folder, key, side = sided
    verb = "looks to" if key == "gaze" else "is turned to"
    # written the loose way: "his <side as the viewer sees it>"; the mirror shows the other side
    rows = [("plain.png", f"He faces the camera but {verb} his {side}."),
            ("mirror.png", f"He faces the camera but {verb} his {OTHER[side]}.")]
    loose_set = write_set(folder, rows)
    report = fit_convention(loose_set, folder)
    assert report.analysed == 2 and report.no_person == 0
    assert report.value == "loose" and report.loose >= 1 and report.loose > report.strict

    result = runner.invoke(app, ["fit-convention", str(loose_set), "--images", str(folder),
                                 "--out", str(folder / "policy.json"), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["value"] == "loose" and data["policy"] == str(folder / "policy.json")
    stored = load_policy(folder / "policy.json")
    assert stored.reading_convention == "loose" and stored.convention["loose"] == report.loose

    rows = [("plain.png", f"He faces the camera but {verb} his {OTHER[side]}."),
            ("mirror.png", f"He faces the camera but {verb} his {side}.")]
    strict_report = fit_convention(write_set(folder, rows), folder)
    assert strict_report.value == "strict" and strict_report.strict > strict_report.loose
