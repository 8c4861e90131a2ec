"""`portraitcraft plan fit|show` through typer's runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from planner_synthetic import make_synthetic_set
from typer.testing import CliRunner

from portraitcraft.agents.planner.canvas_policy import load_policy
from portraitcraft.cli.plan import app
from portraitcraft.errors import DataError, InputError

runner = CliRunner()


def test_show_json_has_the_contract_keys() -> None:
    result = runner.invoke(app, ["show", "A full-body shot of a dancer standing in a doorway.", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {"width", "height", "reasons"} <= set(data)
    assert isinstance(data["width"], int) and isinstance(data["height"], int)
    assert data["height"] > data["width"] and data["orientation"] == "portrait"
    assert all(isinstance(r, str) for r in data["reasons"])
    assert {e["phrase"] for e in data["evidence"]} >= {"full body", "standing", "doorway"}


def test_show_table_lists_words_and_weights() -> None:
    result = runner.invoke(app, ["show", "A long road along the coastline"])
    assert result.exit_code == 0, result.output
    assert "coastline" in result.stdout and "+0.80" in result.stdout
    assert "weak cues: +1.60" in result.stdout and "rule policy -> 1024x688 = 3:2 landscape" in result.stdout


def test_show_uses_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[planner]\nlong_side = 1584\nmultiple = 32\nprior_orientation = \"square\"\n")
    result = runner.invoke(app, ["show", "a plain portrait of a man", "--json", "--config", str(cfg)])
    data = json.loads(result.stdout)
    assert (data["width"], data["height"]) == (1600, 1600)  # 1584 rounded to the multiple of 32


def test_fit_then_show_with_the_fitted_policy(tmp_path: Path) -> None:
    synth = make_synthetic_set(tmp_path / "data", 120, seed=2, n_missing=2, n_corrupt=1)
    out = tmp_path / "policy.json"
    result = runner.invoke(app, ["fit", str(synth.train_json), "--images", str(synth.images_dir), "--out", str(out),
                                 "--maxiter", "30", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["policy"] == str(out) and out.exists()
    assert report["n_records"] == 120 and report["n_used"] == 117
    assert {i["image_path"] for i in report["missing"]} == set(synth.missing)
    assert {i["image_path"] for i in report["unreadable"]} == set(synth.corrupt)
    assert set(report["holdout"]) == {"fitted", "rule", "square"}
    assert load_policy(out).method == "fitted"

    shown = runner.invoke(app, ["show", "A wide landscape opens around the small figure.", "--policy", str(out),
                                "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["policy"] == "fitted"


def test_fit_table_output_lists_skipped_items(tmp_path: Path) -> None:
    synth = make_synthetic_set(tmp_path / "data", 40, seed=4, n_missing=1)
    result = runner.invoke(app, ["fit", str(synth.train_json), "--images", str(synth.images_dir),
                                 "--out", str(tmp_path / "p.json"), "--maxiter", "10"])
    assert result.exit_code == 0, result.output
    assert "held-out canvas accuracy" in result.stdout and "1 image missing" in result.stdout
    assert "held-out orientation, true: portrait" in result.stdout and "strong crop_level=full-body" in result.stdout
    assert synth.missing[0].split("/")[-1] in result.stdout


def test_user_errors_are_portraitcraft_errors(tmp_path: Path) -> None:
    result = runner.invoke(app, ["show", "x", "--policy", str(tmp_path / "nope.json")])
    assert isinstance(result.exception, InputError) and "nope.json" in str(result.exception)
    result = runner.invoke(app, ["fit", str(tmp_path / "none.json"), "--images", str(tmp_path), "--out", "p.json"])
    assert isinstance(result.exception, DataError) and "none.json" in str(result.exception)
    result = runner.invoke(app, ["fit", "x.json", "--images", str(tmp_path / "no_dir"), "--out", "p.json"])
    assert isinstance(result.exception, InputError) and "not a folder" in str(result.exception)
    result = runner.invoke(app, ["fit", "x.json", "--images", str(tmp_path), "--out", str(tmp_path)])
    assert isinstance(result.exception, InputError) and "is a folder" in str(result.exception)


@pytest.mark.parametrize("holdout", ["-0.1", "0.95"])
def test_fit_rejects_out_of_range_holdout(holdout: str, tmp_path: Path) -> None:
    result = runner.invoke(app, ["fit", "x.json", "--images", str(tmp_path), "--out", "p.json", "--holdout", holdout])
    assert result.exit_code == 2 and "holdout" in result.output


TARGET_KEYS = {"horizontal", "vertical", "crop_level", "facing", "gaze", "orientation", "people", "phrases"}


def test_show_json_has_the_targets() -> None:
    text = "A man stands on the left third, looking to his right (the viewer's left), shown from the waist up."
    result = runner.invoke(app, ["show", text, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data["targets"]) == TARGET_KEYS
    t = data["targets"]
    assert (t["horizontal"], t["gaze"], t["crop_level"], t["people"]) == ("left", "left", "half-body", 1)
    assert t["vertical"] is None and t["facing"] is None and t["orientation"] is None
    assert t["phrases"]["gaze"].startswith("looking to his right") and data["convention"] == "strict"
    assert data["decided_by"] == "crop_level=half-body" and data["orientation"] == "portrait"
    assert data["prompt"]["tokens"] == data["prompt"]["tokens_before"] > 20 and data["prompt"]["budget"] == 496


def test_show_json_has_the_target_evidence() -> None:
    text = ("A man stands on the left third, looking to his right (the viewer's left), shown from the waist up. "
            "Generous negative space sits above him.")
    data = json.loads(runner.invoke(app, ["show", text, "--json"]).stdout)
    ev = data["target_evidence"]
    assert set(ev) >= {"horizontal", "gaze", "crop_level", "people"} and data["enforce_confidence"] == 0.8
    for key, item in ev.items():
        assert {"value", "spans", "frame", "confidence", "enforced"} <= set(item), key
        assert item["value"] == data["targets"][key], key
        for start, end, section in item["spans"]:
            assert section == "content" and text[start:end], key  # plan show reads TEXT as the content
    assert ev["horizontal"]["spans"][0][:2] == [text.index("stands on the left"), text.index(" third")]
    assert ev["gaze"]["frame"] == "viewer" and ev["gaze"]["enforced"] is True
    raised = json.loads(runner.invoke(app, ["show", text, "--json", "--set", "vision.enforce_confidence=0.99"]).stdout)
    assert not any(item["enforced"] for item in raised["target_evidence"].values())


def test_show_table_marks_targets_not_enforced() -> None:
    result = runner.invoke(app, ["show", "A woman in a field. Negative space fills the right side of the frame."])
    assert result.exit_code == 0, result.output
    assert "not enforced" in result.output and "horizontal" in result.output


def test_show_convention_setting_changes_subject_frame_sides() -> None:
    text = "She faces the camera and looks to her left."
    strict = json.loads(runner.invoke(app, ["show", text, "--json"]).stdout)["targets"]["gaze"]
    loose = json.loads(runner.invoke(app, ["show", text, "--json", "--set", "planner.convention=loose"]).stdout)
    assert (strict, loose["targets"]["gaze"], loose["convention"]) == ("right", "left", "loose")


def test_show_reads_stdin_and_refuses_an_empty_description(capsys, monkeypatch) -> None:
    import io

    from cli_run import run_cli

    long = "A full-body portrait of a dancer in a doorway. " * 4000  # far past a command line's length
    monkeypatch.setattr("sys.stdin", io.StringIO(long))
    result = run_cli(["plan", "show", "-", "--json"], capsys, monkeypatch)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["targets"]["crop_level"] == "full-body"
    for given in (["plan", "show", ""], ["plan", "show", "   "], ["plan", "show", "-"]):
        monkeypatch.setattr("sys.stdin", io.StringIO("  \n"))
        result = run_cli(given, capsys, monkeypatch)
        assert result.exit_code != 0 and "is empty" in result.stderr, given
        assert result.stdout == ""
    result = run_cli(["plan", "show"], capsys, monkeypatch)
    assert result.exit_code != 0 and "--file" in result.stderr


def test_show_file_reports_the_orientation_distribution(tmp_path: Path) -> None:
    items = json.loads((Path(__file__).parent / "data" / "target_descriptions.json").read_text())["items"]
    track2 = tmp_path / "t2.json"
    track2.write_text(json.dumps([{"image_path": f"{i['id']}.jpg", "content_description": i["content_description"],
                                   "composition_analysis": i["composition_analysis"]} for i in items]))
    result = runner.invoke(app, ["show", "--file", str(track2), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["n"] == len(items) == sum(data["orientation"].values()) == len(data["items"])
    assert data["orientation"]["portrait"] > data["orientation"]["landscape"] + data["orientation"]["square"]
    assert sum(data["decided_by"].values()) == len(items) and "crop_level" in data["decided_by"]
    assert all(0 < r["tokens"] <= r["tokens_before"] for r in data["items"])
    table = runner.invoke(app, ["show", "--file", str(track2)])
    assert table.exit_code == 0 and "portrait" in table.stdout and "decided by:" in table.stdout
    both = runner.invoke(app, ["show", "x", "--file", str(track2)])
    assert isinstance(both.exception, InputError) and "not both" in str(both.exception)
