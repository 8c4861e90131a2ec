"""`portraitcraft understand ...`: Track 1 understanding with views, votes and calibration.

    portraitcraft understand TEST.json --images DIR [--config F] --out SUB.zip     (the default command: run)
    portraitcraft understand calibrate VOTES.jsonl GT.json --out calib.json
    portraitcraft understand export-sft TRAIN.json --images DIR --format openai|sharegpt|swift --out DIR
    portraitcraft understand qa QUESTIONS.jsonl --images DIR

The graph, the assessor and the VLM client are imported inside the commands (fast `--help`, no torch).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from typer.core import TyperGroup

from portraitcraft.atomic import atomic_write_jsonl
from portraitcraft.cli.common import (
    EXIT_NOTHING_DONE,
    ConfigOption,
    SetOption,
    config_from_cli,
    console,
    err_console,
    print_json,
)
from portraitcraft.config import PortraitcraftConfig
from portraitcraft.errors import InputError
from portraitcraft.ids import item_key
from portraitcraft.paths import cache_root

if TYPE_CHECKING:
    from portraitcraft.graphs.understand_state import ItemOutcome, UnderstandContext, UnderstandItem
    from portraitcraft.tools.vlm import VLMClient



class _RunByDefault(TyperGroup):
    """`understand FILE ...` means `understand run FILE ...`; named sub-commands work as usual."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(cls=_RunByDefault, no_args_is_help=True)


# ------------------------------------------------------------------------------------------------ shared


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err_console, transient=False)


async def _run_graph(items: Sequence[UnderstandItem], context: UnderstandContext, client: VLMClient, *,
                     run_dir: Path, run_fingerprint: str, concurrency: int, progress: bool) -> list[ItemOutcome]:
    from portraitcraft.graphs.understand_run import run_understand

    bar = _progress() if progress else None
    try:
        if bar is not None:
            bar.start()
            views = bar.add_task("views", total=len(items) * len(context.views))
            done = bar.add_task("images", total=len(items))
        return await run_understand(
            items, context, client, run_dir=run_dir, run_fingerprint=run_fingerprint, concurrency=concurrency,
            on_view=(lambda _id: bar.advance(views)) if bar is not None else None,
            on_item=(lambda _o: bar.advance(done)) if bar is not None else None,
        )
    finally:
        if bar is not None:
            bar.stop()


def _print_failures(outcomes: Sequence[ItemOutcome], limit: int = 20) -> list[str]:
    failed = [f"{o.item['image_path']}: {o.state.get('error')}" for o in outcomes if o.status != "finished"]
    for line in failed[:limit]:
        err_console.print(f"[red]failed:[/red] {escape(str(line))}", highlight=False, soft_wrap=True)
    if len(failed) > limit:
        err_console.print(f"[red]failed:[/red] ... and {len(failed) - limit} more (see the votes file)")
    return failed


def _image_of(images: Path, image_path: str) -> str | None:
    from portraitcraft.data import resolve_image

    found = resolve_image(images, image_path)
    return str(found) if found is not None else None


# ------------------------------------------------------------------------------------------------ run


