"""`portraitcraft report RUN`: render a generate run's static HTML report again."""

from __future__ import annotations

from pathlib import Path

import typer

from portraitcraft.cli.common import console
from portraitcraft.errors import InputError


def report(run: Path = typer.Argument(..., help="A generate run folder (holding results.jsonl).")) -> None:
    """Write RUN/report.html from RUN/results.jsonl (static, relative image links, no network)."""
    from portraitcraft.graphs.generate_report import write_report

    if not run.is_dir():
        raise InputError(f"{run}: not a folder")
    console.print(f"report: {write_report(run)}", markup=False, highlight=False)
