"""The training loop shared by SFT and DPO: accelerate, LoRA, checkpoints, metrics, validation.

Determinism and resuming: the micro-batch stream is a concatenation of per-epoch orders drawn from
(seed, epoch), and micro-batch m draws its noise and noise levels from a generator seeded by (seed, m). A
checkpoint therefore only needs the adapter, the optimiser and LR-schedule states and the step count:
resuming replays exactly the batches and noise an uninterrupted run would have used.

Run folder: `metrics.jsonl` (one row per optimiser step: `step` = updates applied before the row's batch, so
step 0 is the untouched model; `loss`; for DPO `reward_accuracy`, `reward_margin`), `problems.jsonl`
(skipped rows), `checkpoints/step_<k>/`, `lora.safetensors` (loads through `[generator] loras`),
`summary.json`, `validation/` (with --validate), `tensorboard/` when TensorBoard is installed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from portraitcraft.atomic import atomic_write_json, atomic_write_jsonl
from portraitcraft.config import PortraitcraftConfig, TrainConfig
from portraitcraft.runs import ResultsLog
from portraitcraft.train import TrainError
from portraitcraft.train.cache import Prepared, SampleEncoder, TensorCache
from portraitcraft.train.data import Buckets, ItemSet
from portraitcraft.train.models import FlowModel

Kind = Literal["sft", "dpo"]
LORA_FILE = "lora.safetensors"


@dataclass
class TrainResult:
    """What a run did: steps, where the LoRA is, the metric rows, the skipped rows, encoder forward counts."""

    out: Path
    kind: Kind
    steps: int
    start_step: int
    lora: Path
    rows: list[dict[str, Any]]
    used: int
    skipped: int
    problems: list[str]
    forwards: dict[str, int]
    cache_hits: int
    seconds: float
    prepare_seconds: float = 0.0
    loop_seconds: float = 0.0
    main_process: bool = True
    validation: list[Path] = field(default_factory=list)
    model: FlowModel | None = field(default=None, repr=False)
    train_config: TrainConfig | None = field(default=None, repr=False)
    encoder: SampleEncoder | None = field(default=None, repr=False)
    prepared: list[Prepared] = field(default_factory=list, repr=False)


def mixed_seed(*parts: int) -> int:
    """A 63-bit seed from integers (stable across runs and processes)."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


