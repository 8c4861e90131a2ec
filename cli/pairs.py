"""`portraitcraft pairs export`: preference pairs from generate / mine / group runs, in trainers' formats."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from portraitcraft.cli.common import console, print_json

app = typer.Typer(no_args_is_help=True)


@app.command("export")
def export(
    runs: list[Path] = typer.Argument(..., help="Run folders (generate, mine or group), each with a pairs.jsonl."),
    fmt: str = typer.Option("pickapic", "--format", "-f",
                            help="pickapic (parquet) | jsonl | diffsynth (metadata.csv) | kohya (w/ l/, one-line "
                                 "captions) | flowfactory (train.jsonl of V2 preference records + images/, for "
                                 "offline-dpo) | flowfactory-prompts (train.jsonl of prompts, for online RL)."),
    out: Path = typer.Option(..., "--out", "-o", help="The export folder: new or empty (created), or an earlier "
                             "export with --replace."),
    replace: bool = typer.Option(False, "--replace", help="Replace an earlier export in --out whole (only a "
                                 "folder `pairs export` wrote; a non-empty --out is refused without it)."),
    hard_labels: bool = typer.Option(False, "--hard-labels", help="Drop pairs whose label is not 0 or 1 (group "
                                     "soft labels), as the original DiffusionDPO code does; use it for diffusers' "
                                     "train_diffusion_dpo.py, which reads any label_0 != 0 as a win."),
    min_difference: float = typer.Option(0.01, "--min-difference", min=0.0, max=1.0,
                                         help="Drop pairs whose images differ less than this (mean abs, 0-1)."),
    content_margin: float | None = typer.Option(5.0, "--content-margin", min=0.0,
                                                help="Drop pairs whose chosen content score is below the rejected "
                                                     "one's by more than this (0-100); judged pairs only."),
    pose: bool = typer.Option(True, "--pose/--no-pose", help="Measure the chosen image's pose (vision models)."),
    as_json: bool = typer.Option(False, "--json", help="Print the export report as JSON."),
) -> None:
    """Export preference pairs; bad rows and missing images are listed and skipped. Exit 0; 1 when no pair was
    written (--out left as it was); 2 for a bad --out (a file, or non-empty without --replace) or input folder."""
    from portraitcraft.tools.pairs_export import export_pairs, vision_pose

    report = export_pairs(runs, out, fmt=fmt, min_difference=min_difference, content_margin=content_margin,
                          hard_labels=hard_labels, replace=replace, pose_fn=vision_pose if pose else None)
    if as_json:
        print_json(report.to_json())
    else:
        table = Table(title=f"pairs -> {out} ({fmt})", show_header=False)
        for key, value in report.to_json().items():
            if key not in ("problems", "files", "images"):
                table.add_row(key.replace("_", " "), str(value))
        console.print(table)
        for problem in report.skipped:
            console.print(f"[yellow]skipped[/yellow] {problem}", highlight=False, soft_wrap=True)
    raise typer.Exit(0 if report.written else 1)
