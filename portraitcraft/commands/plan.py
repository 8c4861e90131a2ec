"""`portraitcraft plan ...`: fit a canvas policy to train images, explain the canvas for a description."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from portraitcraft.commands.common import ConfigOption, SetOption, config_from_cli, console, print_json
from portraitcraft.errors import InputError

app = typer.Typer(no_args_is_help=True)

MAX_LISTED = 20


@app.command("fit")
def fit(
    train: Path = typer.Argument(..., help="track_2_train.json (a JSON array or JSONL of Track 2 items)."),
    images: Path = typer.Option(..., "--images", help="Folder of the train images (root, then images_00..10)."),
    out: Path = typer.Option(..., "--out", help="Where to write the fitted policy JSON."),
    config: Path | None = ConfigOption,
    sets: list[str] | None = SetOption,
    holdout: float = typer.Option(0.2, min=0.0, max=0.9, help="Fraction of items held out for the report."),
    seed: int = typer.Option(0, help="Split and search seed."),
    maxiter: int = typer.Option(400, min=1, help="Differential-evolution generations."),
    popsize: int = typer.Option(6, min=2, help="Population size multiplier (x number of parameters)."),
    min_count: int = typer.Option(3, min=1, help="Fit a phrase's weight only if this many train texts have it."),
    as_json: bool = typer.Option(False, "--json", help="Print the fit report as JSON."),
) -> None:
    """Fit phrase weights and cut points to the train images' aspect ratios; compare with rule and square."""
    from agents.planner.canvas_policy import rule_policy
    from agents.planner.plan_fit import FitSettings, fit_policy, read_train_set, report_of

    cfg = config_from_cli(config, sets)
    if not images.is_dir():
        raise InputError(f"--images {images}: not a folder")
    if out.is_dir():
        raise InputError(f"--out {out}: is a folder; give the policy file's path, e.g. {out / 'policy.json'}")
    train_set = read_train_set(train, images)
    settings = FitSettings(holdout=holdout, seed=seed, maxiter=maxiter, popsize=popsize, min_count=min_count)
    policy = fit_policy(train_set, rule_policy(cfg.planner.aspect_ratios), settings)
    try:
        policy.save(out)
    except OSError as exc:
        raise InputError(f"--out {out}: the policy cannot be written ({exc.strerror or exc})") from None
    report = report_of(policy)
    if as_json:
        print_json({"policy": str(out), **report.model_dump(mode="json")})
        return
    table = Table(title=f"held-out canvas accuracy ({report.n_holdout} of {report.n_used} items)")
    for column in ("policy", "class accuracy", "orientation accuracy", "mean |log ratio| error"):
        table.add_column(column)
    for name, m in report.holdout.items():
        table.add_row(name, f"{m.accuracy:.3f}", f"{m.orientation_accuracy:.3f}", f"{m.mean_log_error:.3f}")
    console.print(table)
    console.print(f"{report.n_records} records: {report.n_used} used, {len(report.missing)} image missing, "
                  f"{len(report.unreadable)} image unreadable, {len(report.invalid)} invalid; "
                  f"{report.fitted_phrases} phrase weights fitted in {report.fit_seconds:.1f} s "
                  f"({report.generations} generations)", highlight=False)
    skipped = [*report.missing, *report.unreadable, *report.invalid]
    for item in skipped[:MAX_LISTED]:
        console.print(f"[yellow]skipped item {item.index} ({item.image_path}): {item.problem}[/yellow]",
                      highlight=False, soft_wrap=True)
    if len(skipped) > MAX_LISTED:
        console.print(f"... and {len(skipped) - MAX_LISTED} more (--json lists them all)")
    console.print(f"policy written to {out}", highlight=False)


@app.command("show")
def show(
    description: str = typer.Argument(..., help="A description (content and composition text)."),
    policy: Path | None = typer.Option(None, "--policy", help="A fitted policy JSON (default: planner.policy "
                                       "from the config, else the rule policy)."),
    config: Path | None = ConfigOption,
    sets: list[str] | None = SetOption,
    as_json: bool = typer.Option(False, "--json", help="Print width, height, reasons and the evidence as JSON."),
) -> None:
    """Explain the canvas a description gets: the words that counted, their weights, the decision."""
    from agents.planner import policy_from_config

    planner = config_from_cli(config, sets).planner
    if policy is not None:
        planner = planner.model_copy(update={"policy": str(policy)})
    canvas = policy_from_config(planner).choose(description, long_side=planner.long_side, multiple=planner.multiple)
    if as_json:
        print_json({**canvas.model_dump(mode="json"), "orientation": canvas.orientation})
        return
    if canvas.evidence:
        table = Table(title="canvas evidence")
        for column in ("phrase", "group", "effect", "weight"):
            table.add_column(column)
        for e in canvas.evidence:
            table.add_row(e.phrase, e.group, e.effect, f"{e.weight:+.2f}")
        console.print(table)
    for reason in canvas.reasons[len(canvas.evidence):]:
        console.print(reason, highlight=False, soft_wrap=True)
