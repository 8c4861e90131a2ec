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
                            help="pickapic (parquet) | jsonl | diffsynth (metadata.csv) | kohya (w/ l/) | "
                                 "flowfactory (train.jsonl of prompts)."),
    out: Path = typer.Option(..., "--out", "-o", help="The export folder (created)."),
    min_difference: float = typer.Option(0.01, "--min-difference", min=0.0, max=1.0,
                                         help="Drop pairs whose images differ less than this (mean abs, 0-1)."),
    content_margin: float | None = typer.Option(5.0, "--content-margin", min=0.0,
                                                help="Drop pairs whose chosen content score is below the rejected "
                                                     "one's by more than this (0-100); judged pairs only."),
    pose: bool = typer.Option(True, "--pose/--no-pose", help="Measure the chosen image's pose (vision models)."),
    as_json: bool = typer.Option(False, "--json", help="Print the export report as JSON."),
) -> None:
    """Export preference pairs; bad rows and missing images are listed and skipped. Exit 0, or 1 when no pair
    was written."""
    from portraitcraft.tools.pairs_export import export_pairs, vision_pose

    report = export_pairs(runs, out, fmt=fmt, min_difference=min_difference, content_margin=content_margin,
                          pose_fn=vision_pose if pose else None)
    if as_json:
        print_json(report.to_json())
    else:
        table = Table(title=f"pairs -> {out} ({fmt})", show_header=False)
        for key, value in report.to_json().items():
            if key not in ("problems", "files"):
                table.add_row(key.replace("_", " "), str(value))
        console.print(table)
        for problem in report.skipped:
            console.print(f"[yellow]skipped[/yellow] {problem}", highlight=False, soft_wrap=True)
    raise typer.Exit(0 if report.written else 1)
