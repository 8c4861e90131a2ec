"""`portraitcraft compare RUN_A RUN_B [RUN_C ...]`: which strategy, config or model wins, paired per item."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from portraitcraft.cli.common import ConfigOption, SetOption, config_from_cli, err_console, print_json
from portraitcraft.errors import InputError

EXIT_BAD_INPUT = 2


def _scores(values: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for text in values or []:
        run, sep, file = text.partition("=")
        if not sep or not run.strip() or not file.strip():
            raise InputError(f"--scores {text!r}: expected RUN=FILE (a run name or folder, an eval track2 --out CSV)")
        out[run.strip()] = file.strip()
    return out


def compare(
    runs: list[Path] = typer.Argument(..., metavar="RUN",
                                      help="generate run folders; the first is the baseline."),
    names: str | None = typer.Option(None, "--names", help="Comma-separated labels, one per run "
                                     "(default: the folder names)."),
    out: Path | None = typer.Option(None, "--out", help="Write compare.html (and compare.json) into this folder."),
    as_json: bool = typer.Option(False, "--json", help="Print the comparison as JSON on stdout."),
    boot: int = typer.Option(10_000, "--boot", min=1, max=1_000_000, help="Bootstrap resamples for the 95% "
                             "intervals."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap (same seed, same intervals)."),
    scores: list[str] | None = typer.Option(None, "--scores", metavar="RUN=FILE", help="Judge scores of a run: an "
                                            "`eval track2 --out` CSV (repeatable; RUN is a name or folder)."),
    measure: bool = typer.Option(True, "--measure/--no-measure", help="Measure the met-target share afresh on "
                                 "every final image with the vision models (cached)."),
    config: Path | None = ConfigOption,
    sets: list[str] | None = SetOption,
) -> None:
    """Compare generate runs item by item against the first: pass rate, met targets, judge, cost.

    Exit codes: 0 compared; 2 bad input: a folder that is not a run or an unreadable --scores file (reported,
    and the readable runs are still compared and printed), bad --names / --scores syntax.
    """
    from portraitcraft.eval.compare import compare as run_compare
    from portraitcraft.eval.compare_targets import TargetRuler, vision_available
    from portraitcraft.paths import cache_root

    if len(runs) < 2:
        raise InputError(f"compare needs at least two run folders, got {len(runs)}")
    labels = [n.strip() for n in names.split(",")] if names is not None else None
    cfg = config_from_cli(config, sets)
    ruler = None
    if measure:
        missing = vision_available()
        if missing is None:
            ruler = TargetRuler(cfg.vision, cache_dir=cache_root(cfg.run.cache_dir) / "compare")
        else:
            err_console.print(f"[yellow]note:[/yellow] met-target share not measured: {missing}", highlight=False)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(TextColumn("measuring targets"), BarColumn(), MofNCompleteColumn(), console=err_console,
                  transient=True, disable=ruler is None) as bar:
        task = bar.add_task("measure", total=None)
        result = run_compare(runs, names=labels, scores=_scores(scores), boot=boot, seed=seed, ruler=ruler,
                             progress=lambda done, total: bar.update(task, completed=done, total=total))
    data = result.to_json()
    if out is not None and result.runs:
        from portraitcraft.atomic import atomic_write_json
        from portraitcraft.eval.compare_page import write_page

        page = write_page(result, out)
        atomic_write_json(out / "compare.json", data)
        if not as_json:
            err_console.print(f"page: {page}")
    if as_json:
        print_json(data)
    else:
        for table in tables(data):
            err_console.print(table)
    for problem in result.problems:
        err_console.print(f"[red]error:[/red] {problem['error']}", highlight=False, soft_wrap=True)
    if result.problems:
        raise typer.Exit(EXIT_BAD_INPUT)


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def tables(data: dict[str, Any]) -> list[Table]:
    """The summary, the comparisons and the unpaired items as rich tables (the non-JSON output)."""
    summary = Table("run", "items (done/failed)", "pass rate [95% CI]", "mean rounds", "met targets", "judge",
                    "per final image", "per passed image", title="runs")
    for s in data["runs"]:
        judge = s["judge"]
        summary.add_row(
            s["name"], f"{s['n_items']} ({s['n_done']}/{s['n_failed']})",
            f"{_fmt(s['pass_rate'])} {_fmt(s['pass_rate_ci95'])}", _fmt(s["mean_rounds"]),
            _fmt(s["met_target_share"]),
            _fmt(judge.get("auto", judge.get("score"))) if judge else "-",
            "\n".join(f"{k} {v:g}" for k, v in s["cost_per_final_image"].items() if v) or "0",
            "\n".join(f"{k} {v:g}" for k, v in s["cost_per_passed_image"].items() if v) or
            ("no passed image" if not s["n_passed"] else "0"),
        )
    pairs = Table("A", "B", "metric", "n", "delta", "95% CI", "p", "W/T/L", title="B against the baseline A")
    for c in data["comparisons"]:
        wtl = "" if c["wins"] is None else f"{c['wins']}/{c['ties']}/{c['losses']}"
        pairs.add_row(c["a"], c["b"], c["metric"], str(c["n"]), _fmt(c["delta"]), _fmt(c["ci95"]),
                      "" if c["p_value"] is None else _fmt(c["p_value"]), wtl)
    out = [summary, pairs]
    if data["unpaired"]:
        unpaired = Table("item", "missing in", "failed in", title="items not finished in every run")
        for u in data["unpaired"]:
            unpaired.add_row(u["item"], ", ".join(u["missing_in"]), ", ".join(u["failed_in"]))
        out.append(unpaired)
    return out
