"""The assessor LoRA's training loop: TRL's `SFTTrainer` with PEFT, answer-only labels, metrics.jsonl, checkpoints.

`run_sft` is called by `portraitcraft.train.assessor.train_assessor` after the records were read, split and the
run folder prepared; it loads the model, trains, and saves the adapter with the processor files.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from portraitcraft.config import PortraitcraftConfig
from portraitcraft.train.assessor_collate import AssessorCollator
from portraitcraft.train.assessor_data import AssessorRecord
from portraitcraft.train.assessor_model import (
    load_base,
    load_processor,
    lora_config,
    pick_device,
    save_processor_files,
)

TRAIN_KEYS = {"loss": "loss", "learning_rate": "lr", "grad_norm": "grad_norm", "epoch": "epoch",
              "mean_token_accuracy": "token_accuracy"}
EVAL_KEYS = {"eval_loss": "eval_loss", "eval_mean_token_accuracy": "eval_token_accuracy"}


@dataclass
class LoopResult:
    """The trained model and processor, the step reached, the device and how long the loop took."""

    model: Any
    processor: Any
    steps: int
    device: str
    precision: str
    train_seconds: float


class MetricsWriter(TrainerCallback):
    """Appends one metrics.jsonl row per logged step (train and eval logs of one step merged into one row).

    A row is written when its step's eval arrives, before a checkpoint is saved, or when the next step logs,
    so a checkpoint at step s always has the rows of steps <= s on disk.
    """

    def __init__(self, path: Path, rows: list[dict[str, Any]], console: Any) -> None:
        self.path, self.rows, self.console = path, rows, console
        self.pending: dict[str, Any] | None = None
        self.progress: Any = None
        self.task: Any = None
        self.started = 0.0
        self.seconds = 0.0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.started = time.perf_counter()
        if state.is_world_process_zero:
            self.progress = Progress(TextColumn("assessor"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[info]}"), TimeRemainingColumn(), console=self.console)
            self.progress.start()
            self.task = self.progress.add_task("assessor", total=state.max_steps, completed=state.global_step,
                                               info="")

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if state.global_step >= state.max_steps:  # the last step: always evaluate and checkpoint it
            control.should_save = True
            control.should_evaluate = args.eval_strategy != "no"
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step)
        return control

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
               **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        row = {new: float(logs[old]) for old, new in {**TRAIN_KEYS, **EVAL_KEYS}.items() if old in logs}
        if "loss" not in row and "eval_loss" not in row:  # the closing train_runtime log, nothing per step
            return
        step = state.global_step
        if self.pending is not None and self.pending["step"] != step:
            self._flush()
        self.pending = {"step": step, **(self.pending or {}), **row}
        if self.progress is not None:
            shown = " ".join(f"{k}={self.pending[k]:.4g}" for k in ("loss", "eval_loss") if k in self.pending)
            self.progress.update(self.task, info=shown)
        if "eval_loss" in row:
            self._flush()

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._flush()

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._flush()
        self.seconds = time.perf_counter() - self.started
        if self.progress is not None:
            self.progress.stop()

    def _flush(self) -> None:
        if self.pending is None:
            return
        with self.path.open("a") as fh:
            fh.write(json.dumps(self.pending) + "\n")
        self.rows.append(self.pending)
        self.pending = None


def sft_config(cfg: PortraitcraftConfig, out: Path, *, device: str, precision: str, max_steps: int | None,
               evaluate: bool) -> Any:
    """TRL's SFTConfig from `[assessor_train]` (checkpoints under out/checkpoints, no hub, no reporters)."""
    from trl import SFTConfig

    tc = cfg.assessor_train
    steps = max_steps or tc.max_steps
    return SFTConfig(
        output_dir=str(out / "checkpoints"),
        max_steps=steps or -1,
        num_train_epochs=tc.epochs,
        per_device_train_batch_size=tc.batch_size,
        per_device_eval_batch_size=tc.batch_size,
        gradient_accumulation_steps=tc.grad_accum,
        learning_rate=tc.learning_rate,
        lr_scheduler_type=tc.lr_scheduler,
        warmup_steps=tc.warmup_ratio,
        weight_decay=tc.weight_decay,
        max_grad_norm=tc.max_grad_norm,
        logging_steps=tc.log_every,
        eval_strategy="steps" if evaluate else "no",
        eval_steps=tc.eval_every,
        save_strategy="steps",
        save_steps=tc.checkpoint_every,
        save_total_limit=tc.keep_checkpoints,
        bf16=precision == "bf16",
        use_cpu=device == "cpu",
        seed=tc.seed,
        data_seed=tc.seed,
        activation_checkpointing=tc.gradient_checkpointing,
        dataloader_num_workers=tc.dataloader_workers,
        max_length=tc.max_length,
        completion_only_loss=True,
        remove_unused_columns=False,
        dataset_kwargs={"skip_prepare_dataset": True},
        report_to="none",
        disable_tqdm=True,
        prediction_loss_only=True,
        save_only_model=False,
    )


def run_sft(train: Sequence[AssessorRecord], held: Sequence[AssessorRecord], cfg: PortraitcraftConfig, out: Path,
            *, base: str, max_steps: int | None, checkpoint: Path | None, rows: list[dict[str, Any]],
            console: Any) -> LoopResult:
    """Load `base`, train the LoRA on `train` (eval_loss on `held`), save the adapter and processor into `out`."""
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback
    from trl import SFTTrainer

    tc = cfg.assessor_train
    device, precision = pick_device(tc)
    processor = load_processor(base)
    from rich.markup import escape

    with console.status(f"loading {escape(base)} ({precision} on {device})"):
        model = load_base(base, device, precision)
    peft = lora_config(tc, model)
    writer = MetricsWriter(out / "metrics.jsonl", rows, console)
    trainer = SFTTrainer(
        model=model,
        args=sft_config(cfg, out, device=device, precision=precision, max_steps=max_steps, evaluate=bool(held)),
        train_dataset=Dataset.from_list([r.row() for r in train]),
        eval_dataset=Dataset.from_list([r.row() for r in held]) if held else None,
        processing_class=processor,
        data_collator=AssessorCollator(processor, cfg.assessor, tc.max_length),
        peft_config=peft,
        callbacks=[writer],
    )
    trainer.remove_callback(PrinterCallback)
    if checkpoint is not None:
        console.print(f"resuming from {checkpoint}", markup=False, highlight=False)
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    trainer.model.save_pretrained(str(out))
    save_processor_files(processor, out)
    return LoopResult(trainer.model, processor, trainer.state.global_step, device, precision, writer.seconds)


__all__ = ["LoopResult", "MetricsWriter", "run_sft", "sft_config"]
