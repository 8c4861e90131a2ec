"""`portraitcraft plan fit|show` through typer's runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from planner_synthetic import make_synthetic_set
from typer.testing import CliRunner

from agents.planner.canvas_policy import load_policy
from portraitcraft.commands.plan import app
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
    assert "rule policy: score" in result.stdout and "landscape" in result.stdout


def test_show_uses_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[planner]\nlong_side = 1584\nmultiple = 32\n")
    result = runner.invoke(app, ["show", "a headshot", "--json", "--config", str(cfg)])
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
