"""Failure-mode mining: measure -> ask -> check per sampled item, then aggregate the sample into a rule set.

Per item the graph measures both images with the vision tools (the real image's geometry is the truth),
asks the miner VLM for typed discrepancies when one is configured, and checks every VLM statement naming a
side against the geometry. `run_mining` runs the items (bounded concurrency, resumable from results.jsonl:
a finished item is never redone), copies each pair into the run folder, and writes the rule files, the
`pairs.jsonl` (chosen = real, rejected = generated) and the mining report.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import random
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from rich.progress import Progress

from portraitcraft.agents.miner import (
    FailureMode,
    MinedDiscrepancy,
    MinerError,
    aggregate,
    ask_discrepancies,
    check_sides,
    geometric_discrepancies,
    name_mode,
    write_rule_set,
)
from portraitcraft.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text, save_image_atomic
from portraitcraft.batch import run_batch
from portraitcraft.data import find_image
from portraitcraft.errors import InputError, PortraitcraftError
from portraitcraft.graphs.mine_state import MineContext, MineState
from portraitcraft.ids import item_key
from portraitcraft.runs import RunFolder, failed_row
from portraitcraft.schemas import SubjectFeatures, Track2Spec


async def measure(state: MineState, runtime: Runtime[MineContext]) -> dict[str, Any]:
    real, generated = await asyncio.gather(asyncio.to_thread(runtime.context.analyze, state["real"]),
                                           asyncio.to_thread(runtime.context.analyze, state["generated"]))
    dump = [a.subject.model_dump(mode="json") if a.subject is not None else None for a in (real, generated)]
    return {"real_features": dump[0], "generated_features": dump[1]}


async def ask(state: MineState, runtime: Runtime[MineContext]) -> dict[str, Any]:
    if runtime.context.vlm is None:
        return {"discrepancies": [], "vlm_error": None}
    try:
        found = await ask_discrepancies(runtime.context.vlm, state["real"], state["generated"], state["description"],
                                        max_items=runtime.context.max_items)
    except PortraitcraftError as exc:  # the VLM's failure is this item's note; geometry still counts
        return {"discrepancies": [], "vlm_error": str(exc)}
    rows = [dataclasses.asdict(MinedDiscrepancy(state["id"], d.aspect, d.difference, d.instruction, "vlm"))
            for d in found]
    return {"discrepancies": rows, "vlm_error": None}


def check(state: MineState) -> dict[str, Any]:
    real, gen = (SubjectFeatures.model_validate(f) if f else None
                 for f in (state.get("real_features"), state.get("generated_features")))
    vlm = [MinedDiscrepancy(**row) for row in state.get("discrepancies", [])]
    check_sides(vlm, real, gen)
    rows = [dataclasses.asdict(d) for d in (*geometric_discrepancies(state["id"], real, gen), *vlm)]
    return {"discrepancies": rows}


def build_graph() -> Any:
    """measure -> ask -> check, compiled (no checkpointer: one item is seconds; resume is per item)."""
    graph = StateGraph(MineState, context_schema=MineContext)
    graph.add_node("measure", measure)
    graph.add_node("ask", ask)
    graph.add_node("check", check)
    graph.add_edge(START, "measure")
    graph.add_edge("measure", "ask")
    graph.add_edge("ask", "check")
    graph.add_edge("check", END)
    return graph.compile()


@dataclasses.dataclass
class MiningSummary:
    """What a mining run did (also written as mining_report.json)."""

    n_sampled: int
    n_done: int
    n_failed: int
    n_discrepancies: int
    contradicted: int
    modes: list[dict[str, Any]]
    rules_dir: str
    errors: list[str]


def sample_items(items: Sequence[Track2Spec], n: int | None, seed: int = 0) -> list[Track2Spec]:
    """A reproducible sample (all items when `n` is None or larger than the set), in input order."""
    if n is None or n >= len(items):
        return list(items)
    chosen = set(random.Random(seed).sample(range(len(items)), n))
    return [item for i, item in enumerate(items) if i in chosen]


async def _mine_one(graph: Any, ctx: MineContext, run: RunFolder, item: Track2Spec, images: Path,
                    counterparts: Path) -> dict[str, Any]:
    """One item's mined row; a missing image or a failed model call raises (the batch driver's failed row)."""
    found = {"real": find_image(images, item.image_path), "generated": find_image(counterparts, item.image_path)}
    missing = [f"{what} image {item.image_path!r}: {look.problem}" for what, look in found.items() if look.path is None]
    if missing:
        raise InputError("; ".join(missing))
    real, generated = found["real"].path, found["generated"].path
    folder = run.item_dir(item.id)
    local_real = folder / f"real{real.suffix.lower()}"
    local_gen = folder / f"generated{generated.suffix.lower()}"
    atomic_write_bytes(local_real, real.read_bytes())
    atomic_write_bytes(local_gen, generated.read_bytes())
    state = await graph.ainvoke({"id": item.id, "description": item.description, "real": str(local_real),
                                 "generated": str(local_gen)}, context=ctx)
    rel = run.root
    return {"id": item.id, "image_path": item.image_path, "status": "done",
            "real": str(local_real.relative_to(rel)), "generated": str(local_gen.relative_to(rel)),
            "prompt": item.description, "real_features": state.get("real_features"),
            "generated_features": state.get("generated_features"),
            "discrepancies": state.get("discrepancies", []), "vlm_error": state.get("vlm_error")}


def _failed_row(item: Track2Spec, exc: PortraitcraftError) -> dict[str, Any]:
    return failed_row(item.id, exc, image_path=item.image_path) | {"error": f"item {item.id}: {exc}"}


async def draw_counterparts(items: Sequence[Track2Spec], *, drawer: Any, planner: Any, out: Path,
                            concurrency: int = 4) -> Path:
    """Draw the generated counterpart of every item with the configured generator (through the Drawer: GPU
    jobs on the lane or Ray actors), planned exactly as `generate` plans its drafts; saved as
    `out/counterparts/<image_path basename>`. Already drawn items are kept (resumable)."""
    folder = out / "counterparts"
    folder.mkdir(parents=True, exist_ok=True)

    async def one(item: Track2Spec) -> None:
        plan = planner.plan(item)
        image = await drawer.generate(plan.prompt, plan.width, plan.height, plan.seed, item_id=item.id)
        drawer.item_done(item.id)
        await asyncio.to_thread(save_image_atomic, image, folder / item_key(item.image_path))

    drawn = {item.id for item in items if (folder / item_key(item.image_path)).is_file()}
    await run_batch(items, one, key=lambda i: i.id, concurrency=concurrency, skip=drawn)
    return folder


async def run_mining(items: Sequence[Track2Spec], *, images: Path, counterparts: Path | None, out: Path,
                     analyze: Any,
                     vlm: Any | None = None, sample: int | None = None, max_modes: int = 12, concurrency: int = 4,
                     resume: bool = True, show_progress: bool = False, drawer: Any = None,
                     planner: Any = None) -> MiningSummary:
    """Mine a sample of `items` into `out` (resumable); returns the summary and writes rules + report.

    `counterparts` is a folder of generated images named by `image_path`; None draws them with `drawer`
    (and `planner`) first, into `out/counterparts/`.
    """
    run = RunFolder(out)
    out.mkdir(parents=True, exist_ok=True)
    chosen = sample_items(items, sample)
    if counterparts is None:
        if drawer is None or planner is None:
            raise MinerError("mining needs --counterparts DIR or a configured generator to draw them")
        counterparts = await draw_counterparts(chosen, drawer=drawer, planner=planner, out=out,
                                               concurrency=concurrency)
    done = run.results.done_ids(status=None) if resume else set()
    todo = [item for item in chosen if item.id not in done]  # for the progress bar
    graph = build_graph()
    ctx = MineContext(analyze=analyze, vlm=vlm)
    with contextlib.ExitStack() as stack:
        advance: Callable[[], None] = lambda: None  # noqa: E731
        if show_progress:
            progress = stack.enter_context(Progress())
            task = progress.add_task("mining", total=len(todo))
            advance = functools.partial(progress.advance, task)

        def keep(item: Track2Spec, row: dict[str, Any]) -> None:
            run.results.append(row)
            advance()

        await run_batch(chosen, lambda item: _mine_one(graph, ctx, run, item, images, counterparts),
                        key=lambda i: i.id, concurrency=concurrency, skip=done,
                        on_done=keep, on_failed=lambda item, exc: keep(item, _failed_row(item, exc)))
    return await finish_mining(run, vlm=vlm, max_modes=max_modes, n_sampled=len(chosen))


async def finish_mining(run: RunFolder, *, vlm: Any | None, max_modes: int, n_sampled: int) -> MiningSummary:
    """Aggregate every done row into failure modes; write rules/, pairs.jsonl and the mining report."""
    rows = run.results.rows()
    done = [r for r in rows if r.get("status") == "done"]
    found = [MinedDiscrepancy(**d) for r in done for d in r.get("discrepancies", [])]
    modes: list[FailureMode] = aggregate(found, max(1, len(done)), max_modes=max_modes) if done else []
    if vlm is not None:
        named = []
        for mode in modes:
            try:
                named.append(await name_mode(vlm, mode))
            except PortraitcraftError:  # offline naming stays; the report says which were named by the LLM
                named.append(mode)
        modes = named
    rules_dir = run.root / "rules"
    if rules_dir.exists():
        shutil.rmtree(rules_dir)
    write_rule_set(modes, rules_dir, total=len(done))
    pairs = [json.dumps({"id": r["id"], "prompt": r["prompt"], "chosen": r["real"], "rejected": r["generated"],
                         "label": 1.0, "source": "mine",
                         "rules_fired": sorted({d["key"] for d in r["discrepancies"] if d.get("key")}),
                         "provenance": {"vlm_error": r.get("vlm_error")}}, ensure_ascii=False)
             for r in done]
    atomic_write_text(run.root / "pairs.jsonl", "\n".join(pairs) + ("\n" if pairs else ""))
    summary = MiningSummary(
        n_sampled=n_sampled, n_done=len(done), n_failed=len(rows) - len(done), n_discrepancies=len(found),
        contradicted=sum(d.check == "contradicted" for d in found),
        modes=[{k: v for k, v in dataclasses.asdict(m).items() if k != "examples"} for m in modes],
        rules_dir=str(rules_dir), errors=[r["error"] for r in rows if r.get("status") != "done"])
    atomic_write_json(run.root / "mining_report.json", dataclasses.asdict(summary))
    atomic_write_text(run.root / "mining_report.md", _report_markdown(summary))
    return summary


def _report_markdown(summary: MiningSummary) -> str:
    lines = ["# Mining report", "",
             f"{summary.n_done} of {summary.n_sampled} sampled items mined ({summary.n_failed} failed); "
             f"{summary.n_discrepancies} discrepancies, {summary.contradicted} VLM side statements contradicted "
             "by geometry (left out of the clustering).", "",
             "| rule | title | items | frequency | geometry | named by |", "|---|---|---|---|---|---|"]
    for m in summary.modes:
        lines.append(f"| {m['id']} | {m['title']} | {m['count']} | {m['frequency']:.0%} | {m['geometry'] or '-'} "
                     f"| {m['named_by']} |")
    if summary.errors:
        lines += ["", "## Failed items", *[f"- {e}" for e in summary.errors]]
    return "\n".join(lines) + "\n"