class BatchPlan:
    """The micro-batch stream: per epoch, each bucket's items shuffled and chunked, chunks shuffled."""

    def __init__(self, preps: list[Prepared], batch_size: int, seed: int) -> None:
        self.preps, self.batch_size, self.seed = preps, batch_size, seed
        self._epochs: dict[int, list[list[int]]] = {}
        self.per_epoch = len(self._order(0))

    def _order(self, epoch: int) -> list[list[int]]:
        if epoch not in self._epochs:
            rng = np.random.default_rng([self.seed, epoch])
            by_bucket: dict[tuple[int, int], list[int]] = {}
            for i, p in enumerate(self.preps):
                by_bucket.setdefault(p.size, []).append(i)
            chunks = []
            for size in sorted(by_bucket):
                idx = [by_bucket[size][j] for j in rng.permutation(len(by_bucket[size]))]
                chunks += [idx[k:k + self.batch_size] for k in range(0, len(idx), self.batch_size)]
            self._epochs = {epoch: [chunks[j] for j in rng.permutation(len(chunks))]}
        return self._epochs[epoch]

    def micro(self, m: int) -> list[Prepared]:
        return [self.preps[i] for i in self._order(m // self.per_epoch)[m % self.per_epoch]]


def _fingerprint(kind: Kind, model: str, preps: list[Prepared], tc: TrainConfig) -> str:
    relevant = tc.model_dump(include={"lora_rank", "lora_alpha", "lora_targets", "batch_size", "grad_accum",
                                      "seed", "resolution", "pose", "label_mode", "beta", "sft_weight"})
    keys = [k for p in preps for k in (*p.image_keys, p.prompt_key)]
    return hashlib.sha256(json.dumps([kind, model, relevant, keys], sort_keys=True).encode()).hexdigest()[:16]


def _checkpoints(out: Path) -> list[tuple[int, Path]]:
    found = []
    for d in (out / "checkpoints").glob("step_*"):
        if (d / "state.json").is_file() and d.name[5:].isdigit():
            found.append((int(d.name[5:]), d))
    return sorted(found)


def _read_rows(path: Path, below: int) -> list[dict[str, Any]]:
    """The metrics rows of the steps before `below` (the log's torn last line from a kill is dropped)."""
    return [row for row in ResultsLog(path) if row.get("step", below) < below]


def _tensorboard(out: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard not installed: metrics.jsonl only
        return None
    return SummaryWriter(str(out / "tensorboard"))


def run_training(
    kind: Kind,
    items: ItemSet,
    cfg: PortraitcraftConfig,
    out: str | Path,
    *,
    max_steps: int | None = None,
    resume: bool = True,
    validate: bool = False,
    console: Any = None,
    on_model: Callable[[FlowModel], None] | None = None,
) -> TrainResult:
    """Train a LoRA with the `kind` objective on `items` into the run folder `out`.

    Args:
        kind ("sft" | "dpo"): the objective (portraitcraft.train.objectives).
        items (ItemSet): from `read_sft_items` or `read_pairs`; rows that fail to decode are added to its
            problems and skipped.
        cfg (PortraitcraftConfig): the `[train]` section, plus `[generator]` (model, controlnet) and
            `[planner]` (buckets).
        out (str | Path): the run folder.
        max_steps (int, optional): total optimiser steps (beats `[train] max_steps` and epochs).
        resume (bool, optional, defaults to True): continue from the newest checkpoint in `out`; False
            starts over (old checkpoints and metrics are removed).
        validate (bool, optional): draw `[train] validate_prompts` with and without the LoRA afterwards.
        console (rich Console, optional): progress bar and messages.
        on_model (callable, optional): called with the loaded model before training (tests count forwards).

    Raises:
        TrainError: nothing usable to train on, an incompatible LoRA target, a missing ControlNet, a checkpoint
            made with other data or settings.

    Example:
        >>> res = run_training("dpo", read_pairs("pairs.parquet"), load_config("configs/train-offline.toml"),
        ...                    "runs/dpo", max_steps=30)  # doctest: +SKIP
    """
    from accelerate import Accelerator
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from portraitcraft.train.objectives import dpo_loss, sft_loss

    started = time.perf_counter()
    tc = cfg.train
    out = Path(out)
    console = console or Console(stderr=True)
    accelerator = Accelerator(mixed_precision="bf16" if tc.precision == "bf16" else "no", cpu=tc.cpu)
    main = accelerator.is_main_process
    model_id = tc.model or cfg.generator.model
    controlnet = tc.controlnet or cfg.generator.controlnet
    if kind == "dpo" and tc.pose and not controlnet:
        raise TrainError("[train] pose = true needs a pose ControlNet: set [train] controlnet or [generator] "
                         "controlnet")
    model = FlowModel.load(model_id, device=accelerator.device,
                           dtype="bfloat16" if tc.precision == "bf16" else "float32")
    params = model.add_lora(rank=tc.lora_rank, alpha=tc.lora_alpha, targets=tc.lora_targets, seed=tc.seed)
    pose = kind == "dpo" and tc.pose
    if pose:
        model.attach_controlnet(controlnet, "bfloat16" if tc.precision == "bf16" else "float32")
    if tc.gradient_checkpointing:
        model.transformer.enable_gradient_checkpointing()
    if on_model:
        on_model(model)

    from portraitcraft.paths import cache_root as root_of_caches

    cache_root = (Path(tc.cache_dir).expanduser() if tc.cache_dir else root_of_caches(cfg.run.cache_dir) / "train"
                  ) if tc.cache else None
    cache = TensorCache(cache_root)
    buckets = Buckets.from_planner(cfg.planner, long_side=tc.resolution, multiple=model.multiple)
    encoder = SampleEncoder(model, cache, buckets, tc.max_sequence_length, pose=pose)
    prepare_started = time.perf_counter()
    with console.status(f"preparing {len(items.items)} {kind} items"):
        preps = encoder.prepare(items)
    prepare_seconds = time.perf_counter() - prepare_started
    for problem in items.problems:
        console.print(f"[yellow]skipped[/yellow] {problem}", highlight=False)
    if not preps:
        raise TrainError(f"no usable training rows: {items.total} read, {items.skipped} skipped")
    plan = BatchPlan(preps, tc.batch_size, tc.seed)
    world, rank, accum = accelerator.num_processes, accelerator.process_index, tc.grad_accum
    total = max_steps or tc.max_steps or max(1, math.ceil(tc.epochs * plan.per_epoch / (accum * world)))

    optimizer = torch.optim.AdamW(params, lr=tc.learning_rate, weight_decay=tc.weight_decay)
    warmup = tc.warmup_steps
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0)
    denoiser, optimizer = accelerator.prepare(model.transformer, optimizer)
    model.denoiser = denoiser

    fingerprint = _fingerprint(kind, model_id, preps, tc)
    start = 0
    metrics_path = out / "metrics.jsonl"
    checkpoints = _checkpoints(out)
    if checkpoints and resume:
        start, ckpt = checkpoints[-1]
        state = json.loads((ckpt / "state.json").read_text())
        if state.get("fingerprint") != fingerprint:
            raise TrainError(f"{ckpt} was made with other data or settings ({kind}, {model_id}); use a new --out "
                             "or --no-resume")
        from safetensors.torch import load_file

        model.load_lora_state(load_file(ckpt / "adapter.safetensors"))
        optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=True))
        schedule.load_state_dict(torch.load(ckpt / "schedule.pt", weights_only=True))
        console.print(f"resuming from {ckpt} (step {start})")
    elif main and not resume:
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    rows = _read_rows(metrics_path, start) if start else []
    if main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_jsonl(metrics_path, rows)
        atomic_write_jsonl(out / "problems.jsonl",
                           ({"row": p.row, "item": p.item, "problem": p.problem} for p in items.problems))
    metrics_log = ResultsLog(metrics_path) if main else None
    writer = _tensorboard(out) if main else None
    objective = sft_loss if kind == "sft" else dpo_loss

    progress = Progress(TextColumn(f"{kind}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                        TimeRemainingColumn(), console=console, disable=not main)
    loop_started = time.perf_counter()
    with progress:
        task = progress.add_task(kind, total=total, completed=start, info="")
        for step in range(start, total):
            model.transformer.train()
            collected: list[dict[str, float]] = []
            for j in range(accum):
                m = (step * accum + j) * world + rank
                batch = encoder.batch(plan.micro(m))
                generator = torch.Generator().manual_seed(mixed_seed(tc.seed, m))
                sync = accelerator.no_sync(denoiser) if j < accum - 1 else contextlib.nullcontext()
                with sync, accelerator.autocast():
                    loss, metrics = objective(model, batch, tc, generator)
                    accelerator.backward(loss / accum)
                collected.append(metrics)
            if tc.max_grad_norm > 0:
                accelerator.clip_grad_norm_(params, tc.max_grad_norm)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            means = {k: float(np.mean([c[k] for c in collected])) for k in collected[0]}
            if world > 1:
                keys = sorted(means)
                reduced = accelerator.reduce(torch.tensor([means[k] for k in keys], device=accelerator.device), "mean")
                means = dict(zip(keys, reduced.tolist(), strict=True))
            row = {"step": step, **means, "lr": schedule.get_last_lr()[0]}
            rows.append(row)
            if main:
                if step % tc.log_every == 0 or step == total - 1:
                    metrics_log.append(row)  # type: ignore[union-attr]
                if writer is not None:
                    for k, v in means.items():
                        writer.add_scalar(f"{kind}/{k}", v, step)
            info = " ".join(f"{k}={v:.4g}" for k, v in means.items() if k in ("loss", "reward_accuracy"))
            progress.update(task, advance=1, info=info)
            done = step + 1
            if done % tc.checkpoint_every == 0 or done == total:
                accelerator.wait_for_everyone()
                if main:
                    _save_checkpoint(out, done, model, optimizer, schedule, fingerprint, tc.keep_checkpoints)
    loop_seconds = time.perf_counter() - loop_started
    if writer is not None:
        writer.close()
    lora = out / LORA_FILE
    if main:
        model.save_lora(lora)
    result = TrainResult(
        out=out, kind=kind, steps=total, start_step=start, lora=lora, rows=rows, used=len(preps),
        skipped=items.skipped, problems=[str(p) for p in items.problems], forwards=dict(model.forwards),
        cache_hits=cache.hits, seconds=time.perf_counter() - started, prepare_seconds=prepare_seconds,
        loop_seconds=loop_seconds, main_process=main, model=model, encoder=encoder, prepared=preps,
        train_config=tc,
    )
    if validate and main:
        from portraitcraft.train.validate import draw_validation

        result.validation = draw_validation(model, cfg, out / "validation", buckets)
    if main:
        atomic_write_json(out / "summary.json", {
            "kind": kind, "model": model_id, "steps": total, "resumed_from": start, "used": result.used,
            "skipped": result.skipped, "problems": result.problems, "lora": str(lora),
            "encoder_forwards": result.forwards, "cache": str(cache_root) if cache_root else None,
            "cache_hits": cache.hits, "seconds": round(result.seconds, 3),
            "prepare_seconds": round(prepare_seconds, 3), "loop_seconds": round(loop_seconds, 3),
            "last": rows[-1] if rows else None, "validation": [str(p) for p in result.validation],
        })
    return result


def _save_checkpoint(out: Path, step: int, model: FlowModel, optimizer: Any, schedule: Any, fingerprint: str,
                     keep: int) -> None:
    """Write checkpoints/step_<step>/ (adapter, optimiser, schedule, state.json last) and prune old ones."""
    from safetensors.torch import save_file

    final = out / "checkpoints" / f"step_{step}"
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(model.lora_state(), tmp / "adapter.safetensors")
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(schedule.state_dict(), tmp / "schedule.pt")
    atomic_write_json(tmp / "state.json", {"step": step, "fingerprint": fingerprint})
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for _, old in _checkpoints(out)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


@torch.no_grad()
def evaluate(result: TrainResult, *, seed: int = 12345, draws: int = 4, lora: bool = True) -> dict[str, float]:
    """The objective's metrics over every prepared item with fixed noise (`draws` per item), without
    updating anything: a noise-free view of what training changed. `lora=False` measures the reference."""
    from portraitcraft.train.objectives import dpo_loss, sft_loss

    assert result.model is not None and result.encoder is not None
    model, cfg = result.model, result.encoder
    objective = sft_loss if result.kind == "sft" else dpo_loss
    tc = _eval_cfg(result)
    model.transformer.eval()
    rows = []
    ctx = contextlib.nullcontext() if lora else model.adapters_disabled()
    with ctx:
        for d in range(draws):
            for i, prep in enumerate(result.prepared):
                generator = torch.Generator().manual_seed(mixed_seed(seed, d, i))
                rows.append(objective(model, cfg.batch([prep]), tc, generator)[1])
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def _eval_cfg(result: TrainResult) -> TrainConfig:
    return result.train_config if result.train_config is not None else TrainConfig()
