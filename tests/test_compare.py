"""`portraitcraft compare`: paired statistics checked against scipy, pairing by item key, unpaired and failed
items listed, a folder that is not a run reported (exit 2), judge scores from `eval track2 --out` CSVs."""

from __future__ import annotations

import json
from math import comb
from pathlib import Path

import numpy as np
import pytest
from cli_run import run_cli
from compare_fixtures import item_row, write_run
from scipy import stats

from portraitcraft.errors import InputError
from portraitcraft.eval.compare import compare, run_names
from portraitcraft.eval.compare_stats import (
    mcnemar_exact,
    paired_bootstrap_ci,
    paired_ratio_ci,
    resample_indices,
    tally,
)

N = 30
A_PASS = set(range(10))  # the baseline passes items 0-9
B_PASS = set(range(8)) | set(range(10, 22))  # B passes 0-7 and 10-21: 12 B-only, 2 A-only (8, 9)


def key(k: int) -> str:
    return f"img_{k:03d}.png"


def synthetic_runs(tmp_path: Path) -> tuple[Path, Path]:
    a_rows = [item_row(key(k), passed=k in A_PASS, rounds=0) for k in range(N)]
    a_rows.append(item_row("only_in_a.png", passed=True))
    a_rows.append(item_row("fails_in_b.png", passed=True))
    b_rows = [item_row(key(k), passed=k in B_PASS, rounds=2, cost={"generations": 3, "gpu_seconds": 1.5})
              for k in range(N)]
    b_rows.append(item_row("fails_in_b.png", passed=False, status="failed"))
    a = write_run(tmp_path / "base", a_rows, config={"loop": {"strategy": "one-shot", "max_rounds": 0}})
    b = write_run(tmp_path / "loop", b_rows, config={"loop": {"strategy": "loop", "max_rounds": 2}},
                  packages={"portraitcraft": "0.2.0"})
    return a, b


def test_exact_mcnemar_matches_the_binomial_on_discordant_pairs() -> None:
    a = [k in A_PASS for k in range(N)]
    b = [k in B_PASS for k in range(N)]
    p = mcnemar_exact(a, b)
    assert p == pytest.approx(2 * sum(comb(14, k) for k in range(3)) / 2**14)  # 12 vs 2 discordant: 0.01294
    assert p == pytest.approx(stats.binomtest(12, 14, 0.5).pvalue)
    assert mcnemar_exact([False] * 3, [True] * 3) == pytest.approx(0.25)  # the demo's 3 wins, 0 losses
    assert mcnemar_exact([True, False], [True, False]) == 1.0  # no discordant pair: no evidence
    assert tally(a, b) == (tally(a, b).__class__(12, 16, 2))


def test_paired_bootstrap_interval_agrees_with_scipy() -> None:
    rng = np.random.default_rng(7)
    a = rng.uniform(0.2, 0.8, 60)
    b = np.clip(a + rng.normal(0.08, 0.1, 60), 0, 1)  # a paired gain of about 0.08
    ours = paired_bootstrap_ci(a, b, boot=10_000, seed=3)
    ref = stats.bootstrap((a, b), lambda x, y, axis: y.mean(axis) - x.mean(axis), paired=True, vectorized=True,
                          method="percentile", n_resamples=10_000, rng=np.random.default_rng(3)).confidence_interval
    assert ours is not None
    assert ours[0] == pytest.approx(ref.low, abs=0.006) and ours[1] == pytest.approx(ref.high, abs=0.006)
    assert 0 < ours[0] < (b - a).mean() < ours[1]
    assert paired_bootstrap_ci(a, b, boot=10_000, seed=3) == ours  # seeded: the same interval again
    assert paired_bootstrap_ci(a, b, boot=10_000, seed=4) != ours


def test_pass_rate_interval_agrees_with_scipy_on_binary_outcomes() -> None:
    a = np.array([float(k in A_PASS) for k in range(N)])
    b = np.array([float(k in B_PASS) for k in range(N)])
    ours = paired_bootstrap_ci(a, b, boot=10_000, seed=0)
    ref = stats.bootstrap((a, b), lambda x, y, axis: y.mean(axis) - x.mean(axis), paired=True, vectorized=True,
                          method="percentile", n_resamples=10_000, rng=np.random.default_rng(0)).confidence_interval
    assert ours is not None  # binary items: the difference moves in steps of 1/30
    assert abs(ours[0] - ref.low) <= 1 / N + 1e-9 and abs(ours[1] - ref.high) <= 1 / N + 1e-9
    assert ours[0] > 0  # 12 vs 2 discordant items: a real gain


