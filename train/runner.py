"""The training loop shared by SFT and DPO: accelerate, LoRA, checkpoints, metrics, validation.

Determinism and resuming: the micro-batch stream is a concatenation of per-epoch orders drawn from
(seed, epoch), and micro-batch m draws its noise and noise levels from a generator seeded by (seed, m). A
checkpoint (accelerate's `save_state`, with hooks that keep the LoRA weights only, never the base model) therefore
holds the adapter, the optimiser and LR-schedule states, the RNG states and the step count: resuming
(`load_state`) replays exactly the batches and noise an uninterrupted run would have used.

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


@dataclass
class _Session:
    """One training run's live parts, built step by step by `run_training`."""

    kind: Kind
    cfg: PortraitcraftConfig
    out: Path
    console: Any
    accelerator: Any
    model: FlowModel
    params: list[Any]
    model_id: str
    pose: bool
    cache: TensorCache | None = None
    cache_root: Path | None = None
    buckets: Buckets | None = None
    encoder: SampleEncoder | None = None
    preps: list[Prepared] = field(default_factory=list)
    prepare_seconds: float = 0.0
    optimizer: Any = None
    schedule: Any = None
    fingerprint: str = ""

    @property
    def main(self) -> bool:
        return bool(self.accelerator.is_main_process)


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

    Steps: `_load_model` (accelerate, the base model, the LoRA, the pose ControlNet), `_prepare_items`
    (encode or read the latent/text cache), `_optimise` (optimiser, schedule, accelerate's prepare and
    checkpoint hooks), `_resume` (accelerate's `load_state` of the newest checkpoint), `_train_loop`, `_finish`.

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
    from rich.console import Console

    started = time.perf_counter()
    s = _load_model(kind, cfg, Path(out), console or Console(stderr=True), on_model)
    _prepare_items(s, items)
    plan = BatchPlan(s.preps, cfg.train.batch_size, cfg.train.seed)
    world, accum = s.accelerator.num_processes, cfg.train.grad_accum
    total = max_steps or cfg.train.max_steps or max(1, math.ceil(cfg.train.epochs * plan.per_epoch / (accum * world)))
    _optimise(s)
    start = _resume(s, resume)
    rows = _start_logs(s, items, start)
    loop_started = time.perf_counter()
    _train_loop(s, plan, rows, start, total)
    return _finish(s, items, rows, start, total, validate, started, time.perf_counter() - loop_started)


def _load_model(kind: Kind, cfg: PortraitcraftConfig, out: Path, console: Any,
                on_model: Callable[[FlowModel], None] | None) -> _Session:
    from accelerate import Accelerator

    tc = cfg.train
    accelerator = Accelerator(mixed_precision="bf16" if tc.precision == "bf16" else "no", cpu=tc.cpu)
    model_id = tc.model or cfg.generator.model
    controlnet = tc.controlnet or cfg.generator.controlnet
    if kind == "dpo" and tc.pose and not controlnet:
        raise TrainError("[train] pose = true needs a pose ControlNet: set [train] controlnet or [generator] "
                         "controlnet")
    dtype = "bfloat16" if tc.precision == "bf16" else "float32"
    model = FlowModel.load(model_id, device=accelerator.device, dtype=dtype)
    params = model.add_lora(rank=tc.lora_rank, alpha=tc.lora_alpha, targets=tc.lora_targets, seed=tc.seed)
    pose = kind == "dpo" and tc.pose
    if pose:
        model.attach_controlnet(controlnet, dtype)
    if tc.gradient_checkpointing:
        model.transformer.enable_gradient_checkpointing()
    if on_model:
        on_model(model)
    return _Session(kind=kind, cfg=cfg, out=out, console=console, accelerator=accelerator, model=model,
                    params=params, model_id=model_id, pose=pose)


def _prepare_items(s: _Session, items: ItemSet) -> None:
    from portraitcraft.paths import cache_root as root_of_caches

    tc = s.cfg.train
    s.cache_root = (Path(tc.cache_dir).expanduser() if tc.cache_dir else
                    root_of_caches(s.cfg.run.cache_dir) / "train") if tc.cache else None
    s.cache = TensorCache(s.cache_root)
    s.buckets = Buckets.from_planner(s.cfg.planner, long_side=tc.resolution, multiple=s.model.multiple)
    s.encoder = SampleEncoder(s.model, s.cache, s.buckets, tc.max_sequence_length, pose=s.pose)
    prepare_started = time.perf_counter()
    with s.console.status(f"preparing {len(items.items)} {s.kind} items"):
        s.preps = s.encoder.prepare(items)
    s.prepare_seconds = time.perf_counter() - prepare_started
    for problem in items.problems:
        s.console.print(f"[yellow]skipped[/yellow] {problem}", highlight=False)
    if not s.preps:
        raise TrainError(f"no usable training rows: {items.total} read, {items.skipped} skipped")
    s.fingerprint = _fingerprint(s.kind, s.model_id, s.preps, tc)


def _optimise(s: _Session) -> None:
    """The optimiser and LR schedule, prepared by accelerate; checkpoints hold the LoRA weights only."""
    tc = s.cfg.train
    optimizer = torch.optim.AdamW(s.params, lr=tc.learning_rate, weight_decay=tc.weight_decay)
    warmup = tc.warmup_steps
    s.schedule = torch.optim.lr_scheduler.LambdaLR(optimizer,
                                                   lambda k: min(1.0, (k + 1) / warmup) if warmup else 1.0)
    denoiser, s.optimizer = s.accelerator.prepare(s.model.transformer, optimizer)
    s.model.denoiser = denoiser
    s.accelerator.register_for_checkpointing(s.schedule)

    def save_lora_only(models: list[Any], weights: list[Any], output_dir: str) -> None:
        from safetensors.torch import save_file

        weights.clear()  # not the full transformer: the adapter is all that trains
        if s.main:
            save_file(s.model.lora_state(), Path(output_dir) / "adapter.safetensors")

    def load_lora_only(models: list[Any], input_dir: str) -> None:
        from safetensors.torch import load_file

        models.clear()
        s.model.load_lora_state(load_file(Path(input_dir) / "adapter.safetensors"))

    s.accelerator.register_save_state_pre_hook(save_lora_only)
    s.accelerator.register_load_state_pre_hook(load_lora_only)


def _resume(s: _Session, resume: bool) -> int:
    """The step to start from: the newest checkpoint's (restored with accelerate's `load_state`), else 0."""
    checkpoints = _checkpoints(s.out)
    if checkpoints and resume:
        start, ckpt = checkpoints[-1]
        state = json.loads((ckpt / "state.json").read_text())
        if state.get("fingerprint") != s.fingerprint:
            raise TrainError(f"{ckpt} was made with other data or settings ({s.kind}, {s.model_id}); use a new "
                             "--out or --no-resume")
        s.accelerator.load_state(str(ckpt))
        s.console.print(f"resuming from {ckpt} (step {start})")
        return start
    if s.main and not resume:
        shutil.rmtree(s.out / "checkpoints", ignore_errors=True)
    return 0


def _start_logs(s: _Session, items: ItemSet, start: int) -> list[dict[str, Any]]:
    """The metric rows kept from before `start` (the log is rewritten with them), and the skipped rows."""
    rows = _read_rows(s.out / "metrics.jsonl", start) if start else []
    if s.main:
        s.out.mkdir(parents=True, exist_ok=True)
        atomic_write_jsonl(s.out / "metrics.jsonl", rows)
        atomic_write_jsonl(s.out / "problems.jsonl",
                           ({"row": p.row, "item": p.item, "problem": p.problem} for p in items.problems))
    return rows


def _train_loop(s: _Session, plan: BatchPlan, rows: list[dict[str, Any]], start: int, total: int) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from portraitcraft.train.objectives import dpo_loss, sft_loss

    tc, accelerator, model, encoder = s.cfg.train, s.accelerator, s.model, s.encoder
    assert encoder is not None
    world, rank, accum = accelerator.num_processes, accelerator.process_index, tc.grad_accum
    objective = sft_loss if s.kind == "sft" else dpo_loss
    metrics_log = ResultsLog(s.out / "metrics.jsonl") if s.main else None
    writer = _tensorboard(s.out) if s.main else None
    progress = Progress(TextColumn(f"{s.kind}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[info]}"), TimeRemainingColumn(), console=s.console,
                        disable=not s.main)
    with progress:
        task = progress.add_task(s.kind, total=total, completed=start, info="")
        for step in range(start, total):
            model.transformer.train()
            collected: list[dict[str, float]] = []
            for j in range(accum):
                m = (step * accum + j) * world + rank
                batch = encoder.batch(plan.micro(m))
                generator = torch.Generator().manual_seed(mixed_seed(tc.seed, m))
                sync = accelerator.no_sync(model.denoiser) if j < accum - 1 else contextlib.nullcontext()
                with sync, accelerator.autocast():
                    loss, metrics = objective(model, batch, tc, generator)
                    accelerator.backward(loss / accum)
                collected.append(metrics)
            if tc.max_grad_norm > 0:
                accelerator.clip_grad_norm_(s.params, tc.max_grad_norm)
            s.optimizer.step()
            s.schedule.step()
            s.optimizer.zero_grad(set_to_none=True)
            means = {k: float(np.mean([c[k] for c in collected])) for k in collected[0]}
            if world > 1:
                keys = sorted(means)
                reduced = accelerator.reduce(torch.tensor([means[k] for k in keys], device=accelerator.device), "mean")
                means = dict(zip(keys, reduced.tolist(), strict=True))
            row = {"step": step, **means, "lr": s.schedule.get_last_lr()[0]}
            rows.append(row)
            if metrics_log is not None and (step % tc.log_every == 0 or step == total - 1):
                metrics_log.append(row)
            if writer is not None:
                for k, v in means.items():
                    writer.add_scalar(f"{s.kind}/{k}", v, step)
            info = " ".join(f"{k}={v:.4g}" for k, v in means.items() if k in ("loss", "reward_accuracy"))
            progress.update(task, advance=1, info=info)
            done = step + 1
            if done % tc.checkpoint_every == 0 or done == total:
                _save_checkpoint(s, done)
    if writer is not None:
        writer.close()


def _finish(s: _Session, items: ItemSet, rows: list[dict[str, Any]], start: int, total: int, validate: bool,
            started: float, loop_seconds: float) -> TrainResult:
    """The LoRA file, the validation drawings and summary.json."""
    lora = s.out / LORA_FILE
    if s.main:
        s.model.save_lora(lora)
    assert s.cache is not None
    result = TrainResult(
        out=s.out, kind=s.kind, steps=total, start_step=start, lora=lora, rows=rows, used=len(s.preps),
        skipped=items.skipped, problems=[str(p) for p in items.problems], forwards=dict(s.model.forwards),
        cache_hits=s.cache.hits, seconds=time.perf_counter() - started, prepare_seconds=s.prepare_seconds,
        loop_seconds=loop_seconds, main_process=s.main, model=s.model, encoder=s.encoder, prepared=s.preps,
        train_config=s.cfg.train,
    )
    if validate and s.main:
        from portraitcraft.train.validate import draw_validation

        result.validation = draw_validation(s.model, s.cfg, s.out / "validation", s.buckets)
    if s.main:
        atomic_write_json(s.out / "summary.json", {
            "kind": s.kind, "model": s.model_id, "steps": total, "resumed_from": start, "used": result.used,
            "skipped": result.skipped, "problems": result.problems, "lora": str(lora),
            "encoder_forwards": result.forwards, "cache": str(s.cache_root) if s.cache_root else None,
            "cache_hits": s.cache.hits, "seconds": round(result.seconds, 3),
            "prepare_seconds": round(s.prepare_seconds, 3), "loop_seconds": round(loop_seconds, 3),
            "last": rows[-1] if rows else None, "validation": [str(p) for p in result.validation],
        })
    return result


def _save_checkpoint(s: _Session, step: int) -> None:
    """checkpoints/step_<step>/ through accelerate's `save_state` (the LoRA weights, the optimiser, the LR
    schedule, the RNG states; state.json last), written beside and renamed into place; old ones pruned."""
    s.accelerator.wait_for_everyone()
    final = s.out / "checkpoints" / f"step_{step}"
    tmp = final.with_name(final.name + ".tmp")
    if s.main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    s.accelerator.wait_for_everyone()
    s.accelerator.save_state(str(tmp))
    if s.main:
        atomic_write_json(tmp / "state.json", {"step": step, "fingerprint": s.fingerprint})
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for _, old in _checkpoints(s.out)[:-s.cfg.train.keep_checkpoints]:
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
