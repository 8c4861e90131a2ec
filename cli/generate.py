"""`portraitcraft generate INPUT`: the critique-correct loop over Track 2 descriptions (or `--prompt`)."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import typer
from rich.live import Live
from rich.table import Table

from portraitcraft.cli.common import (
    EXIT_NOTHING_DONE,
    EXIT_SOME_FAILED,
    ConfigOption,
    SetOption,
    config_from_cli,
    err_console,
    print_json,
)
from portraitcraft.errors import InputError

STRATEGIES = ("loop", "best-of-n", "one-shot")


def generate(
    input_file: Path | None = typer.Argument(None, metavar="INPUT", help="Track 2 JSON array or JSONL (or a "
                                             "descriptions file); omit with --prompt."),
    config: Path | None = ConfigOption,
    sets: list[str] | None = SetOption,
    out: Path | None = typer.Option(None, "--out", help="The run folder (default: <run.out_dir>/<timestamp>)."),
    rules: Path | None = typer.Option(None, "--rules", help="A folder of extra rule files (*.md)."),
    max_rounds: int | None = typer.Option(None, "--max-rounds", min=0, help="Corrections per item (loop.max_rounds)."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Only the first N items."),
    ids: list[str] | None = typer.Option(None, "--ids", help="Only these item ids (repeat, or comma-separated)."),
    resume: bool = typer.Option(False, "--resume", help="Continue a killed run in --out; finished items stay."),
    prompt: str | None = typer.Option(None, "--prompt", help="One ad-hoc description instead of INPUT."),
    init_images: Path | None = typer.Option(None, "--init-images", help="Start each item from the image named "
                                            "by its image_path in this folder instead of drafting."),
    strategy: str = typer.Option("loop", "--strategy", help="loop | best-of-n | one-shot (equal image budget)."),
    group: int | None = typer.Option(None, "--group", min=2, max=64, help="Draw G independent candidates per item "
                                     "and score them with within-group rewards (NaSPO pairs in pairs.jsonl)."),
    as_json: bool = typer.Option(False, "--json", help="Print the final summary as JSON."),
    strict: bool = typer.Option(False, "--strict", help=f"Exit {EXIT_SOME_FAILED} when any item failed (the "
                                "finished ones are still written)."),
) -> None:
    """Draw, critique against the rules and the geometric critic, correct until the critic passes.

    Exit codes (as `eval track2`): 0 items finished; 2 bad input or usage (nothing run); 3 no item finished;
    4 some items failed and --strict was given; 130 interrupted (--resume continues).
    """
    from portraitcraft.graphs.generate_report import write_report
    from portraitcraft.prompts.rules import load_rules
    from portraitcraft.runs import RunFolder

    if strategy not in STRATEGIES:
        raise InputError(f"--strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
    if (input_file is None) == (prompt is None):
        raise InputError("give INPUT (a Track 2 file) or --prompt \"...\", not both and not neither")
    if init_images is not None and not init_images.is_dir():
        raise InputError(f"--init-images {init_images}: not a folder")
    if group is not None:  # group sampling = best-of-n with G samples, every candidate kept and rewarded
        if strategy not in ("loop", "best-of-n"):
            raise InputError(f"--group draws independent samples; it cannot be combined with --strategy {strategy}")
        strategy, max_rounds = "best-of-n", group - 1
    cfg = config_from_cli(config, sets, loop={"max_rounds": max_rounds, "strategy": strategy, "group_size": group},
                          critic={"rules_dir": str(rules) if rules else None})
    load_rules(cfg.critic.rules_dir, cfg.critic.rules or None)  # a bad rule file is bad input: before any work
    specs, problems = read_specs(input_file, prompt, limit, ids)
    if out is None:
        out = Path(cfg.run.out_dir) / (cfg.run.name or time.strftime("%Y%m%d-%H%M%S"))
    run = RunFolder.create(out.parent, out.name, config=cfg, command=sys.argv, resume=resume)
    summary = asyncio.run(_run(cfg, run, specs, problems, init_images, strategy, live=not as_json))
    from portraitcraft.atomic import atomic_write_json

    summary["run"] = str(run.root)
    summary["report"] = str(run.root / "report.html")
    atomic_write_json(run.root / "summary.json", summary)  # first: the report reads it
    report = write_report(run.root)
    if as_json:
        print_json(summary)
    else:
        err_console.print(summary_table(summary))
        err_console.print(f"run folder: {run.root}   report: {report}", markup=False, highlight=False)
    if not summary.get("n_done"):
        err_console.print(f"nothing finished: {summary.get('n_failed', 0)} of {summary.get('n_items', 0)} item(s) "
                          f"failed (see {run.root / 'results.jsonl'})", markup=False, highlight=False)
        raise typer.Exit(EXIT_NOTHING_DONE)
    if strict and summary.get("n_failed"):
        raise typer.Exit(EXIT_SOME_FAILED)


def read_specs(input_file: Path | None, prompt: str | None, limit: int | None,
               ids: list[str] | None) -> tuple[list[Any], list[Any]]:
    """The items to run and the input problems (each becomes a failed row)."""
    from portraitcraft.data import detect_kind, parse_items, read_records
    from portraitcraft.schemas import ItemProblem, Track2Spec
    from portraitcraft.submission import submission_name_problem

    if prompt is not None:
        if not prompt.strip():
            raise InputError("--prompt: the description is empty")
        return [Track2Spec(image_path="prompt_00000.png", content=prompt.strip(), composition="")], []
    assert input_file is not None
    records = read_records(input_file)
    kind = detect_kind(records)
    if kind not in ("track2", "descriptions"):
        raise InputError(f"{input_file}: expected Track 2 items or descriptions, found a {kind} file")
    parsed = parse_items(records, kind)
    specs, problems = [], list(parsed.problems)
    for index, spec in zip(parsed.indices, parsed.items, strict=True):
        why = submission_name_problem(spec.output_name)  # the submission file is named exactly by it
        if why is None:
            specs.append(spec)
        else:
            problems.append(ItemProblem(index, spec.image_path, "image_path", why))
    if ids:
        wanted = {i.strip() for raw in ids for i in raw.split(",") if i.strip()}
        unknown = wanted - {s.id for s in specs}
        if unknown:
            raise InputError(f"--ids: no item with id {', '.join(sorted(unknown))} in {input_file}")
        specs = [s for s in specs if s.id in wanted]
        problems = []
    if limit is not None:
        specs, problems = specs[:limit], problems[: max(0, limit - len(specs))]
    check_unique_ids(input_file, specs, problems)
    return specs, problems


def check_unique_ids(input_file: Path, specs: list[Any], problems: list[Any]) -> None:
    """Two items with one id (`images_00/x.jpg` and `x.jpg`, or `x.jpg` and `x.png`) would share a results row
    and a graph thread, and one would be lost: a bad input named before any work (exit 2)."""
    from portraitcraft.graphs.generate_run import problem_row

    owners: dict[str, list[str]] = {}
    for spec in specs:
        owners.setdefault(spec.id, []).append(spec.image_path)
    clashes = [f"id {i!r}: {', '.join(paths)}" for i, paths in owners.items() if len(paths) > 1]
    for problem in problems:
        row_id = problem_row(problem)["id"]
        if row_id in owners or problem.problem.startswith("duplicate of item"):
            clashes.append(f"{problem} (its id {row_id!r} is also item {', '.join(owners.get(row_id, ['?']))})")
    if clashes:
        shown = "\n".join(clashes[:20]) + (f"\n... and {len(clashes) - 20} more" if len(clashes) > 20 else "")
        raise InputError(f"{input_file}: {len(clashes)} item(s) share an id with another item (the same image_path "
                         f"basename or stem); give each a distinct image_path or id:\n{shown}")


class Board:
    """The live display: items done / in flight / failed, rounds, pass rate, GPU-lane use, VLM latency."""

    def __init__(self, n_items: int, drawer: Any, vlm: Any) -> None:
        self.n_items, self.drawer, self.vlm = n_items, drawer, vlm
        self.in_flight: set[str] = set()
        self.done = self.failed = self.passed = self.rounds = 0
        self.live: Live | None = None

    def event(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "start":
            self.in_flight.add(data["id"])
        elif kind == "finalize":
            self.in_flight.discard(data["id"])
            if data["status"] == "failed":
                self.failed += 1
            else:
                self.done += 1
                self.passed += int(bool(data["passed"]))
                self.rounds += int(data["rounds"] or 0)
        if self.live is not None:
            self.live.update(self.render())

    def render(self) -> Table:
        from portraitcraft.graphs.generate_run import drawer_utilisation

        table = Table("items", "done", "in flight", "failed", "pass rate", "mean rounds", "GPU lane", "VLM p50",
                      title="portraitcraft generate")
        util = drawer_utilisation(self.drawer)
        lat = self.vlm.stats.summary().get("latency_p50_s") if self.vlm is not None else None
        table.add_row(str(self.n_items), str(self.done), str(len(self.in_flight)), str(self.failed),
                      f"{self.passed / self.done:.0%}" if self.done else "-",
                      f"{self.rounds / self.done:.2f}" if self.done else "-",
                      f"{util:.0%}" if util is not None else "-", f"{lat:.2f}s" if lat else "-")
        return table


async def _run(cfg: Any, run: Any, specs: list[Any], problems: list[Any], init_images: Path | None, strategy: str,
               *, live: bool) -> dict[str, Any]:
    from portraitcraft.graphs.generate_run import build_context, build_drawer, model_clients, run_items

    drawer = build_drawer(cfg)
    summary_vlm = None
    try:
        async with model_clients(cfg) as (vlm, judge):
            board = Board(len(specs) + len(problems), drawer, vlm)
            ctx = build_context(cfg, run, drawer=drawer, vlm=vlm, init_images=init_images, strategy=strategy,  # type: ignore[arg-type]
                                on_event=board.event, judge=judge)
            if live:
                with Live(board.render(), console=err_console, refresh_per_second=4, transient=False) as display:
                    board.live = display
                    summary = await run_items(ctx, specs, problems)
            else:
                summary = await run_items(ctx, specs, problems)
            if vlm is not None:
                summary_vlm = vlm.stats.summary()
    finally:
        await drawer.aclose()
    if summary_vlm is not None:
        summary["vlm"] = summary_vlm
        tokens = summary_vlm.get("prompt_tokens", 0) + summary_vlm.get("completion_tokens", 0)
        if summary["n_done"]:  # the client counts tokens per run, not per item: a run-level average
            summary["cost_per_final_image"]["vlm_tokens"] = round(tokens / summary["n_done"], 1)
    return summary


def summary_table(summary: dict[str, Any]) -> Table:
    table = Table("metric", "value", title="generate summary")
    for key in ("n_items", "n_done", "n_failed", "pass_rate", "mean_rounds", "gpu_utilisation", "wall_seconds"):
        table.add_row(key, str(summary.get(key)))
    if summary.get("needs_outpainting"):
        table.add_row("needs outpainting", ", ".join(summary["needs_outpainting"]))
    for key, value in (summary.get("cost_per_final_image") or {}).items():
        table.add_row(f"per final image: {key}", f"{value:g}")
    return table
