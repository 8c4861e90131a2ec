"""`portraitcraft mine`: failure modes of a generator against real training images -> a rule set + pairs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from portraitcraft.atomic import check_output_folder
from portraitcraft.cli.common import EXIT_NOTHING_DONE, ConfigOption, SetOption, config_from_cli, console, print_json
from portraitcraft.errors import InputError
from portraitcraft.paths import cache_root
from portraitcraft.runs import lock_run_folder


def mine(
    train: Path = typer.Argument(..., help="Track 2 training items (JSON array or JSONL)."),
    images: Path = typer.Option(..., "--images", help="Folder of the real training images."),
    counterparts: Path | None = typer.Option(None, "--counterparts",
                                             help="Folder of generated images named by each item's image_path "
                                                  "(default: draw them with the configured [generator])."),
    sample: int | None = typer.Option(None, "--sample", min=1, help="Items to sample (default [miner] "
                                      "sample_size; all when the file is smaller)."),
    out: Path = typer.Option(..., "--out", "-o", help="The mining folder (re-running resumes it)."),
    config: Path | None = ConfigOption,
    sets: list[str] | None = SetOption,
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Mine failure modes: geometry of both images (always) + the [miner] VLM (when enabled); write rules/,
    pairs.jsonl (chosen = real, rejected = generated) and mining_report.md. Exit 0; 3 when no item was mined."""
    from portraitcraft.data import load_track2
    from portraitcraft.graphs.mine import run_mining
    from portraitcraft.tools.vision import analyze

    cfg = config_from_cli(config, sets)
    if counterparts is not None and not counterparts.is_dir():
        raise InputError(f"--counterparts {counterparts}: not a folder")
    items = load_track2(train, strict=False)
    lock_run_folder(check_output_folder(out))  # before any model call; one process per mining folder

    async def go() -> object:
        vlm = drawer = planner = None
        if cfg.miner.enabled:
            from portraitcraft.tools.vlm import VLMClient

            vlm = VLMClient(cfg.miner, cache_dir=cache_root(cfg.run.cache_dir) / "vlm")
        if counterparts is None:  # draw them with the configured generator, planned as `generate` plans drafts
            from portraitcraft.agents.planner import Planner
            from portraitcraft.graphs.generate_run import build_drawer

            drawer, planner = build_drawer(cfg), Planner.from_config(cfg)
        try:
            return await run_mining(items, images=images, counterparts=counterparts, out=out, analyze=analyze,
                                    vlm=vlm, sample=sample or cfg.miner.sample_size, max_modes=cfg.miner.max_modes,
                                    show_progress=not as_json, drawer=drawer, planner=planner)
        finally:
            if vlm is not None:
                await vlm.aclose()
            if drawer is not None:
                await drawer.aclose()

    summary = asyncio.run(go())
    if as_json:
        import dataclasses

        print_json(dataclasses.asdict(summary))
    else:
        table = Table(title=f"failure modes ({summary.n_done}/{summary.n_sampled} items mined)")
        for col in ("rule", "title", "items", "frequency", "geometry"):
            table.add_column(col)
        for m in summary.modes:
            table.add_row(m["id"], m["title"], str(m["count"]), f"{m['frequency']:.0%}", m["geometry"] or "-")
        console.print(table)
        for error in summary.errors:
            console.print(f"[red]{escape(str(error))}[/red]", highlight=False, soft_wrap=True)
        console.print(f"rules: {summary.rules_dir}", markup=False, highlight=False)
    raise typer.Exit(0 if summary.n_done else EXIT_NOTHING_DONE)
