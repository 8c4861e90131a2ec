"""`portraitcraft train assessor`: LoRA SFT of a Qwen-VL model on the assessor's own chat records (TRL + PEFT).

The records are what `understand export-sft --format openai` writes (train/assessor_data.py checks them); each
batch shows the image and prompt exactly as `understand` sends them and trains on the answer only
(train/assessor_collate.py). TRL's `SFTTrainer` runs the loop: gradient accumulation, bf16 on a GPU / fp32 on the
CPU, a held-out split evaluated every `eval_every` steps, checkpoints every `checkpoint_every` steps and at the
end, and resuming from the newest checkpoint.

Run folder DIR: `adapter_config.json` + `adapter_model.safetensors` (a plain PEFT adapter: `vllm serve BASE
--enable-lora --lora-modules assessor=DIR`), the tokenizer / image-processor / chat-template files,
`metrics.jsonl` (one row per logged step: `step` = optimiser steps done, `loss`, `lr`, `grad_norm`, `epoch`,
and `eval_loss` on evaluated steps), `problems.jsonl` (skipped records), `checkpoints/checkpoint-<step>/`,
`run.json` (what the checkpoints were trained on) and `summary.json`.
"""

from __future__ import annotations

import hashlib
import json
import resource
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from portraitcraft.atomic import atomic_write_json, atomic_write_text
from portraitcraft.config import PortraitcraftConfig
from portraitcraft.errors import DataError, InputError
from portraitcraft.train.assessor_data import RecordSet, read_records, split_records

ADAPTER_FILES: tuple[str, ...] = ("adapter_config.json", "adapter_model.safetensors")
CHECKPOINTS = "checkpoints"
METRICS_FILE = "metrics.jsonl"
RUN_FILE = "run.json"
SUMMARY_FILE = "summary.json"
PROBLEMS_FILE = "problems.jsonl"
SERVED_NAME = "assessor"
VLLM_LORA_RANKS: tuple[int, ...] = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""The values vLLM's --max-lora-rank accepts."""


def serve_command(base: str, adapter: str | Path, rank: int) -> str:
    """The vLLM command that serves `base` with the adapter as the model `assessor`.

    Example:
        >>> serve_command("Qwen/Qwen3-VL-4B-Instruct", "runs/assessor", 4)
        'vllm serve Qwen/Qwen3-VL-4B-Instruct --enable-lora --lora-modules assessor=runs/assessor --max-lora-rank 8'
    """
    max_rank = next((r for r in VLLM_LORA_RANKS if r >= rank), rank)
    return f"vllm serve {base} --enable-lora --lora-modules {SERVED_NAME}={adapter} --max-lora-rank {max_rank}"


@dataclass
class AssessorResult:
    """What a `train_assessor` run did (also written to DIR/summary.json)."""

    out: Path
    base: str
    steps: int
    resumed_from: int
    rows: list[dict[str, Any]]
    used: int
    held_out: int
    records: RecordSet
    device: str
    precision: str
    seconds: float
    train_seconds: float
    peak_rss_mb: float
    lora_rank: int = 16
    model: Any = field(default=None, repr=False)
    processor: Any = field(default=None, repr=False)

    @property
    def steps_per_second(self) -> float | None:
        """Optimiser steps run by this call per second of the training loop (None when it ran none)."""
        done = self.steps - self.resumed_from
        return done / self.train_seconds if done > 0 and self.train_seconds > 0 else None

    def last(self, key: str) -> float | None:
        """The newest value of a metrics column (`loss`, `eval_loss`, ...), or None."""
        return next((row[key] for row in reversed(self.rows) if key in row), None)

    def summary(self) -> dict[str, Any]:
        """The summary.json content."""
        rate = self.steps_per_second
        return {
            "base": self.base, "out": str(self.out), "adapter": [str(self.out / f) for f in ADAPTER_FILES],
            "steps": self.steps, "resumed_from": self.resumed_from,
            "final_loss": self.last("loss"), "final_eval_loss": self.last("eval_loss"),
            "used": self.used, "held_out": self.held_out, "skipped": len(self.records.skipped),
            "skip_reasons": self.records.skip_counts(), "problems": [str(p) for p in self.records.skipped[:50]],
            "prompt_mismatch": self.records.prompt_mismatch, "record_files": [str(f) for f in self.records.files],
            "device": self.device, "precision": self.precision, "seconds": round(self.seconds, 3),
            "train_seconds": round(self.train_seconds, 3),
            "steps_per_second": None if rate is None else round(rate, 4), "peak_rss_mb": round(self.peak_rss_mb, 1),
            "serve": serve_command(self.base, self.out, self.lora_rank), "served_model": SERVED_NAME,
        }


def _fingerprint(base: str, records: RecordSet, cfg: PortraitcraftConfig) -> str:
    """What must not change under a resumed checkpoint: base, records, LoRA, batching, split, answer schema."""
    tc = cfg.assessor_train
    relevant = tc.model_dump(include={"lora_rank", "lora_alpha", "lora_dropout", "lora_targets", "batch_size",
                                      "grad_accum", "seed", "eval_fraction", "max_eval_records"})
    answer = cfg.assessor.model_dump(include={"output", "explanations", "max_pixels", "max_image_pixels"})
    blob = json.dumps([base, records.digest(), relevant, answer], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _last_checkpoint(folder: Path) -> tuple[int, Path] | None:
    found = []
    for d in folder.glob("checkpoint-*") if folder.is_dir() else ():
        suffix = d.name.removeprefix("checkpoint-")
        if suffix.isdigit() and (d / "trainer_state.json").is_file():
            found.append((int(suffix), d))
    return max(found) if found else None


def _rows_upto(path: Path, step: int) -> list[dict[str, Any]]:
    """metrics.jsonl rows of steps <= `step` (a resumed run redoes the later ones; a torn line is dropped)."""
    rows = []
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] <= step:
                rows.append(row)
    return rows


