"""`portraitcraft plan ...`: fit a canvas policy to train images, explain the canvas for a description."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from portraitcraft.cli.common import ConfigOption, SetOption, config_from_cli, console, print_json
from portraitcraft.errors import InputError

if TYPE_CHECKING:
    from portraitcraft.agents.planner.canvas_policy import CanvasPolicy

app = typer.Typer(no_args_is_help=True)

MAX_LISTED = 20


def _check_images_and_out(images: Path, out: Path) -> None:
    if not images.is_dir():
        raise InputError(f"--images {images}: not a folder")
    if out.is_dir():
        raise InputError(f"--out {out}: is a folder; give the policy file's path, e.g. {out / 'policy.json'}")


def _save_policy(policy: CanvasPolicy, out: Path) -> None:
    try:
        policy.save(out)
    except OSError as exc:
        raise InputError(f"--out {out}: the policy cannot be written ({exc.strerror or exc})") from None


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
    from portraitcraft.agents.planner.canvas_policy import rule_policy
    from portraitcraft.agents.planner.plan_fit import FitSettings, fit_policy, read_train_set, report_of

    cfg = config_from_cli(config, sets)
    _check_images_and_out(images, out)
    train_set = read_train_set(train, images)
    settings = FitSettings(holdout=holdout, seed=seed, maxiter=maxiter, popsize=popsize, min_count=min_count)
    policy = fit_policy(train_set, rule_policy(cfg.planner.aspect_ratios, cfg.planner.prior_orientation),
                        settings)
    _save_policy(policy, out)
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
    for name, counts in report.orientation_counts.items():
        console.print(f"held-out orientation, {name}: " + ", ".join(f"{k} {v}" for k, v in counts.items()),
                      highlight=False)
    for row in report.strong:
        console.print(f"strong {row['key']}={row['value']}: {row['n']} train items -> {row['result']}",
                      highlight=False)
    skipped = [*report.missing, *report.unreadable, *report.invalid]
    for item in skipped[:MAX_LISTED]:
        console.print(f"[yellow]skipped item {item.index} ({item.image_path}): {item.problem}[/yellow]",
                      highlight=False, soft_wrap=True)
    if len(skipped) > MAX_LISTED:
        console.print(f"... and {len(skipped) - MAX_LISTED} more (--json lists them all)")
    console.print(f"policy written to {out}", highlight=False)


@app.command("fit-convention")
def fit_convention_cmd(
    train: Path = typer.Argument(..., help="track_2_train.json (a JSON array or JSONL of Track 2 items)."),
    images: Path = typer.Option(..., "--images", help="Folder of the train images (root, then images_00..10)."),
    out: Path = typer.Option(..., "--out", help="Where to write the policy JSON with the fitted convention."),
    policy: Path | None = typer.Option(None, "--policy", help="The policy to add it to (default: planner.policy "
                                       "from the config, else the rule policy), e.g. the output of plan fit."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Stop after this many informative items."),
    config: Path | None = ConfigOption,
    sets: list[str] | None = SetOption,
    as_json: bool = typer.Option(False, "--json", help="Print the convention report as JSON."),
) -> None:
    """Measure with the vision models which reading of "her left" the train descriptions follow (strict: the
    viewer's right for a subject facing the camera; loose: the viewer's left) and store it in the policy."""
    from portraitcraft.agents.planner import policy_from_config
    from portraitcraft.agents.planner.convention_fit import fit_convention

    cfg = config_from_cli(config, sets)
    _check_images_and_out(images, out)
    planner_cfg = cfg.planner if policy is None else cfg.planner.model_copy(update={"policy": str(policy)})
    base = policy_from_config(planner_cfg)

    def analyze(path: Path) -> Any:
        from portraitcraft.tools.vision import analyze as vision_analyze

        return vision_analyze(path, cfg.vision)

    report = fit_convention(train, images, analyze=analyze, limit=limit)
    fitted = base.model_copy(update={"convention": report.model_dump(mode="json", exclude={"examples"})})
    _save_policy(fitted, out)
    if as_json:
        print_json({"policy": str(out), **report.model_dump(mode="json")})
        return
    table = Table(title=f"reading of subject-frame sides: {report.value}")
    for column in ("target", "agrees with strict", "agrees with loose", "neither"):
        table.add_column(column)
    for key, votes in report.per_key.items():
        table.add_row(key, str(votes["strict"]), str(votes["loose"]), str(votes["neither"]))
    table.add_row("all", str(report.strict), str(report.loose), str(report.neither))
    console.print(table)
    console.print(f"{report.n_records} records, {report.informative} with a side the readings disagree on; "
                  f"{report.analysed} analysed ({report.no_person} without a person), {report.missing} image "
                  f"missing, {report.unreadable} unreadable", highlight=False)
    console.print(f"policy written to {out} (convention {report.value})", highlight=False)


MAX_STDIN_CHARS = 1_000_000


def _read_description(description: str | None) -> str:
    """The description argument, or stdin for '-' (bounded); an empty one is an error that says so."""
    if description == "-":
        text = sys.stdin.read(MAX_STDIN_CHARS + 1)
        if len(text) > MAX_STDIN_CHARS:
            raise InputError(f"the description on stdin is longer than {MAX_STDIN_CHARS:,} characters")
        where = "the description on stdin"
    else:
        text, where = description or "", "the description"
    if not text.strip():
        raise InputError(f"{where} is empty: give the content and composition text (or '-' to read stdin)")
    return text


def _targets_json(targets: Any) -> dict[str, Any]:
    """The `targets` object: values in the viewer's frame (null where unsaid) and the words they came from."""
    return targets.model_dump(mode="json", exclude={"evidence"})