@app.command("run")
def run(
    test: Path = typer.Argument(..., help="track_1_test.json (the template: order, questions, options), or a "
                                "train-format validation split (then --out is a predictions .json)."),
    images: Path = typer.Option(..., "--images", help="Folder of the test images (root, then images_00..10)."),
    out: Path = typer.Option(..., "--out", "-o", help="The submission zip to write."),
    config: Path | None = ConfigOption,
    sets: list[str] | None = SetOption,
    calibration: Path | None = typer.Option(None, "--calibration", help="calib.json from `understand calibrate`."),
    votes: Path | None = typer.Option(None, "--votes", help="The votes JSONL [default: next to --out]."),
    run_dir: Path | None = typer.Option(None, "--run-dir", help="Checkpoint folder [default: <out>_run/]."),
    allow_missing: bool = typer.Option(False, "--allow-missing", help="Fill failed items with the submission "
                                       "fallback (levels B, answer A, median total) instead of stopping."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars on stderr."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Answer every test item over the configured views, vote, and write the official submission zip."""
    from portraitcraft.atomic import atomic_write_json, check_output_file, check_output_folder
    from portraitcraft.data import detect_kind, load, read_records
    from portraitcraft.graphs.understand_run import (
        build_understand,
        no_answer,
        predictions,
        validation_records,
        vote_row,
        voted,
    )
    from portraitcraft.runs import lock_run_folder
    from portraitcraft.submission import write_track1_submission

    cfg = config_from_cli(config, sets)
    validation = detect_kind(read_records(test)) == "track1_train"
    if validation and out.suffix.lower() != ".json":
        raise InputError(f"{test} is a train-format (validation) file without questions: --out must name a .json "
                         "predictions file (scorable with `eval track1`), not a submission zip")
    # strict: a submission needs every template item, in order
    template = load(test, "track1_train" if validation else "track1_test").items
    items: list[UnderstandItem] = [
        {"id": item_key(t.image_path), "image_path": t.image_path, "image": _image_of(images, t.image_path),
         "task": "track1", "question": getattr(t, "question", None), "options": dict(getattr(t, "options", {})),
         "format": "single"}
        for t in template
    ]
    run_dir = run_dir or out.parent / f"{out.stem}_run"
    votes = votes or out.with_name(f"{out.stem}.votes.jsonl")
    check_output_file(out)  # every output checked before any VLM call
    check_output_file(votes, "--votes")
    lock_run_folder(check_output_folder(run_dir, "--run-dir"))
    context, client, run_fp = build_understand(cfg, calibration)
    outcomes = asyncio.run(_run_graph(items, context, client, run_dir=run_dir, run_fingerprint=run_fp,
                                      concurrency=cfg.run.concurrency, progress=progress))
    atomic_write_jsonl(votes, [vote_row(o, run_fp) for o in outcomes])
    failed = _print_failures(outcomes)
    if failed and not allow_missing:  # nothing written: exit 3 (the input was fine; the endpoint failed them)
        err_console.print(f"error: {len(failed)} of {len(items)} item(s) failed (listed above; every view's answers "
                          f"are in {votes}); no submission written. Run again to retry them (finished items are "
                          "not asked again), or pass --allow-missing to write the submission with the fallback "
                          "for them.", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_NOTHING_DONE)
    finished = voted(outcomes)
    if validation:
        atomic_write_json(out, validation_records(outcomes))
        n_fallback = 0
    else:
        n_fallback = write_track1_submission(template, predictions(outcomes), out,
                                             allow_missing=allow_missing).n_fallback
    stats = client.stats
    summary = {
        ("predictions" if validation else "submission"): str(out), "votes": str(votes), "run_dir": str(run_dir),
        "fingerprint": run_fp, "n_items": len(items), "n_finished": len(finished), "n_failed": len(failed),
        "n_fallback": n_fallback,
        "n_reused": sum(o.reused for o in outcomes), "n_answer_fallback": 0 if validation else no_answer(outcomes),
        "views": [v.name for v in context.views], "samples_per_view": context.assessor.samples,
        "requests": stats.requests, "cache_hits": stats.cache_hits, "n_fallbacks": stats.n_fallbacks,
        "reasks": stats.reasks, "answer_failures": stats.answer_failures,
        "prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.completion_tokens,
    }
    if as_json:
        print_json(summary)
        return
    table = Table(title=f"understand: {test.name}", show_header=False)
    for key, value in summary.items():
        table.add_row(key, ", ".join(value) if isinstance(value, list) else str(value))
    console.print(table)


# ------------------------------------------------------------------------------------------------ calibrate


@app.command("calibrate")
def calibrate(
    votes: Path = typer.Argument(..., help="The votes JSONL of a run on a validation split."),
    gt: Path = typer.Argument(..., help="Ground truth: Track 1 train-format (scores) or labelled test file."),
    out: Path = typer.Option(..., "--out", "-o", help="calib.json to write."),
    holdout: float = typer.Option(0.0, "--holdout", min=0.0, max=0.9,
                                  help="Fraction of items kept out of the fit to report held-out accuracy."),
    seed: int = typer.Option(0, "--seed", help="Shuffle seed of the holdout split."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Fit per-attribute level thresholds and the overall-vs-sum linear relation on validation votes."""
    from portraitcraft.agents.assessor_calibration import fit_calibration, join_rows
    from portraitcraft.data import read_records

    rows, problems = join_rows(read_records(votes), read_records(gt))
    for line in problems[:20]:
        err_console.print(f"[yellow]skipped:[/yellow] {escape(str(line))}", highlight=False, soft_wrap=True)
    cal = fit_calibration(rows, holdout=holdout, seed=seed)
    cal.report["n_skipped"] = len(problems)
    cal.save(out)
    if as_json:
        print_json(cal.to_json())
        return
    rep = cal.report
    table = Table("attribute", "t1", "t2", "fit accuracy", title=f"calibration ({rep['n_fit']} items) -> {out}")
    for attr, info in rep["per_attribute"].items():
        table.add_row(attr, f"{info['thresholds'][0]:.2f}", f"{info['thresholds'][1]:.2f}",
                      f"{info['fit_accuracy']:.4f}")
    console.print(table)
    a, b = cal.linear
    console.print(f"linear: overall = {a:.4f} * sum + {b:.4f}  (R^2 {cal.r2 if cal.r2 is None else f'{cal.r2:.4f}'})")
    console.print(f"level accuracy on the fit items: default 5/7 {rep['fit_accuracy_default']:.4f} -> "
                  f"calibrated {rep['fit_accuracy_calibrated']:.4f}")
    if "holdout_accuracy_default" in rep:
        console.print(f"held-out ({rep['n_holdout']} items): default {rep['holdout_accuracy_default']:.4f} -> "
                      f"calibrated {rep['holdout_accuracy_calibrated']:.4f}")


# ------------------------------------------------------------------------------------------------ export-sft


@app.command("export-sft")
def export_sft(
    train: Path = typer.Argument(..., help="track_1_train.json (scores, reasons, total_score)."),
    images: Path = typer.Option(..., "--images", help="Folder of the train images (root, then images_00..10)."),
    fmt: str = typer.Option(..., "--format", help="openai | sharegpt (LLaMA-Factory) | swift (ms-swift)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write the records into."),
    config: Path | None = ConfigOption,
    sets: list[str] | None = SetOption,
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Write the Track 1 training set as chat SFT records with exactly the assessor's prompts and schema."""
    from portraitcraft.agents.assessor_sft import SFT_FORMATS, dataset_info, sft_record
    from portraitcraft.atomic import atomic_write_json
    from portraitcraft.data import load

    if fmt not in SFT_FORMATS:
        raise InputError(f"--format {fmt!r}: expected one of {', '.join(SFT_FORMATS)}")
    cfg = config_from_cli(config, sets)
    parsed = load(train, "track1_train", strict=False)
    problems = [str(p) for p in parsed.problems]
    records = []
    for item in parsed.items:
        image = _image_of(images, item.image_path)
        if image is None:
            problems.append(f"{item.image_path}: image not found under {images}")
            continue
        records.append(sft_record(item, str(Path(image).resolve()), cfg.assessor, fmt))  # type: ignore[arg-type]
    for line in problems[:20]:
        err_console.print(f"[yellow]skipped:[/yellow] {escape(str(line))}", highlight=False, soft_wrap=True)
    if not records:
        raise InputError(f"{train}: no item could be exported ({len(problems)} problem(s))")
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "sharegpt":
        path = atomic_write_json(out / "train.json", records)
        atomic_write_json(out / "dataset_info.json", dataset_info(path.name))
    else:
        path = out / "train.jsonl"
        atomic_write_jsonl(path, records)
    summary = {"path": str(path), "format": fmt, "n_records": len(records), "n_skipped": len(problems),
               "output": cfg.assessor.output, "template": cfg.assessor.templates[0]}
    if as_json:
        print_json(summary)
    else:
        console.print(f"wrote {len(records)} {fmt} record(s) to {path} ({len(problems)} skipped)", markup=False,
                      highlight=False)


# ------------------------------------------------------------------------------------------------ qa


async def _grade(rows: list[dict[str, Any]], cfg: PortraitcraftConfig) -> None:
    """Grade the open-ended answers with the judge endpoint (a failed grading counts as wrong, with the error)."""
    from portraitcraft.agents.assessor_qa import grade_open
    from portraitcraft.tools.vlm import VLMClient, VLMError

    pending = [r for r in rows if r["format"] == "open" and r["predicted"] is not None]
    if not pending:
        return
    async with VLMClient(cfg.judge, cache_dir=cache_root(cfg.run.cache_dir) / "vlm") as judge:
        async def one(row: dict[str, Any]) -> None:
            try:
                row["correct"] = await grade_open(judge, row["question"], row["reference"], row["predicted"])
            except VLMError as exc:
                row["correct"], row["error"] = False, f"grading failed: {exc}"

        await asyncio.gather(*(one(r) for r in pending))


@app.command("qa")
def qa(
    questions: Path = typer.Argument(..., help="JSONL of questions (single, multiple, truefalse, open)."),
    images: Path = typer.Option(..., "--images", help="Folder of the images (root, then images_00..10)."),
    config: Path | None = ConfigOption,
    sets: list[str] | None = SetOption,
    out: Path | None = typer.Option(None, "--out", "-o", help="Per-question results JSONL."),
    run_dir: Path | None = typer.Option(None, "--run-dir", help="Checkpoint folder [default: <questions>_run/]."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars on stderr."),
    as_json: bool = typer.Option(False, "--json", help="Print the accuracy table as JSON."),
) -> None:
    """Answer Q-Bench-Portrait-style questions with the same views and votes; accuracy per format."""
    from portraitcraft.agents.assessor_qa import accuracy_by_format, exact_match, parse_questions
    from portraitcraft.data import read_records

    cfg = config_from_cli(config, sets)
    parsed, problems = parse_questions(read_records(questions))
    for problem in problems:
        err_console.print(f"[red]{escape(str(problem))}[/red]", highlight=False, soft_wrap=True)
    if not parsed:
        raise InputError(f"{questions}: no valid question")
    items: list[UnderstandItem] = [
        {"id": q.id, "image_path": q.image_path, "image": _image_of(images, q.image_path), "task": "qa",
         "question": q.question, "options": dict(q.options), "format": q.format}
        for q in parsed
    ]
    from portraitcraft.graphs.understand_run import build_understand

    run_dir = run_dir or questions.parent / f"{questions.stem}_run"
    context, client, run_fp = build_understand(cfg, None)
    outcomes = asyncio.run(_run_graph(items, context, client, run_dir=run_dir, run_fingerprint=run_fp,
                                      concurrency=cfg.run.concurrency, progress=progress))
    rows = []
    for q, o in zip(parsed, outcomes, strict=True):
        vote = o.state.get("vote") or {}
        predicted = vote.get("answer") if o.status == "finished" else None
        rows.append({"id": q.id, "image_path": q.image_path, "format": q.format, "question": q.question,
                     "reference": q.answer, "predicted": predicted, "votes": vote.get("votes"),
                     "correct": q.format != "open" and exact_match(q.format, predicted, q.answer),
                     "status": o.status, "error": o.state.get("error"), "views": o.state.get("results") or []})
    asyncio.run(_grade(rows, cfg))
    _print_failures(outcomes)
    table_data = accuracy_by_format(rows)
    if out is not None:
        atomic_write_jsonl(out, rows)
    if as_json:
        print_json({"accuracy": table_data, "n_problems": len(problems), "results": str(out) if out else None})
        return
    table = Table("format", "questions", "correct", "accuracy", title=f"qa: {questions.name}")
    for fmt, row in table_data.items():
        table.add_row(fmt, str(row["n"]), str(row["correct"]), f"{row['accuracy']:.4f}")
    console.print(table)
