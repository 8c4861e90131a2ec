"""Time Track 1 scoring of 2,000 synthetic items (the size of the official test set).

    .venv/bin/python benchmarks/eval_track1.py [--items 2000] [--repeats 5]

Prints the median wall time of `score_track1` (files read, parsed, joined and scored) and of the scoring
step alone, with per-attribute confusion matrices on.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from portraitcraft.eval.track1 import load_ground_truth, score_items, score_track1
from portraitcraft.predictions import read_track1_predictions
from portraitcraft.schemas import ATTRIBUTES


def levels(codes: np.ndarray) -> dict[str, dict[str, str]]:
    return {a: {"level": str(c)} for a, c in zip(ATTRIBUTES, codes, strict=True)}


def synthetic(n: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    rng = np.random.default_rng(seed)
    codes = np.array(["A", "B", "C"])
    gt, preds = [], []
    for i in range(n):
        name = f"unsplash_people_{i:05d}_{i:012x}.jpg"
        truth = rng.choice(codes, 13)
        guess = np.where(rng.random(13) < 0.7, truth, rng.choice(codes, 13))
        total = int(rng.integers(20, 95))
        answer = str(rng.choice(list("ABCD")))
        options = {k: k for k in "ABCD"}
        gt.append({"image_path": name, "criteria": levels(truth), "total_score": total, "question": "Which?",
                   "options": options, "answer": answer})
        preds.append({"image_path": name, "criteria": levels(guess),
                      "total_score": int(np.clip(total + rng.normal(0, 8), 0, 100)), "question": "Which?",
                      "options": options, "answer": answer if rng.random() < 0.9 else "A"})
    return gt, preds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    gt, preds = synthetic(args.items)
    with tempfile.TemporaryDirectory() as tmp:
        gt_path, pred_path = Path(tmp) / "gt.json", Path(tmp) / "pred.json"
        gt_path.write_text(json.dumps(gt))
        pred_path.write_text(json.dumps(preds))
        end_to_end, scoring = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            report = score_track1(pred_path, gt_path, per_attribute=True)
            end_to_end.append(time.perf_counter() - t0)
        truth, has_qa, _ = load_ground_truth(gt_path)
        guesses = read_track1_predictions(pred_path).by_key
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            score_items(guesses, truth, has_qa=has_qa, per_attribute=True)
            scoring.append(time.perf_counter() - t0)
    print(f"items: {args.items}  composite: {report.composite:.4f} (srcc {report.srcc:.3f}, plcc {report.plcc:.3f}, "
          f"level_acc {report.level_acc:.3f}, qa_acc {report.qa_acc:.3f})")
    print(f"score_track1 end to end (read + validate + score): median {statistics.median(end_to_end) * 1000:.1f} ms "
          f"over {args.repeats} runs")
    print(f"scoring step alone: median {statistics.median(scoring) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
