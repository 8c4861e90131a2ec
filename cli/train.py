"""`portraitcraft train sft|dpo`: LoRA training on Track 2 items or on exported preference pairs (train/)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from portraitcraft.atomic import check_output_folder
from portraitcraft.cli.common import ConfigOption, SetOption, config_from_cli, console, err_console, print_json
from portraitcraft.errors import InputError
from portraitcraft.runs import lock_run_folder

app = typer.Typer(no_args_is_help=True)

OutOption = typer.Option(..., "--out", help="The run folder (metrics.jsonl, checkpoints/, lora.safetensors).")
MaxStepsOption = typer.Option(None, "--max-steps", min=1, help="Total optimiser steps (beats train.epochs).")
ResumeOption = typer.Option(True, "--resume/--no-resume", help="Continue from the newest checkpoint in --out.")
ValidateOption = typer.Option(False, "--validate", help="Draw train.validate_prompts with and without the LoRA.")
JsonOption = typer.Option(False, "--json", help="Print the run summary as JSON.")


def _report(result: Any, as_json: bool) -> None:
    if not result.main_process:  # one summary per run under `accelerate launch` / torchrun
        return
    last = result.rows[-1] if result.rows else {}
    summary = {
        "out": str(result.out), "lora": str(result.lora), "steps": result.steps, "resumed_from": result.start_step,
        "used": result.used, "skipped": result.skipped, "last": last, "seconds": round(result.seconds, 2),
        "encoder_forwards": result.forwards, "validation": [str(p) for p in result.validation],
    }
    if as_json:
        print_json(summary)
        return
    shown = " ".join(f"{k}={v:.4g}" for k, v in last.items() if k not in ("step", "lr"))
    console.print(f"{result.kind}: {result.steps} steps ({result.used} items used, {result.skipped} skipped) in "
                  f"{result.seconds:.1f} s; last {shown}")
    console.print(f"LoRA: {result.lora}  (use it with [generator] loras = [{{ path = \"{result.lora}\" }}])",
                  markup=False, highlight=False)


def _require_rows(items: Any, source: Path) -> None:
    """Every row unusable: bad input named before any model is loaded (exit 2), each skipped row listed."""
    if items.items:
        return
    for problem in items.problems[:20]:
        err_console.print(f"skipped {problem}", markup=False, highlight=False, soft_wrap=True)
    raise InputError(f"{source}: no usable training rows ({items.total} read, {items.skipped} skipped; listed "
                     "above)")


@app.command("sft")
def sft(
    train_file: Path = typer.Argument(..., help="track_2_train.json (JSON array or JSONL of Track 2 items)."),
    images: Path = typer.Option(..., "--images", help="Folder of the train images (root, then images_00..10)."),
    out: Path = OutOption,
    config: Path | None = ConfigOption,
    sets: list[str] | None = SetOption,
    max_steps: int | None = MaxStepsOption,
    resume: bool = ResumeOption,
    validate: bool = ValidateOption,
    as_json: bool = JsonOption,
) -> None:
    """Supervised LoRA fine-tuning (flow matching) on images with their [Content]/[Composition] prompts."""
    from portraitcraft.train.data import read_sft_items
    from portraitcraft.train.runner import run_training

    cfg = config_from_cli(config, sets)
    lock_run_folder(check_output_folder(out))  # before any model load; one process per run folder
    items = read_sft_items(train_file, images, cfg)
    _require_rows(items, train_file)
    result = run_training("sft", items, cfg, out, max_steps=max_steps, resume=resume, validate=validate,
                          console=err_console)
    _report(result, as_json)


@app.command("dpo")
def dpo(
    pairs: Path = typer.Argument(..., help="Pairs: a `pairs export` folder, a pickapic parquet (caption, jpg_0, "
                                 "jpg_1, label_0, ...) or JSONL."),
    out: Path = OutOption,
    config: Path | None = ConfigOption,
    sets: list[str] | None = SetOption,
    max_steps: int | None = MaxStepsOption,
    resume: bool = ResumeOption,
    validate: bool = ValidateOption,
    as_json: bool = JsonOption,
) -> None:
    """Diffusion-DPO (flow matching) of a LoRA on preference pairs; optional pose ControlNet (train.pose)."""
    from portraitcraft.train.data import read_pairs
    from portraitcraft.train.runner import run_training

    cfg = config_from_cli(config, sets)
    lock_run_folder(check_output_folder(out))  # before any model load; one process per run folder
    items = read_pairs(pairs)
    _require_rows(items, pairs)
    result = run_training("dpo", items, cfg, out, max_steps=max_steps, resume=resume, validate=validate,
                          console=err_console)
    _report(result, as_json)


@app.command("assessor")
def assessor(
    records: Path = typer.Argument(..., help="Records file or folder from `understand export-sft --format openai`."),
    out: Path = typer.Option(..., "--out", help="The run folder (adapter, metrics.jsonl, checkpoints/, summary.json)."),
    base: str | None = typer.Option(None, "--base", help="Base model: hub id or local Qwen2-VL / Qwen2.5-VL / "
                                    "Qwen3-VL folder (default assessor_train.base, Qwen/Qwen3-VL-4B-Instruct)."),
    images: list[Path] | None = typer.Option(None, "--images", metavar="DIR", help="Folder the records' images may "
                                             "live in besides the records' folder (the --images the export read); "
                                             "repeatable."),
    config: Path | None = ConfigOption,
    sets: list[str] | None = SetOption,
    max_steps: int | None = typer.Option(None, "--max-steps", min=1, help="Total optimiser steps (beats "
                                         "assessor_train.max_steps and epochs)."),
    resume: bool = ResumeOption,
    as_json: bool = JsonOption,
) -> None:
    """LoRA SFT of a Qwen-VL assessor on its own chat records (TRL + PEFT); serve DIR with vLLM --lora-modules."""
    from portraitcraft.train.assessor import train_assessor

    cfg = config_from_cli(config, sets)
    result = train_assessor(records, cfg, out, base=base, max_steps=max_steps, resume=resume,
                            image_roots=images or (), console=err_console)
    summary = result.summary()
    if as_json:
        print_json(summary)
        return
    losses = " ".join(f"{k}={summary[k]:.4g}" for k in ("final_loss", "final_eval_loss") if summary[k] is not None)
    console.print(f"assessor: {result.steps} steps ({result.used} records, {result.held_out} held out, "
                  f"{summary['skipped']} skipped) in {result.seconds:.1f} s; {losses}", highlight=False)
    console.print(f"adapter: {result.out}\nserve it: {summary['serve']}\nthen use [assessor] model = "
                  f"\"{summary['served_model']}\"", markup=False, highlight=False, soft_wrap=True)