def _prepare_folder(out: Path, fingerprint: str, base: str, resume: bool) -> tuple[Path | None, int, list[dict]]:
    """Checkpoint to resume from (or None), its step, and the metric rows kept; refuses a foreign checkpoint."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: is a file, expected a folder")
    checkpoint = _last_checkpoint(out / CHECKPOINTS) if resume else None
    if checkpoint is not None:
        try:
            made = json.loads((out / RUN_FILE).read_text()).get("fingerprint")
        except (OSError, ValueError, AttributeError):
            made = None
        if made != fingerprint:
            raise InputError(f"{checkpoint[1]} was trained on other records or settings (base {base}); use a new "
                             "--out or --no-resume")
    if not resume:
        shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
    start = checkpoint[0] if checkpoint else 0
    rows = _rows_upto(out / METRICS_FILE, start) if start else []
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / METRICS_FILE, "".join(json.dumps(r) + "\n" for r in rows))
    atomic_write_json(out / RUN_FILE, {"base": base, "fingerprint": fingerprint})
    return (checkpoint[1] if checkpoint else None), start, rows


def train_assessor(
    records_path: str | Path,
    cfg: PortraitcraftConfig,
    out: str | Path,
    *,
    base: str | None = None,
    max_steps: int | None = None,
    resume: bool = True,
    image_roots: Sequence[str | Path] = (),
    console: Any = None,
) -> AssessorResult:
    """Train the assessor LoRA on the records at `records_path` into the run folder `out`.

    Args:
        records_path (str | Path): a records file or the folder `understand export-sft --format openai` wrote.
        cfg (PortraitcraftConfig): `[assessor_train]` (base, LoRA, optimiser, split, checkpoints) and
            `[assessor]` (the answer schema, prompt and image resolution the records must match).
        out (str | Path): the run folder.
        base (str, optional): the base model (beats `[assessor_train] base`).
        max_steps (int, optional): total optimiser steps (beats `[assessor_train] max_steps` and epochs).
        resume (bool, optional, defaults to True): continue from the newest checkpoint in `out`; False starts
            over (old checkpoints and metrics are removed).
        image_roots (sequence of paths, optional): folders the images may live in besides the records' folder.
        console (rich Console, optional): progress and messages (stderr).

    Raises:
        DataError: no usable record (exit 2). InputError: a checkpoint made with other records or settings.
        TrainError: the base model, its processor or the LoRA targets cannot be used.

    Example:
        >>> res = train_assessor("runs/sft", load_config(), "runs/assessor", base="/models/tiny-qwen2vl",
        ...                      max_steps=3, image_roots=["examples/images"])       # doctest: +SKIP
        >>> res.steps, sorted(res.rows[-1])                                          # doctest: +SKIP
        (3, ['epoch', 'eval_loss', 'grad_norm', 'loss', 'lr', 'step'])
    """
    from rich.console import Console
    from rich.markup import escape

    started = time.perf_counter()
    console = console or Console(stderr=True)
    tc = cfg.assessor_train
    base = base or tc.base
    out = Path(out)
    records = read_records(records_path, cfg.assessor, image_roots=image_roots)
    for skip in records.skipped[:20]:
        console.print(f"[yellow]skipped[/yellow] {escape(str(skip))}", highlight=False, soft_wrap=True)
    if len(records.skipped) > 20:
        console.print(f"[yellow]skipped[/yellow] ... and {len(records.skipped) - 20} more (see {PROBLEMS_FILE})")
    if not records.records:
        reasons = ", ".join(f"{k} {v}" for k, v in records.skip_counts().items() if v)
        raise DataError(f"{records_path}: no usable record ({len(records.skipped)} skipped: {reasons})")
    if records.prompt_mismatch:
        console.print(f"[yellow]warning[/yellow] {records.prompt_mismatch} record(s) carry a prompt other than the "
                      "one `understand` sends with this config (assessor.templates / output / explanations / "
                      "dialect): the adapter would be asked differently at inference", highlight=False)
    train, held = split_records(records.records, tc.eval_fraction, tc.max_eval_records, tc.seed)
    checkpoint, start, rows = _prepare_folder(out, _fingerprint(base, records, cfg), base, resume)
    atomic_write_text(out / PROBLEMS_FILE, "".join(
        json.dumps({"where": s.where, "kind": s.kind, "problem": s.problem}) + "\n" for s in records.skipped))

    from portraitcraft.train.assessor_loop import run_sft

    loop = run_sft(train, held, cfg, out, base=base, max_steps=max_steps, checkpoint=checkpoint, rows=rows,
                   console=console)
    result = AssessorResult(
        out=out, base=base, steps=loop.steps, resumed_from=start, rows=rows, used=len(train), held_out=len(held),
        records=records, device=loop.device, precision=loop.precision, seconds=time.perf_counter() - started,
        train_seconds=loop.train_seconds, peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        lora_rank=tc.lora_rank, model=loop.model, processor=loop.processor,
    )
    atomic_write_json(out / SUMMARY_FILE, result.summary())
    return result


__all__ = ["ADAPTER_FILES", "METRICS_FILE", "SERVED_NAME", "SUMMARY_FILE", "AssessorResult", "serve_command",
           "train_assessor"]