def _evidence_json(targets: Any) -> dict[str, Any]:
    """The `target_evidence` object: per key with evidence {value, spans, frame, confidence, enforced, source,
    note}; spans are [start, end, "content"|"composition"] offsets into the text given."""
    return {k: ev.model_dump(mode="json") for k, ev in targets.evidence.items()}


@app.command("show")
def show(
    description: str | None = typer.Argument(None, help="A description (content and composition text); '-' reads "
                                             "it from stdin."),
    file: Path | None = typer.Option(None, "--file", help="A Track 2 file (JSON array / JSONL) or a text file of "
                                     "descriptions: report the canvas orientation distribution over its items."),
    policy: Path | None = typer.Option(None, "--policy", help="A fitted policy JSON (default: planner.policy "
                                       "from the config, else the rule policy)."),
    config: Path | None = ConfigOption,
    sets: list[str] | None = SetOption,
    as_json: bool = typer.Option(False, "--json", help="Print width, height, reasons, evidence and targets as JSON."),
) -> None:
    """Explain the canvas a description gets (the words that counted, the targets, the decision), or with
    --file the orientation distribution over a file's items."""
    from portraitcraft.agents.planner import Planner
    from portraitcraft.agents.planner.prompt_builder import load_token_counter
    from portraitcraft.agents.planner.role import backend_token_budget
    from portraitcraft.schemas import Track2Spec

    if (description is None) == (file is None):
        raise InputError("give a DESCRIPTION (or '-' for stdin) or --file, not both" if file else
                         "give a DESCRIPTION (or '-' for stdin) or --file FILE")
    cfg = config_from_cli(config, sets)
    planner_cfg = cfg.planner
    if policy is not None:
        planner_cfg = planner_cfg.model_copy(update={"policy": str(policy)})
    planner = Planner(planner_cfg, max_prompt_tokens=backend_token_budget(cfg.generator),
                      counter=load_token_counter(cfg.generator.model),
                      enforce_confidence=cfg.vision.enforce_confidence)
    if file is not None:
        _show_file(planner, file, as_json)
        return
    text = _read_description(description)
    targets = planner.targets(Track2Spec(image_path="show.png", content=text, composition=""))
    canvas = planner.policy.choose(text, long_side=planner_cfg.long_side, multiple=planner_cfg.multiple,
                                   targets=targets)
    built = planner.builder.build(text, "", targets)
    prompt = {"tokens_before": built.tokens_before, "tokens": built.tokens, "budget": built.budget,
              "counter": built.counter, "condensed": built.condensed}
    if as_json:
        print_json({**canvas.model_dump(mode="json"), "orientation": canvas.orientation,
                    "targets": _targets_json(targets), "target_evidence": _evidence_json(targets),
                    "enforce_confidence": planner.enforce_confidence, "convention": planner.convention,
                    "prompt": prompt})
        return
    if canvas.evidence:
        table = Table(title="canvas evidence")
        for column in ("phrase", "group", "effect", "weight"):
            table.add_column(column)
        for e in canvas.evidence:
            table.add_row(e.phrase, e.group, e.effect, f"{e.weight:+.2f}")
        console.print(table)
    keys = [k for k in targets.model_dump(exclude={"phrases", "evidence"}) if getattr(targets, k) is not None
            or k in targets.evidence]
    if keys:
        table = Table(title=f"composition targets (viewer's frame; enforced at confidence >= "
                      f"{planner.enforce_confidence:g})")
        for column in ("target", "value", "frame", "confidence", "enforced", "from"):
            table.add_column(column, overflow="fold")
        for key in keys:
            ev = targets.evidence.get(key)
            said = targets.phrases.get(key, "")
            table.add_row(key, str(getattr(targets, key)), ev.frame if ev else "viewer",
                          f"{ev.confidence:.2f}" if ev else "-",
                          "yes" if targets.enforced(key) else "not enforced",
                          "; ".join(p for p in (said, ev.note if ev else "") if p))
        console.print(table)
    for reason in canvas.reasons[len(canvas.evidence):]:
        console.print(reason, highlight=False, soft_wrap=True)
    console.print(f"prompt: {built.tokens_before} tokens -> {built.tokens} (budget {built.budget}, {built.counter})",
                  highlight=False, soft_wrap=True)