def test_ratio_interval_skips_resamples_without_a_pass() -> None:
    idx = resample_indices(4, 500, 0)
    ci = paired_ratio_ci([1, 1, 1, 1], [1, 0, 0, 0], [2, 2, 2, 2], [1, 1, 1, 1], indices=idx)
    assert ci is not None and ci[0] >= -2 and ci[1] <= 2 - 1 / 4  # B: 2 per pass; A: between 1 and 4
    assert paired_ratio_ci([1], [0], [1], [0], boot=10) is None  # nothing ever passed: no interval


def test_compare_pairs_by_item_key_and_lists_unpaired_items(tmp_path: Path) -> None:
    a, b = synthetic_runs(tmp_path)
    result = compare([a, b], boot=2000, seed=1).to_json()
    base, loop = result["runs"]
    assert (base["n_items"], base["n_done"], base["n_failed"], base["pass_rate"]) == (32, 32, 0, round(12 / 32, 4))
    assert (loop["n_items"], loop["n_done"], loop["n_failed"], loop["pass_rate"]) == (31, 30, 1, round(20 / 30, 4))
    assert loop["cost_per_final_image"]["generations"] == 3 and loop["cost_per_passed_image"]["generations"] == 4.5
    assert base["cost_per_passed_image"]["generations"] == round(32 / 12, 6)
    assert loop["mean_rounds"] == 2 and base["strategy"] == "one-shot" and loop["judge"] is None
    by_metric = {c["metric"]: c for c in result["comparisons"]}
    passed = by_metric["pass_rate"]
    assert (passed["n"], passed["wins"], passed["ties"], passed["losses"]) == (30, 12, 16, 2)
    assert passed["delta"] == pytest.approx(10 / 30, abs=1e-6) and passed["p_value"] == pytest.approx(0.012939453125)
    assert passed["ci95"][0] > 0 and passed["ci95"][1] <= 1
    gens = by_metric["cost_per_final_image.generations"]
    assert gens["delta"] == 2 and (gens["wins"], gens["losses"]) == (0, 30)  # B costs more on every item
    per_pass = by_metric["cost_per_passed_image.generations"]
    assert per_pass["delta"] == pytest.approx(4.5 - 3.0)  # 90 generations / 20 passed vs 30 / 10
    assert per_pass["ci95"] is not None and per_pass["wins"] is None
    assert "met_target_share" not in by_metric and "judge" not in by_metric  # not measured, not judged
    unpaired = {u["item"]: u for u in result["unpaired"]}
    assert unpaired["only_in_a.png"]["missing_in"] == ["loop"]
    assert unpaired["fails_in_b.png"]["failed_in"] == ["loop"]
    assert "description is empty" in unpaired["fails_in_b.png"]["errors"]["loop"]
    assert set(unpaired) == {"only_in_a.png", "fails_in_b.png"}
    diff = result["manifest_diff"]
    assert {r["key"] for r in diff["config"]} == {"loop.strategy", "loop.max_rounds"}
    assert [r["key"] for r in diff["versions"]] == ["portraitcraft"]
    assert any("different items" in n for n in result["notes"])


