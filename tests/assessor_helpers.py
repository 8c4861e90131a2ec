"""Helpers for the assessor LoRA tests: build the tiny random Qwen2-VL, export the examples' SFT records, and
config overrides for fast CPU runs (the fixtures over them are in assessor_fixtures.py)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from portraitcraft.agents.assessor_sft import sft_record
from portraitcraft.config import AssessorConfig
from portraitcraft.data import find_image, load

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
IMAGES = EXAMPLES / "images"
BUILD_SCRIPT = ROOT / "scripts" / "build_tiny_qwen2vl.py"
TINY_PIXELS = 224 * 224  # the tiny model's processor cap; the assessor sends images at most this large here


def build_tiny(out_dir: Path, seed: int = 0) -> Path:
    """scripts/build_tiny_qwen2vl.py, in-process (about 5 s)."""
    spec = importlib.util.spec_from_file_location("build_tiny_qwen2vl", BUILD_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_tiny_qwen2vl(out_dir, seed=seed)


def export_records(out: Path, cfg: AssessorConfig) -> Path:
    """What `understand export-sft examples/track_1_train.json --images examples/images --format openai` writes."""
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for item in load(EXAMPLES / "track_1_train.json", "track1_train", strict=False).items:
        image = find_image(IMAGES, item.image_path).path
        assert image is not None, item.image_path
        lines.append(json.dumps(sft_record(item, str(image), cfg, "openai")))
    (out / "train.jsonl").write_text("\n".join(lines) + "\n")
    return out


def tiny_overrides(**train: Any) -> dict[str, Any]:
    """Config overrides for fast CPU runs on the tiny model (high LR, no accumulation, constant schedule)."""
    section = {"batch_size": 2, "grad_accum": 1, "learning_rate": 2e-3, "lr_scheduler": "constant",
               "warmup_ratio": 0.0, "eval_every": 100, "checkpoint_every": 100, "lora_rank": 8, "lora_dropout": 0.0}
    return {"assessor": {"max_image_pixels": TINY_PIXELS}, "assessor_train": {**section, **train}}
