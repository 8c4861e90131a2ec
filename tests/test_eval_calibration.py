"""Judge calibration against scipy on tied random data, rater averaging, and `eval calibrate-judge --json`."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from portraitcraft.cli import app
from portraitcraft.errors import DataError
from portraitcraft.eval.calibration import calibrate
from portraitcraft.eval.score_tables import read_score_csv


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_overall_and_sub_scores_match_scipy_with_ties_and_several_raters(tmp_path: Path) -> None:
    rng = np.random.default_rng(21)
    n = 50
    names = [f"img_{i:03d}.png" for i in range(n)]
    content = rng.integers(6, 10, size=n) * 10.0  # 4 distinct values: ties
    composition = rng.integers(5, 9, size=n) * 10.0
    auto = 0.3 * content + 0.7 * composition
    judge = write_csv(tmp_path / "judge.csv", ["image_path", "content", "composition", "auto", "error"],
                      [[f"out/{names[i]}", content[i], composition[i], auto[i], ""] for i in range(n)]
                      + [["failed.png", "", "", "", "JudgeError: no verdict"]])
    # three raters per image, integer ratings: the human mean has ties too
    ratings = np.clip(np.round(auto[:, None] + rng.normal(0, 8, size=(n, 3))), 0, 100)
    human_content = np.clip(content + rng.integers(-10, 11, size=n), 0, 100)
    rows = [[names[i], ratings[i, r], human_content[i] if r == 0 else ""] for i in range(n) for r in range(3)]
    human = write_csv(tmp_path / "human.csv", ["image_path", "score", "content"],
                      [*rows, ["only_rated.png", 50, ""], ["bad.png", "n/a", ""]])

    report = calibrate(judge, human)
    human_mean = ratings.mean(axis=1)
    o = report.overall
    assert o is not None and (o.judge_column, o.human_column, o.n) == ("auto", "score", n)
    assert o.spearman == pytest.approx(stats.spearmanr(auto, human_mean).statistic)
    assert o.kendall == pytest.approx(stats.kendalltau(auto, human_mean).statistic)
    assert o.pearson == pytest.approx(stats.pearsonr(auto, human_mean).statistic)
    assert o.mae == pytest.approx(float(np.abs(auto - human_mean).mean()))
    c = report.per_score["content"]
    assert c.n == n and c.spearman == pytest.approx(stats.spearmanr(content, human_content).statistic)
    assert set(report.per_score) == {"content"}  # composition/auto are not in the human file
    assert report.only_in_human == ["only_rated.png"]
    assert any("bad.png" in p and "not a number" in p for p in report.problems)


def test_raters_are_averaged_and_bad_cells_reported(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "h.csv", ["image_path", "score"],
                     [["a.png", 70], ["a.png", 80], ["sub/a.png", 90], ["b.png", 101], ["c.png", ""], ["", 5]])
    table = read_score_csv(path, ["score"])
    assert table.column("score") == {"a.png": 80.0}
    assert table.counts["score"] == {"a.png": 3}
    assert len(table.problems) == 2 and "outside 0-100" in table.problems[0]


def test_no_shared_column_is_a_clear_error(tmp_path: Path) -> None:
    judge = write_csv(tmp_path / "j.csv", ["image_path", "content"], [["a.png", 50]])
    human = write_csv(tmp_path / "h.csv", ["image_path", "composition"], [["a.png", 40]])
    with pytest.raises(DataError, match="share no score column"):
        calibrate(judge, human)
    with pytest.raises(DataError, match="image_path column"):
        calibrate(write_csv(tmp_path / "x.csv", ["name", "score"], [["a", 1]]), human)
    other = write_csv(tmp_path / "o.csv", ["image_path", "content"], [["b.png", 40], ["c.png", 30]])
    with pytest.raises(DataError, match=r"share no image .*a\.png vs b\.png, c\.png"):
        calibrate(judge, other)
    with pytest.raises(DataError, match="is a folder"):
        calibrate(judge, tmp_path)


def test_cli_calibrate_judge_json(tmp_path: Path) -> None:
    judge = write_csv(tmp_path / "j.csv", ["image_path", "content", "composition", "auto"],
                      [["a.png", 80, 70, 73], ["b.png", 60, 50, 53], ["c.png", 90, 90, 90]])
    human = write_csv(tmp_path / "h.csv", ["image_path", "score"],
                      [["a.png", 70], ["b.png", 60], ["b.png", 40], ["c.png", 95]])
    res = CliRunner().invoke(app, ["eval", "calibrate-judge", str(judge), str(human), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["overall"]["spearman"] == pytest.approx(1.0)
    assert out["overall"]["mae"] == pytest.approx((3 + 3 + 5) / 3)
    assert out["overall"]["n"] == 3 and out["per_score"] == {}
    table = CliRunner().invoke(app, ["eval", "calibrate-judge", str(judge), str(human)])
    assert table.exit_code == 0 and "spearman" in table.output