def test_rule_rates_on_final_images(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", [item_row(key(k), passed=False, open_rules=("horizontal",)) for k in range(4)])
    b = write_run(tmp_path / "b", [item_row(key(k), passed=k > 0, open_rules=("horizontal",) if k == 0 else ())
                                   for k in range(4)])
    ra, rb = compare([a, b], boot=200).to_json()["runs"]
    assert ra["rules"]["horizontal"] == {"detected": 4, "checked": 4, "rate": 1.0}
    assert rb["rules"]["horizontal"] == {"detected": 1, "checked": 4, "rate": 0.25}


def test_names_must_fit_the_runs(tmp_path: Path) -> None:
    assert run_names(["x/run", "y/run"], None) == ["run", "run-2"]
    with pytest.raises(InputError, match="one per run"):
        run_names(["a", "b"], ["only"])
    with pytest.raises(InputError, match="distinct"):
        run_names(["a", "b"], ["same", "same"])


def test_cli_json_contract_and_a_folder_that_is_not_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = synthetic_runs(tmp_path)
    (tmp_path / "not-a-run").mkdir()
    res = run_cli(["compare", str(a), str(b), str(tmp_path / "not-a-run"), "--json", "--no-measure",
                   "--boot", "500", "--names", "one-shot,loop,junk", "--out", str(tmp_path / "cmp")],
                  capsys, monkeypatch)
    assert res.exit_code == 2, res.output  # bad input reported, the readable runs still compared
    data = json.loads(res.stdout)
    assert [r["name"] for r in data["runs"]] == ["one-shot", "loop"]
    for run in data["runs"]:
        assert {"name", "n_items", "n_done", "n_failed", "pass_rate", "mean_rounds", "cost_per_final_image",
                "cost_per_passed_image", "met_target_share", "judge"} <= set(run)
    for c in data["comparisons"]:
        assert {"a", "b", "metric", "delta", "ci95", "p_value", "wins", "ties", "losses"} <= set(c)
    assert data["problems"] == [{"run": "junk", "path": str(tmp_path / "not-a-run"),
                                 "error": f"{tmp_path / 'not-a-run'}: not a run folder (no results.jsonl)"}]
    assert "not a run folder" in res.stderr
    assert (tmp_path / "cmp" / "compare.html").is_file()
    assert json.loads((tmp_path / "cmp" / "compare.json").read_text())["runs"] == data["runs"]
    bad = run_cli(["compare", str(a), str(b), "--names", "x", "--no-measure"], capsys, monkeypatch)
    assert bad.exit_code == 2 and "one per run" in bad.stderr
    one = run_cli(["compare", str(a), "--no-measure"], capsys, monkeypatch)
    assert one.exit_code == 2 and "at least two" in one.stderr
    bad_scores = run_cli(["compare", str(a), str(b), "--no-measure", "--scores", "nobody=x.csv"], capsys, monkeypatch)
    assert bad_scores.exit_code == 2 and "no run is called 'nobody'" in bad_scores.stderr


def test_judge_scores_from_eval_track2_csvs(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    keys = [key(k) for k in range(6)]
    a = write_run(tmp_path / "a", [item_row(k, passed=True) for k in keys])
    b = write_run(tmp_path / "b", [item_row(k, passed=True) for k in keys])
    head = "image_path,content,composition,auto\n"
    (tmp_path / "a.csv").write_text(head + "".join(f"{k},80,60,\n" for k in keys))
    (tmp_path / "b.csv").write_text(head + "".join(f"images_01/{k},80,{70 if i < 4 else 50},\n"
                                                   for i, k in enumerate(keys)) + "stranger.png,1,1,\n")
    res = run_cli(["compare", str(a), str(b), "--json", "--no-measure", "--boot", "500",
                   "--scores", f"a={tmp_path / 'a.csv'}", "--scores", f"{b}={tmp_path / 'b.csv'}"], capsys, monkeypatch)
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    ja, jb = data["runs"][0]["judge"], data["runs"][1]["judge"]
    assert ja == {"source": str(tmp_path / "a.csv"), "n": 6, "content": 80, "composition": 60, "auto": 66}
    assert jb["composition"] == pytest.approx((4 * 70 + 2 * 50) / 6) and jb["n"] == 6
    judge = next(c for c in data["comparisons"] if c["metric"] == "judge")
    assert (judge["wins"], judge["ties"], judge["losses"]) == (4, 0, 2)
    assert judge["delta"] == pytest.approx(0.7 * (4 * 10 - 2 * 10) / 6)
    assert any("stranger.png" in p for p in data["runs"][1]["problems"])


def test_judge_scores_recorded_by_the_run(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", [item_row(key(k), passed=False, judge_score=50.0) for k in range(3)])
    b = write_run(tmp_path / "b", [item_row(key(k), passed=False, judge_score=60.0 + k) for k in range(3)])
    data = compare([a, b], boot=300).to_json()
    assert data["runs"][1]["judge"] == {"source": "run", "n": 3, "score": 61.0}
    judge = next(c for c in data["comparisons"] if c["metric"] == "judge")
    assert judge["delta"] == pytest.approx(11.0) and judge["wins"] == 3


def test_a_malformed_results_line_is_a_problem_of_that_run(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", [item_row(key(k), passed=True) for k in range(3)])
    b = write_run(tmp_path / "b", [item_row(key(k), passed=True) for k in range(3)])
    with open(b / "results.jsonl", "a") as fh:
        fh.write("{not json\n")
    data = compare([a, b], boot=100).to_json()
    assert any("malformed JSON on line 4" in p for p in data["runs"][1]["problems"])
    assert data["runs"][1]["n_done"] == 3


def test_every_run_is_compared_with_the_first(tmp_path: Path) -> None:
    rows = [item_row(key(k), passed=k % 2 == 0) for k in range(6)]
    runs = [write_run(tmp_path / name, rows) for name in ("base", "x", "y")]
    data = compare(runs, boot=200).to_json()
    pairs = {(c["a"], c["b"]) for c in data["comparisons"] if c["metric"] == "pass_rate"}
    assert pairs == {("base", "x"), ("base", "y")}
    same = next(c for c in data["comparisons"] if c["metric"] == "pass_rate")
    assert (same["delta"], same["ci95"], same["p_value"], same["ties"]) == (0.0, [0.0, 0.0], 1.0, 6)
