"""Track 2 formulas on hand-computed cases, human-score averaging, and `eval track2` end to end on the fake VLM."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import pytest
from fake_vlm import API_KEY_ENV, FakeVLMServer
from PIL import Image
from test_judge import scores_by_red
from typer.testing import CliRunner

from portraitcraft.cli import app
from portraitcraft.eval.track2 import auto_score, final_score, read_human_scores, summarise


def test_auto_and_final_on_hand_computed_cases() -> None:
    assert auto_score(80, 60) == pytest.approx(66.0)  # 24 + 42
    assert auto_score(100, 0) == pytest.approx(30.0) and auto_score(0, 100) == pytest.approx(70.0)
    assert final_score(70, 90) == pytest.approx(82.0)  # 28 + 54
    # The Track 2 winner's published numbers: Content 87.89, Composition 87.14 -> Auto 87.36; Human 78 -> 81.75
    assert auto_score(87.89, 87.14) == pytest.approx(87.36, abs=0.01)
    assert final_score(87.36, 78) == pytest.approx(81.75, abs=0.01)
    for bad in (-1, 100.5, math.nan):
        with pytest.raises(ValueError, match="0-100"):
            auto_score(bad, 50)


def test_human_scores_average_raters_and_summary_without_results(tmp_path: Path) -> None:
    path = tmp_path / "human.csv"
    path.write_text("image_path,score\na.png,70\nimages_01/a.png,80\nb.png,55\nb.png,oops\n")
    scores, problems = read_human_scores(path)
    assert scores == {"a.png": 75.0, "b.png": 55.0}
    assert len(problems) == 1 and "oops" in problems[0]
    report = summarise([], scores)
    assert report.auto is None and report.final is None and report.n_scored == 0
    assert report.human_problems == ["2 rated images are not among the items (ignored): a.png, b.png"]


def write_items(folder: Path) -> Path:
    images = folder / "images"
    (images / "images_02").mkdir(parents=True)
    records: list[dict[str, Any]] = []
    for i, red in enumerate((0, 20)):
        Image.new("RGB", (16, 16), (red, 0, 0)).save(images / "images_02" / f"gen_{i}.png")
        records.append({"image_path": f"gen_{i}.png", "content_description": f"person {i}",
                        "composition_analysis": "centred"})
    records.append({"image_path": "gen_missing.png", "content_description": "x", "composition_analysis": "y"})
    records.append({"image_path": "gen_bad_item.png", "content_description": "no composition"})
    items = folder / "items.json"
    items.write_text(json.dumps(records))
    return items


def test_cli_track2_json_out_csv_and_calibration(
    fake_vlm: FakeVLMServer, tmp_path: Path, examples_dir: Path
) -> None:
    fake_vlm.script.default(fn=scores_by_red)
    items = write_items(tmp_path)
    config = tmp_path / "judge.toml"
    config.write_text(
        f'[judge]\nbase_url = "{fake_vlm.base_url}"\nmodel = "{fake_vlm.model}"\napi_key_env = "{API_KEY_ENV}"\n'
        f'kind = "vllm"\nmode = "sampled"\nsamples = 2\nmax_retries = 0\n[run]\ncache_dir = "{tmp_path / "cache"}"\n'
    )
    human = tmp_path / "human.csv"
    human.write_text("image_path,score\ngen_0.png,60\ngen_0.png,70\ngen_1.png,90\n")
    out_csv = tmp_path / "scores.csv"
    args = ["eval", "track2", str(items), "--images", str(tmp_path / "images"), "--config", str(config),
            "--human", str(human), "--out", str(out_csv), "--json", "--no-progress"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert {"content", "composition", "auto", "n_scored", "n_failed", "human", "final"} <= set(out)
    # red 0 -> (60, 50), red 20 -> (70, 70)
    assert out["content"] == pytest.approx(65.0) and out["composition"] == pytest.approx(60.0)
    assert out["auto"] == pytest.approx(0.3 * 65 + 0.7 * 60)
    assert out["human"] == pytest.approx((65 + 90) / 2)
    assert out["final"] == pytest.approx(0.4 * out["auto"] + 0.6 * out["human"])
    assert (out["n_scored"], out["n_failed"]) == (2, 2)
    failed = {f["image_path"] for f in out["failures"]}
    assert failed == {"gen_missing.png", "gen_bad_item.png"}

    with out_csv.open() as fh:
        rows = {r["image_path"]: r for r in csv.DictReader(fh)}
    assert float(rows["gen_1.png"]["auto"]) == pytest.approx(0.3 * 70 + 0.7 * 70)
    assert rows["gen_1.png"]["composition_reason"] == "composition 70"
    assert rows["gen_missing.png"]["auto"] == "" and "not found" in rows["gen_missing.png"]["error"]

    n_requests = len(fake_vlm.chat_requests)
    without_human = [a for a in args if a not in ("--human", str(human))]
    again = CliRunner().invoke(app, without_human)
    assert again.exit_code == 0 and json.loads(again.stdout)["auto"] == pytest.approx(out["auto"])
    assert "human" not in json.loads(again.stdout)
    assert len(fake_vlm.chat_requests) == n_requests  # cached

    no_folder = CliRunner().invoke(app, [*args[:4], str(tmp_path / "nowhere"), *args[5:]])
    assert no_folder.exit_code != 0 and "not a folder" in str(no_folder.exception)
    track1_file = CliRunner().invoke(app, ["eval", "track2", str(examples_dir / "track_1_train.json"),
                                           "--images", str(tmp_path), "--json"])
    assert track1_file.exit_code != 0 and "track1_train" in str(track1_file.exception)
    unknown = tmp_path / "unknown.json"
    unknown.write_text('[{"foo": 1}]')
    not_items = CliRunner().invoke(app, ["eval", "track2", str(unknown), "--images", str(tmp_path), "--json"])
    assert not_items.exit_code != 0 and "unknown.json: cannot tell the file kind" in str(not_items.exception)

    cal = CliRunner().invoke(app, ["eval", "calibrate-judge", str(out_csv), str(human), "--json"])
    assert cal.exit_code == 0, cal.output
    overall = json.loads(cal.stdout)["overall"]
    assert overall["n"] == 2 and overall["mae"] == pytest.approx((abs(53 - 65) + abs(70 - 90)) / 2)


def test_human_ratings_join_a_backslash_image_path(tmp_path) -> None:
    """The one item key: `images_03\\x.jpg` in the items and `x.jpg` in the ratings are the same image."""
    from portraitcraft.eval.track2 import ImageScore, read_human_scores, summarise

    ratings = tmp_path / "human.csv"
    ratings.write_text("image_path,score\nx.jpg,80\nx.jpg,60\n")
    human, problems = read_human_scores(ratings)
    report = summarise([ImageScore(image_path="images_03\\x.jpg", error="judge down")], human, problems)
    assert report.scores[0].human == 70.0
    assert report.human_problems == []
