"""`portraitcraft data ...`: validate and inspect PortraitCraft files."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from portraitcraft.cli.common import console, print_json
from portraitcraft.data import validate_file
from portraitcraft.errors import InputError

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
        table = Table(title=escape(str(file)), show_header=False)
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
            console.print(f"[red]{escape(str(problem))}[/red]", highlight=False, soft_wrap=True)
        console.print("[green]valid[/green]" if report.ok else f"[red]{len(report.problems)} problem(s)[/red]")
    raise typer.Exit(0 if report.ok else 2)


submit_app = typer.Typer(no_args_is_help=True, help="Write the official submission files.")
app.add_typer(submit_app, name="submit")


@submit_app.command("track1")
def submit_track1(
    template: Path = typer.Argument(..., help="The official track_1_test.json (order, questions, options)."),
    predictions: Path = typer.Argument(..., help="Predictions: JSON array / JSONL / zip, submission-shaped "
                                       "(criteria: {attr: {level}}) or with levels: {attr: A|B|C}."),
    out: Path = typer.Option(Path("track_1_submission.zip"), "--out", "-o", help="The zip to write."),
    allow_missing: bool = typer.Option(False, "--allow-missing", help="Fill what is unusable: a bad field of a "
                                       "prediction (level -> B, total -> the median, answer -> A), or a whole "
                                       "missing item; the filled fields are reported."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Write the Track 1 zip: root holds only track_1_test.json, template order, codes A/B/C, int totals."""
    from portraitcraft.atomic import check_output_file
    from portraitcraft.data import load_track1_test
    from portraitcraft.predictions import read_track1_predictions
    from portraitcraft.submission import write_track1_submission

    check_output_file(out)
    items = load_track1_test(template)
    read = read_track1_predictions(predictions)
    preds, problems = list(read.by_key.values()), read.problems
    for problem in problems:
        console.print(f"[red]{escape(str(problem))}[/red]", highlight=False, soft_wrap=True)
    if problems and not allow_missing:
        raise InputError(f"{predictions}: {len(problems)} bad prediction(s) (listed above); fix them or pass "
                         "--allow-missing to use the fallback for those items")
    report = write_track1_submission(items, preds, out, allow_missing=allow_missing, partial=read.partial)
    summary = {"path": str(report.path), "n_items": report.n_items, "n_fallback": report.n_fallback,
               "fallback_ids": report.fallback_ids, "n_extra_predictions": report.n_extra,
               "n_bad_predictions": len(problems), "filled_fields": report.filled_fields}
    if as_json:
        print_json(summary)
        return
    console.print(f"wrote {report.path}: {report.n_items} items", markup=False, highlight=False)
    if report.n_fallback:
        console.print(f"[yellow]{report.n_fallback} item(s) filled (an unusable level -> B, total -> the median, "
                      "answer -> A; an item with no prediction: all of them):[/]")
        for path, fields in list(report.filled_fields.items())[:20]:
            console.print(f"  {path}: {', '.join(fields)}", markup=False, highlight=False)
    if report.n_extra:
        console.print(f"[yellow]{report.n_extra} prediction(s) match no template item and were ignored[/]")


@submit_app.command("track2")
def submit_track2(
    items: Path = typer.Argument(..., help="The official track_2_test.json."),
    images: Path = typer.Option(..., "--images", help="Folder holding one image per item at any depth, found by "
                                "file name (else by stem with any image extension: re-encoded to the format its "
                                "image_path names); never inside --out."),
    out: Path = typer.Option(Path("track2_submission"), "--out", "-o", help="Folder for submission/ + .zip."),
    allow_missing: bool = typer.Option(False, "--allow-missing", help="Skip items without an image."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Write the Track 2 folder (one image per item, named by its image_path) and its flat zip."""
    from portraitcraft.atomic import check_output_folder
    from portraitcraft.data import load_track2
    from portraitcraft.submission import find_submission_images, write_track2_submission

    if not images.is_dir():
        raise InputError(f"--images {images}: no such folder")
    check_output_folder(out)
    specs = load_track2(items)
    # never our own output: with --out equal to --images, a rerun must not find last run's submission/ copies
    matches = find_submission_images(images, specs, exclude=[out, out / "submission"])
    ambiguous = [f"{s.image_path}: {len(matches.ambiguous[s.id])} candidates "
                 f"({', '.join(str(p) for p in matches.ambiguous[s.id][:4])})"
                 for s in specs if s.id in matches.ambiguous]
    if ambiguous and not allow_missing:
        raise InputError(f"{len(ambiguous)} item(s) match several image files under {images}; keep one, or "
                         "pass --allow-missing to leave them out:\n" + "\n".join(ambiguous))
    sub = write_track2_submission(specs, matches.found, out, allow_missing=allow_missing)
    summary = {"folder": str(sub.folder), "zip": str(sub.zip_path), "n_images": sub.n_images, "missing": sub.missing,
               "ambiguous": ambiguous, "unreadable": sub.unreadable, "refused": matches.refused}
    if as_json:
        print_json(summary)
    else:
        console.print(f"wrote {sub.n_images} image(s) to {sub.folder} and {sub.zip_path}", markup=False,
                      highlight=False)
        if sub.missing:
            console.print(f"[yellow]{len(sub.missing)} item(s) had no image: {escape(', '.join(sub.missing[:10]))}[/]")
        for line in ambiguous + sub.unreadable + matches.refused:
            console.print(f"[yellow]left out: {escape(line)}[/]", highlight=False, soft_wrap=True)
