"""Run the generate graph over many items: one checkpointed thread per item, a bounded number in flight,
resume after a kill with every item ending exactly once in results.jsonl.

Finished is explicit: finalize appends the item's results row (one fsync'd line) before its thread records
"finished"; a resumed run skips every id that already has a row, so a kill between the two never repeats an
item, and an unfinished thread continues from its last checkpoint (`ainvoke(None, ...)`).
"""

from __future__ import annotations

import contextlib
import functools
import statistics
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

from portraitcraft.agents.critic import Critic
from portraitcraft.agents.editor import Editor, reframeable_rules
from portraitcraft.batch import run_batch
from portraitcraft.config import PortraitcraftConfig
from portraitcraft.errors import PortraitcraftError
from portraitcraft.graphs.generate import build_graph
from portraitcraft.graphs.generate_state import GenerateContext, Strategy, initial_state
from portraitcraft.graphs.threads import open_checkpointer, thread_status
from portraitcraft.ids import default_item_id
from portraitcraft.paths import cache_root
from portraitcraft.prompts.rules import load_rules
from portraitcraft.runs import ResultsLog, RunFolder, failed_row
from portraitcraft.schemas import CompositionTargets, ItemProblem, Track2Spec

CHECKPOINTS = "checkpoints.sqlite"


def default_targets(spec: Track2Spec, plan: Any) -> CompositionTargets:
    """The plan's targets (planner with targets), else the targets extractor, else none known."""
    targets = getattr(plan, "targets", None)
    if isinstance(targets, CompositionTargets):
        return targets
    try:
        from portraitcraft.agents.planner.targets import extract_targets
    except ImportError:
        return CompositionTargets()
    return extract_targets(spec.content, spec.composition)


def default_reframe(cfg: PortraitcraftConfig) -> Callable[..., Any] | None:
    """agents.reframe.reframe with the run's [vision] settings, or None when the vision part is missing."""
    try:
        from portraitcraft.agents.reframe import reframe
    except ImportError:
        return None
    return functools.partial(reframe, config=cfg.vision)


def default_analyze(cfg: PortraitcraftConfig) -> Callable[..., Any] | None:
    """portraitcraft.tools.vision.analyze with the run's [vision] settings, or None when the vision part is missing."""
    try:
        from portraitcraft.tools.vision import analyze
    except ImportError:
        return None
    return functools.partial(analyze, config=cfg.vision)


def build_drawer(cfg: PortraitcraftConfig) -> Any:
    """The run's Drawer (portraitcraft.tools.gpu_jobs) over the configured generator/editor backends."""
    try:
        from portraitcraft.tools.backends import build_backends
    except ImportError as exc:
        raise PortraitcraftError(f"the GPU job layer is not available ({exc}); install the diffusion extra") from None
    return build_backends(cfg).drawer


@contextlib.asynccontextmanager
async def model_clients(cfg: PortraitcraftConfig) -> AsyncIterator[tuple[Any, Any]]:
    """The run's model clients, closed on exit: the critic's VLM client (`[critic] enabled`), and the judge that
    ranks rounds that never passed (a VLM setup with `loop.select_by_judge`); None for what is not configured."""
    vlm = judge_client = judge = None
    try:
        if cfg.critic.enabled:
            from portraitcraft.tools.vlm import VLMClient

            vlm = VLMClient(cfg.critic, cache_dir=cache_root(cfg.run.cache_dir) / "vlm")
            if cfg.loop.select_by_judge:
                from portraitcraft.agents.judge import Judge

                judge_client = VLMClient(cfg.judge, cache_dir=cache_root(cfg.run.cache_dir) / "vlm")
                judge = Judge(cfg.judge, judge_client)
        yield vlm, judge
    finally:
        for client in (judge_client, vlm):
            if client is not None:
                await client.aclose()


def build_context(
    cfg: PortraitcraftConfig,
    run: RunFolder,
    *,
    drawer: Any,
    vlm: Any = None,
    planner: Any = None,
    rules_dir: str | Path | None = None,
    init_images: Path | None = None,
    strategy: Strategy = "loop",
    analyze: Any = None,
    geometry: Any = None,
    reframe: Callable[..., Any] | bool | None = True,
    targets_of: Callable[[Track2Spec, Any], CompositionTargets] = default_targets,
    can_edit: bool = True,
    judge: Any = None,
    on_event: Callable[[str, dict[str, Any]], None] | None = None,
) -> GenerateContext:
    """Everything a run needs, from the config, with any part injectable (tests, benchmarks)."""
    from portraitcraft.agents.planner import Planner

    rules = load_rules(rules_dir or cfg.critic.rules_dir, cfg.critic.rules or None)
    if cfg.critic.geometry and analyze is None:
        analyze = default_analyze(cfg)
    critic = Critic(rules, cfg.critic, vlm=vlm, analyze=analyze, geometry=geometry)
    axes = {r.id: r.geometry for r in rules if r.geometry}
    reframer = default_reframe(cfg) if reframe is True else (reframe or None)
    editor = Editor(cfg.loop, cfg.critic.min_confidence, rule_axes=axes, can_edit=can_edit,
                    can_reframe=reframer is not None, reframeable=reframeable_rules())
    pairs = ResultsLog(run.root / "pairs.jsonl", create=True)  # always there: `pairs export` reads an empty one
    max_rounds = 0 if strategy == "one-shot" else cfg.loop.max_rounds
    return GenerateContext(
        cfg=cfg, run=run, planner=planner or Planner.from_config(cfg), critic=critic, editor=editor, drawer=drawer,
        targets_of=targets_of, reframe=reframer,
        init_images=init_images, strategy=strategy, max_rounds=max_rounds, pairs=pairs,
        pairs_done={r["id"] for r in pairs if "id" in r}, on_event=on_event, judge=judge)


