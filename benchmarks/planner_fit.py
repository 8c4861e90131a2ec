"""Canvas-policy accuracy and fit time: fitted vs rule vs always-square on a held-out split, the held-out
orientation distribution, and the fitted strong table's evidence.

By default on a synthetic Track 2 train set (tests/planner_synthetic.py: descriptions from templates, tiny
JPEGs whose aspect ratios follow them), written to a temporary folder; with --train/--images on real data.

Run: .venv/bin/python benchmarks/planner_fit.py [--n 3000] [--maxiter 400] [--train T.json --images DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from portraitcraft.agents.planner import Planner  # noqa: E402
from portraitcraft.agents.planner.canvas_policy import rule_policy  # noqa: E402
from portraitcraft.agents.planner.plan_fit import FitSettings, fit_policy, read_train_set, report_of, summary_rows  # noqa: E402
from portraitcraft.config import PlannerConfig  # noqa: E402
from portraitcraft.data import load_track2  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000, help="synthetic items")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--holdout", type=float, default=0.2)
    parser.add_argument("--maxiter", type=int, default=400)
    parser.add_argument("--popsize", type=int, default=6)
    parser.add_argument("--train", type=Path, help="a real track_2_train.json instead of the synthetic set")
    parser.add_argument("--images", type=Path, help="its image folder")
    args = parser.parse_args()
    cfg = PlannerConfig()

    with tempfile.TemporaryDirectory() as tmp:
        if args.train:
            train, images, what = args.train, args.images, str(args.train)
        else:
            from planner_synthetic import make_synthetic_set

            started = time.perf_counter()
            synth = make_synthetic_set(Path(tmp), args.n, seed=args.seed)
            train, images = synth.train_json, synth.images_dir
            what = f"synthetic, {args.n} items ({time.perf_counter() - started:.1f} s to write)"

        started = time.perf_counter()
        train_set = read_train_set(train, images)
        read_seconds = time.perf_counter() - started
        settings = FitSettings(holdout=args.holdout, seed=args.seed, maxiter=args.maxiter, popsize=args.popsize)
        started = time.perf_counter()
        policy = fit_policy(train_set, rule_policy(cfg.aspect_ratios, cfg.prior_orientation), settings)
        total_seconds = time.perf_counter() - started
        report = report_of(policy)

        specs = load_track2(train, strict=False)[:500]
        planner = Planner(cfg, policy=policy)
        started = time.perf_counter()
        for spec in specs:
            planner.plan(spec)
        plan_ms = (time.perf_counter() - started) / max(1, len(specs)) * 1000

    print(f"data: {what}")
    print(f"items: {report.n_used} used of {report.n_records} ({len(report.missing)} missing, "
          f"{len(report.unreadable)} unreadable, {len(report.invalid)} invalid); "
          f"train {report.n_train}, held out {report.n_holdout}; classes {report.class_counts}")
    print(f"image sizes read in {read_seconds:.2f} s; fit {total_seconds:.2f} s "
          f"(search {report.fit_seconds:.2f} s, {report.generations} generations, "
          f"{report.fitted_phrases} phrase weights + {len(policy.classes) - 1} cut points); "
          f"Planner.plan {plan_ms:.2f} ms/item")
    print(f"{'policy':8} {'accuracy':>9} {'orientation':>12} {'|log ratio|':>12}")
    for row in summary_rows(report):
        print(f"{row['policy']:8} {row['accuracy']:9.3f} {row['orientation_accuracy']:12.3f} "
              f"{row['mean_log_error']:12.3f}")
    for name, counts in report.orientation_counts.items():
        print(f"held-out orientation, {name:6}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    for row in report.strong:
        print(f"strong {row['key']}={row['value']}: {row['n']} train items -> {row['result']}")


if __name__ == "__main__":
    main()
