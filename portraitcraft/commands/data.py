"""`portraitcraft data ...`: validate and inspect PortraitCraft files."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from portraitcraft.commands.common import console, print_json
from portraitcraft.data import validate_file

app = typer.Typer(no_args_is_help=True)


@app.command("validate")
def validate(
    file: Path = typer.Argument(..., help="A PortraitCraft JSON array, JSONL, or a text file of descriptions."),
    images: Path | None = typer.Option(None, "--images", help="Folder of images (root, then images_00..10)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Check a data file: kind, counts, score ranges, level balance, every bad item. Exit 0 valid, 2 not."""
    report = validate_file(file, images)
    if as_json:
        print_json(report.to_dict())
    else:
        table = Table(title=f"{file}", show_header=False)
        table.add_row("kind", report.kind)
        table.add_row("items", f"{report.n_items} ({report.n_valid} valid)")
        if report.total_score_range:
            table.add_row("total_score range", "{:g} - {:g}".format(*report.total_score_range))
        if report.attribute_score_range:
            table.add_row("attribute score range", "{:g} - {:g}".format(*report.attribute_score_range))
        if report.level_balance:
            table.add_row("level balance", ", ".join(f"{k} {v}" for k, v in report.level_balance.items()))
        if report.n_placeholders:
            table.add_row("template items (placeholders)", str(report.n_placeholders))
        if images is not None:
            table.add_row("images", f"{report.images_checked} checked, {report.images_missing} missing, "
                          f"{report.images_bad} unreadable")
        console.print(table)
        for problem in report.problems:
            console.print(f"[red]{problem}[/red]", highlight=False, soft_wrap=True)
        console.print("[green]valid[/green]" if report.ok else f"[red]{len(report.problems)} problem(s)[/red]")
    raise typer.Exit(0 if report.ok else 2)