def problem_row(problem: ItemProblem) -> dict[str, Any]:
    raw = problem.image_path or f"item-{problem.index}"
    return {"id": default_item_id(raw), "image_path": problem.image_path, "status": "failed",
            "passed": False, "rounds": 0, "history": [], "canvas": None, "targets": None, "prompt": None,
            "timings": {}, "cost": {}, "error": str(problem)}


async def run_items(ctx: GenerateContext, specs: Sequence[Track2Spec], problems: Sequence[ItemProblem] = (),
                    *, concurrency: int | None = None) -> dict[str, Any]:
    """Run (or resume) every item through the batch driver; returns the summary (see `summarize`).

    An item with a results row is skipped; an interrupted thread is re-entered from its last checkpoint; a
    `PortraitcraftError` escaping the graph is that item's failed row; anything else stops the run."""
    results = ctx.run.results
    done = results.done_ids(status=None)
    for problem in problems:
        row = problem_row(problem)
        if row["id"] not in done:
            results.append(row)
            done.add(row["id"])
            ctx.emit("finalize", id=row["id"], status="failed", passed=False, rounds=0)
    recursion = 10 + 2 * (ctx.max_rounds + 2)
    start = time.perf_counter()
    async with open_checkpointer(ctx.run.root / CHECKPOINTS) as saver:
        graph = build_graph().compile(checkpointer=saver)

        async def one(spec: Track2Spec) -> None:
            config: dict[str, Any] = {"configurable": {"thread_id": spec.id}, "recursion_limit": recursion}
            status, _ = await thread_status(graph, config)
            ctx.emit("start", id=spec.id, resumed=status == "interrupted")
            await graph.ainvoke(None if status == "interrupted" else initial_state(spec), config, context=ctx)

        def failed(spec: Track2Spec, exc: PortraitcraftError) -> None:
            results.append(failed_row(spec.id, exc, image_path=spec.image_path, passed=False, rounds=0,
                                      history=[], cost={}))
            ctx.emit("finalize", id=spec.id, status="failed", passed=False, rounds=0)

        await run_batch(specs, one, key=lambda s: s.id, concurrency=concurrency or ctx.cfg.run.concurrency,
                        skip=done, on_failed=failed)
    ids = [s.id for s in specs] + [problem_row(p)["id"] for p in problems]
    return summarize(results.rows(), ids, ctx.drawer, time.perf_counter() - start)


def drawer_utilisation(drawer: Any) -> float | None:
    stats = drawer.stats() if hasattr(drawer, "stats") else None
    if stats is None:
        return None
    jobs = stats.get("jobs") if isinstance(stats, dict) else getattr(stats, "jobs", None)
    if jobs == 0:  # nothing ran on the lane (e.g. reframes only): no utilisation to speak of
        return None
    value = stats.get("utilisation") if isinstance(stats, dict) else getattr(stats, "utilisation", None)
    return round(float(value), 4) if isinstance(value, int | float) else None


def summarize(rows: Sequence[dict[str, Any]], ids: Sequence[str], drawer: Any, seconds: float) -> dict[str, Any]:
    """The run's summary: `n_items`, `n_done`, `n_failed`, `pass_rate`, `mean_rounds`, `gpu_utilisation`, ...

    Counts the rows of the given ids (the last row per id), so a resumed run reports the whole run.
    """
    wanted = set(ids)
    latest = {r["id"]: r for r in rows if r.get("id") in wanted}
    done = [r for r in latest.values() if r.get("status") == "done"]
    failed = [r for r in latest.values() if r.get("status") == "failed"]
    passed = [r for r in done if r.get("passed")]
    costs: dict[str, float] = {}
    for r in done:
        for k, v in (r.get("cost") or {}).items():
            if isinstance(v, int | float):
                costs[k] = round(costs.get(k, 0) + v, 6)
    return {
        "n_items": len(wanted), "n_done": len(done), "n_failed": len(failed),
        "pass_rate": round(len(passed) / len(done), 4) if done else 0.0,
        "mean_rounds": round(statistics.fmean(r.get("rounds", 0) for r in done), 4) if done else 0.0,
        "gpu_utilisation": drawer_utilisation(drawer),
        "wall_seconds": round(seconds, 3),
        "cost_total": costs,
        "cost_per_final_image": {k: round(v / len(done), 6) for k, v in costs.items()} if done else {},
        "n_missing": len(wanted - set(latest)),
        "needs_outpainting": sorted(r["id"] for r in done if r.get("needs_outpainting")),
        "gpu": drawer_stats(drawer),
    }


def drawer_stats(drawer: Any) -> dict[str, Any] | None:
    """The executor's accounting as plain data (per worker utilisation; Ray: actor deaths and retries)."""
    stats = drawer.stats() if hasattr(drawer, "stats") else None
    to_json = getattr(stats, "to_json", None)
    return to_json() if callable(to_json) else None


__all__ = ["build_context", "build_drawer", "default_targets", "run_items", "summarize"]