def _show_file(planner: Any, file: Path, as_json: bool) -> None:
    """The canvas orientation and class distribution over a file's items (and what decided them)."""
    from collections import Counter

    from portraitcraft.data import load_track2

    specs = load_track2(file)
    if not specs:
        raise InputError(f"--file {file}: no items")
    cfg = planner.config
    rows = []
    for spec in specs:
        targets = planner.targets(spec)
        canvas = planner.policy.choose(spec.description, long_side=cfg.long_side, multiple=cfg.multiple,
                                       targets=targets)
        built = planner.builder.build(spec.content, spec.composition, targets)
        rows.append({"id": spec.id, "width": canvas.width, "height": canvas.height, "label": canvas.label,
                     "orientation": canvas.orientation, "decided_by": canvas.decided_by or "weak cues / prior",
                     "tokens_before": built.tokens_before, "tokens": built.tokens})
    orientation = Counter(r["orientation"] for r in rows)
    classes = Counter(r["label"] for r in rows)
    decided = Counter(r["decided_by"].split("=")[0] for r in rows)
    summary = {"file": str(file), "n": len(rows), "policy": planner.policy.method,
               "orientation": {k: orientation.get(k, 0) for k in ("portrait", "square", "landscape")},
               "classes": dict(sorted(classes.items())), "decided_by": dict(decided)}
    fit = planner.policy.fit or {}
    if fit:
        summary["fit"] = {k: fit.get(k) for k in ("n_used", "holdout", "class_counts") if k in fit}
    if planner.policy.convention:
        summary["convention"] = planner.policy.convention
    if as_json:
        print_json({**summary, "items": rows})
        return
    table = Table(title=f"canvas orientation over {len(rows)} items of {file.name} ({planner.policy.method} policy)")
    for column in ("orientation", "items", "share"):
        table.add_column(column)
    for key, n in summary["orientation"].items():
        table.add_row(key, str(n), f"{n / len(rows):.0%}")
    console.print(table)
    console.print("classes: " + ", ".join(f"{k} {v}" for k, v in summary["classes"].items()), highlight=False)
    console.print("decided by: " + ", ".join(f"{k} {v}" for k, v in summary["decided_by"].items()), highlight=False)
    before, after = [r["tokens_before"] for r in rows], [r["tokens"] for r in rows]
    budget = planner.builder.max_prompt_tokens
    console.print(f"prompt tokens (budget {budget}): max {max(before)} -> {max(after)}; over budget "
                  f"{sum(b > budget for b in before)} -> {sum(a > budget for a in after)} of {len(rows)}",
                  highlight=False)
    if planner.policy.convention:
        conv = planner.policy.convention
        console.print(f"fitted convention: {conv.get('value')} ({conv.get('strict', 0)} items agree with strict, "
                      f"{conv.get('loose', 0)} with loose)", highlight=False)
