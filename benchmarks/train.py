"""Training speed and memory: steps/s and peak memory of SFT and DPO, with and without the latent cache.

Each configuration runs in its own process (so its peak RSS is its own) on a tiny random model through the
real diffusers + peft code: `configs/train-offline.toml`, synthetic images and pairs, a fresh cache folder.
steps/s is measured over the training loop only; "prepare" is the one-off pass that decodes every item and,
with the cache on, encodes it (VAE + text encoder) into the cache. Without the cache each step encodes its
batch again.

    python benchmarks/train.py                          # tiny Z-Image, 20 steps, 64 px, SFT and DPO
    python benchmarks/train.py --model qwen-image --steps 10 --resolution 32
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _png(seed: int, w: int, h: int) -> bytes:
    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def make_data(folder: Path, n: int) -> tuple[Path, Path, Path]:
    """(Track 2 train JSON, images folder, pairs parquet) of n synthetic items in two aspect ratios."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    records, pairs = [], {k: [] for k in ("caption", "jpg_0", "jpg_1", "label_0", "label_1")}
    for i in range(n):
        w, h = (96, 96) if i % 2 else (64, 96)
        (images / f"img{i}.png").write_bytes(_png(i, w, h))
        text = f"Person {i} stands on the left third of the frame, facing right."
        records.append({"image_path": f"img{i}.png", "content_description": text,
                        "composition_analysis": "Rule of thirds, soft light."})
        pairs["caption"].append(text)
        pairs["jpg_0"].append(_png(i, w, h))
        pairs["jpg_1"].append(_png(1000 + i, w, h))
        pairs["label_0"].append(1.0)
        pairs["label_1"].append(0.0)
    (folder / "train.json").write_text(json.dumps(records))
    pq.write_table(pa.table(pairs), folder / "pairs.parquet")
    return folder / "train.json", images, folder / "pairs.parquet"


def run_one(args: argparse.Namespace) -> dict[str, Any]:
    """One configuration in this process; prints its figures as JSON."""
    import torch

    from portraitcraft.config import load_config
    from portraitcraft.train.data import read_pairs, read_sft_items
    from portraitcraft.train.runner import run_training

    data = Path(args.data)
    cfg = load_config(ROOT / "configs" / "train-offline.toml", {
        "generator": {"model": args.model_dir},
        "train": {"cache": args.cache == "on", "cache_dir": str(data / f"cache-{args.kind}"),
                  "resolution": args.resolution, "batch_size": args.batch_size,
                  "max_sequence_length": 300 if "qwen" in args.model_dir else 64},
    })
    if args.kind == "sft":
        items = read_sft_items(data / "train.json", data / "images", cfg)
    else:
        items = read_pairs(data / "pairs.parquet")
    res = run_training(args.kind, items, cfg, data / f"run-{args.kind}-{args.cache}", max_steps=args.steps,
                       resume=False)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "kind": args.kind, "cache": args.cache, "steps": res.steps,
        "steps_per_s": res.steps / res.loop_seconds, "loop_s": res.loop_seconds, "prepare_s": res.prepare_seconds,
        "peak_rss_mb": peak_rss_mb,
        "cuda_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None,
        "encoder_forwards": res.forwards, "last_loss": res.rows[-1]["loss"],
    }


def main() -> None:
    # run as a script, this file's folder is sys.path[0] and would shadow the `train` package with this module
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    sys.path.insert(0, str(ROOT))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="zimage", choices=["zimage", "qwen-image"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--items", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--one", dest="kind", choices=["sft", "dpo"], help=argparse.SUPPRESS)
    parser.add_argument("--cache", choices=["on", "off"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.kind:
        print(json.dumps(run_one(args)))
        return

    from portraitcraft.tools.diffusion.tiny import ensure_tiny_model

    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        model_dir = ensure_tiny_model(args.model, Path(tmp) / "models")
        make_data(Path(tmp), args.items)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        print(f"{args.model} (tiny random), {args.items} items, batch {args.batch_size}, {args.resolution} px, "
              f"{args.steps} steps, torch threads {os.cpu_count()} cores")
        print(f"{'objective':<9} {'cache':<5} {'steps/s':>8} {'prepare s':>10} {'peak RSS MB':>12} "
              f"{'VAE fwd':>8} {'text fwd':>9}")
        for kind in ("sft", "dpo"):
            for cache in ("on", "off"):
                cmd = [sys.executable, __file__, "--one", kind, "--cache", cache, "--data", tmp, "--model-dir",
                       str(model_dir), "--steps", str(args.steps), "--batch-size", str(args.batch_size),
                       "--resolution", str(args.resolution)]
                done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    print(f"{kind} cache={cache} failed:\n{done.stderr[-2000:]}")
                    continue
                r = json.loads(done.stdout.strip().splitlines()[-1])
                print(f"{kind:<9} {cache:<5} {r['steps_per_s']:>8.2f} {r['prepare_s']:>10.2f} "
                      f"{r['peak_rss_mb']:>12.0f} {r['encoder_forwards']['vae']:>8} "
                      f"{r['encoder_forwards']['text_encoder']:>9}"
                      + (f"  cuda peak {r['cuda_peak_mb']:.0f} MB" if r["cuda_peak_mb"] else ""))


if __name__ == "__main__":
    main()
