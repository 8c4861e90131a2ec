"""`portraitcraft eval ...`: Track 1 and Track 2 scoring, judge calibration, region fidelity.

Heavy or network modules (the VLM client, the judge) are imported inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from portraitcraft.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_NOTHING_DONE,
    EXIT_SOME_FAILED,
    ConfigOption,
    SetOption,
    config_from_cli,
    console,
    err_console,
    print_json,
)
from portraitcraft.errors import DataError, InputError

app = typer.Typer(no_args_is_help=True)


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _print_notes(title: str, lines: list[str], limit: int = 20) -> None:
    for line in lines[:limit]:
        console.print(f"[yellow]{title}:[/yellow] {escape(str(line))}", highlight=False, soft_wrap=True)
    if len(lines) > limit:
        console.print(f"[yellow]{title}:[/yellow] ... and {len(lines) - limit} more (see --json)")


@app.command("track1")
def track1(
    pred: Path = typer.Argument(..., help="Predictions: JSON array, JSONL or the submission zip."),
    gt: Path = typer.Argument(..., help="Ground truth: the labelled test file, or a train-format file (no QA)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    per_attribute: bool = typer.Option(False, "--per-attribute", help="Add per-attribute accuracy and confusion."),
    allow_invalid: bool = typer.Option(False, "--allow-invalid", help="Score unusable or missing predictions as "
                                       "the submission writer fills them (levels B, answer A, median total) "
                                       "instead of refusing the file."),
) -> None:
    """Score Track 1 predictions: SRCC, PLCC, level accuracy, QA accuracy and their mean (composite).

    A file with any unusable or missing prediction is refused (exit 2, every item listed) unless
    --allow-invalid fills them; an unusable prediction never raises the score.
    """
    from portraitcraft.eval.track1 import score_track1

    report = score_track1(pred, gt, per_attribute=per_attribute, allow_invalid=allow_invalid)
    if as_json:
        print_json(report.to_dict())
        return
    table = Table(title=f"Track 1: {pred.name} vs {gt.name}", show_header=False)
    for key in ("srcc", "plcc", "level_acc", "qa_acc", "composite"):
        table.add_row(key, _fmt(getattr(report, key)))
    table.add_row("items", f"{report.n} ground truth, {report.n_matched} predicted, {report.n_filled} filled "
                  f"({len(report.missing)} missing), {len(report.extra)} extra")
    console.print(table)
    if report.per_attribute:
        att = Table("attribute", "accuracy", "confusion (rows truth A/B/C, cols pred)")
        for name, s in report.per_attribute.items():
            att.add_row(name, f"{s.accuracy:.4f}", " | ".join(" ".join(map(str, r)) for r in s.confusion))
        console.print(att)
    _print_notes("warning", report.warnings)
    _print_notes("ground truth", report.ground_truth_problems)
    _print_notes("prediction", report.prediction_problems)


EXIT_NOTHING_SCORED = EXIT_NOTHING_DONE
"""`eval track2`: no image could be scored (every item failed, or there were none)."""


@app.command("track2")
def track2(
    items: Path = typer.Argument(..., help="Track 2 items (JSON array or JSONL with the descriptions)."),
    images: Path = typer.Option(..., "--images", help="Folder of the generated images (root, then images_00..10)."),
    config: Path | None = ConfigOption,
    sets: list[str] | None = SetOption,
    human: Path | None = typer.Option(None, "--human", help="Human ratings CSV: image_path,score (raters averaged)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    out: Path | None = typer.Option(None, "--out", help="Write per-image scores and reasons to this CSV."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar on stderr."),
    strict: bool = typer.Option(False, "--strict", help=f"Exit {EXIT_SOME_FAILED} when any image failed."),
) -> None:
    """Judge generated images: Content, Composition, AutoScore (and Human, FinalScore with --human).

    Exit codes: 0 scores computed; 3 nothing scored (every image failed); 4 some images failed and --strict
    was given; 130 interrupted (Ctrl-C; finished images are still written to --out).
    """
    import asyncio

    from portraitcraft.atomic import check_output_file
    from portraitcraft.data import detect_kind, parse_items, read_records
    from portraitcraft.eval.track2 import (
        ImageScore,
        judge_with_config,
        read_human_scores,
        summarise,
        write_scores_csv,
    )

    if not images.is_dir():
        raise InputError(f"--images {images}: not a folder")
    if out is not None:
        check_output_file(out)  # before any judge call
    cfg = config_from_cli(config, sets)
    records = read_records(items)
    try:
        file_kind = detect_kind(records)
    except DataError as exc:  # file-kind detection does not know the file's name
        raise DataError(f"{items}: {exc}") from None
    if file_kind != "track2":
        raise DataError(f"{items}: expected Track 2 items (image_path, content_description, "
                        f"composition_analysis), found a {file_kind} file")
    parsed = parse_items(records, "track2")
    human_scores, human_problems = read_human_scores(human) if human else (None, [])
    finished: dict[int, ImageScore] = {}

    def keep_finished(why: str) -> None:
        kept = [finished[i] for i in sorted(finished)]
        where = ""
        if out and kept:
            write_scores_csv(kept, out)
            where = f"; their scores are in {out}"
        err_console.print(f"{why}: {len(kept)} of {len(parsed.items)} images finished{where}", markup=False,
                          highlight=False)

    try:
        scores = asyncio.run(judge_with_config(cfg, parsed.items, images, progress=progress,
                                                 on_result=finished.__setitem__))
    except KeyboardInterrupt:
        keep_finished("interrupted")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except Exception:  # a bug stopped the run: keep what finished (a re-run is served from the cache)
        keep_finished("stopped by an unexpected error")
        raise
    for problem in parsed.problems:
        scores.append(ImageScore(problem.image_path or f"item {problem.index}", error=str(problem)))
    report = summarise(scores, human_scores, human_problems)
    if out:
        write_scores_csv(scores, out)
    if as_json:
        print_json(report.to_dict())
    else:
        table = Table(title=f"Track 2: {items.name}", show_header=False)
        for key in ("content", "composition", "auto", "human", "final"):
            if key in ("human", "final") and human is None:
                continue
            table.add_row(key, _fmt(getattr(report, key)))
        table.add_row("images", f"{report.n_scored} scored, {report.n_failed} failed")
        table.add_row("judge mode", report.mode or "n/a")
        console.print(table)
        _print_notes("failed", [f"{f['image_path']}: {f['error']}" for f in report.failures])
        _print_notes("human scores", report.human_problems)
    if report.n_scored == 0:
        err_console.print(f"nothing scored: all {report.n_failed} image(s) failed", highlight=False)
        raise typer.Exit(EXIT_NOTHING_SCORED)
    if strict and report.n_failed:
        raise typer.Exit(EXIT_SOME_FAILED)


@app.command("calibrate-judge")
def calibrate_judge(
    judge_csv: Path = typer.Argument(..., help="The judge's per-image scores (eval track2 --out)."),
    human_csv: Path = typer.Argument(..., help="Human ratings: image_path,score[,content,composition,auto]."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Agreement between judge and human scores: Spearman, Kendall, Pearson, MAE (overall and per score)."""
    from portraitcraft.eval.calibration import calibrate

    report = calibrate(judge_csv, human_csv)
    if as_json:
        print_json(report.to_dict())
        return
    table = Table("score", "n", "spearman", "kendall", "pearson", "mae", title="judge vs human")
    rows = ([("overall", report.overall)] if report.overall else []) + list(report.per_score.items())
    for name, a in rows:
        label = name if a.judge_column == a.human_column else f"{name} ({a.judge_column} vs {a.human_column})"
        table.add_row(label, str(a.n), _fmt(a.spearman), _fmt(a.kendall), _fmt(a.pearson), _fmt(a.mae))
    console.print(table)
    console.print(f"{report.n_judge} judged, {report.n_human} rated; {len(report.only_in_judge)} only judged, "
                  f"{len(report.only_in_human)} only rated")
    _print_notes("warning", [w for _, a in rows for w in a.warnings])
    _print_notes("problem", report.problems)


@app.command("fidelity")
def fidelity(
    a: Path = typer.Argument(..., help="The image before the edit."),
    b: Path = typer.Argument(..., help="The image after the edit."),
    mask: Path = typer.Option(..., "--mask", help="Person mask (white/nonzero = person), same size as A."),
    resize: bool = typer.Option(False, "--resize", help="Resize B to A's size when they differ."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Region-aware drift: background PSNR, global SSIM, person CIEDE2000 and person LPIPS (when available)."""
    from portraitcraft.tools.fidelity import edit_drift

    report = edit_drift(a, b, mask, resize=resize).to_dict()
    if as_json:
        print_json(report)
        return
    table = Table(title=f"fidelity: {a.name} -> {b.name}", show_header=False)
    for key in ("psnr_background", "ssim_global", "delta_e_person", "lpips_person", "lpips_status",
                "person_fraction"):
        table.add_row(key, _fmt(report[key]))
    console.print(table)
    _print_notes("note", report["notes"])
