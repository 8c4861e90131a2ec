"""Assessor LoRA training speed and memory: steps/s and peak RSS of `train assessor` on the tiny Qwen2-VL.

Builds the tiny random Qwen2-VL (scripts/build_tiny_qwen2vl.py), exports the SFT records of
examples/track_1_train.json exactly as `understand export-sft --format openai` does, and trains in THIS process
(so the peak RSS is the run's own) through the real TRL + PEFT code on the CPU (or the GPU when one is visible).
steps/s counts the training loop only (with its evaluations and the final checkpoint); "load" is reading the
records and the model.

    python benchmarks/assessor_train.py                        # 6 steps, batch 2, 224*224 images
    python benchmarks/assessor_train.py --steps 10 --batch-size 1 --grad-accum 4
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    # run as a script, this file's folder is sys.path[0] and would shadow the `train` package with this module
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    sys.path.insert(0, str(ROOT / "tests"))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--pixels", type=int, default=224 * 224, help="[assessor] max_image_pixels")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    from assessor_helpers import IMAGES, build_tiny, export_records

    from portraitcraft.config import load_config
    from portraitcraft.train.assessor import train_assessor

    with tempfile.TemporaryDirectory(prefix="bench-assessor-") as tmp:
        model = build_tiny(Path(tmp) / "tiny-qwen2vl")
        cfg = load_config(overrides={
            "assessor": {"max_image_pixels": args.pixels},
            "assessor_train": {"batch_size": args.batch_size, "grad_accum": args.grad_accum,
                               "learning_rate": 1e-3, "eval_every": max(1, args.steps // 2), "lora_rank": 8},
        })
        records = export_records(Path(tmp) / "records", cfg.assessor)
        started = time.perf_counter()
        res = train_assessor(records, cfg, Path(tmp) / "run", base=str(model), max_steps=args.steps,
                             image_roots=[IMAGES])
        total = time.perf_counter() - started
        figures = {
            "steps": res.steps, "batch_size": args.batch_size, "grad_accum": args.grad_accum,
            "records": res.used, "held_out": res.held_out, "device": res.device, "precision": res.precision,
            "steps_per_s": round(res.steps_per_second or 0.0, 3),
            "s_per_step": round(res.train_seconds / max(1, res.steps), 2),
            "load_s": round(total - res.train_seconds, 1), "total_s": round(total, 1),
            "peak_rss_mb": round(res.peak_rss_mb), "first_loss": round(res.rows[0]["loss"], 4),
            "last_loss": round(res.last("loss") or 0.0, 4), "last_eval_loss": res.last("eval_loss"),
        }
    if args.json:
        print(json.dumps(figures))
        return
    print(f"tiny Qwen2-VL, {figures['records']} records (+{figures['held_out']} held out), batch {args.batch_size} x "
          f"accum {args.grad_accum}, images <= {args.pixels} px, {figures['device']} {figures['precision']}")
    for key, value in figures.items():
        print(f"  {key:15s} {value}")


if __name__ == "__main__":
    main()
