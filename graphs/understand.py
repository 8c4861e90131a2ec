"""Track 1 understanding as a LangGraph graph: per image, a `Send` fan-out over the views and a fan-in vote.

    prepare --Send x views--> assess_view --(fan-in)--> vote --> END
       \\--(image missing / geometry failed)--> END (status "failed")

One thread per image (thread_id = the image's safe id + the run fingerprint), checkpointed in an
AsyncSqliteSaver file: a killed run resumes where it stopped, a finished item is never asked again, and a
changed configuration (other views, prompts, endpoint) starts new threads instead of reusing old answers.
The vote is recomputed from the stored view records on every run, so a new calibration or other aggregation
switches cost no model call. Nodes hold no HTTP: the assessor (in the runtime context) does the calls.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Command, Send

from portraitcraft.agents.assessor import Question
from portraitcraft.agents.assessor_vote import VoteError, vote_qa, vote_track1
from portraitcraft.agents.views import View
from portraitcraft.batch import run_batch
from portraitcraft.config import AssessorConfig
from portraitcraft.errors import PortraitcraftError
from portraitcraft.graphs.threads import open_checkpointer, thread_status
from portraitcraft.graphs.understand_state import (
    ItemOutcome,
    UnderstandContext,
    UnderstandItem,
    UnderstandState,
    ViewTask,
)
from portraitcraft.ids import safe_id
from portraitcraft.prompts.loader import load_prompt

CHECKPOINT_FILE = "understand_checkpoints.sqlite"
RECURSION_LIMIT = 50  # prepare, the views and the vote: a handful of steps per thread


def _question(item: Mapping[str, Any]) -> Question:
    return Question(item.get("question") or None, dict(item.get("options") or {}), item.get("format") or "single")


async def prepare(state: UnderstandState, runtime: Runtime[UnderstandContext]) -> Command[Literal["assess_view",
                                                                                                  "__end__"]]:
    """Check the image, measure the geometry hints (when on) and fan out one `Send` per view."""
    item = state["item"]
    if not item.get("image"):
        return Command(goto=END, update={"status": "failed", "error": f"{item['image_path']}: image not found"})
    hints = None
    if runtime.context.measure is not None:
        try:
            hints = await asyncio.to_thread(runtime.context.measure, item["image"])
        except PortraitcraftError as exc:  # the one failure policy: an expected failure is this item's; a bug
            return Command(goto=END, update={"status": "failed",  # (anything else) stops the run
                                             "error": f"geometry hints: {type(exc).__name__}: {exc}"})
        hints = dict(hints) if hints else None
    views = [v.to_dict() for v in runtime.context.views]
    sends = [Send("assess_view", ViewTask(item=item, view=v, hints=hints)) for v in views]
    return Command(goto=sends, update={"views": views, "hints": hints})


async def assess_view(task: ViewTask, runtime: Runtime[UnderstandContext]) -> dict[str, Any]:
    """One view: K samples in one request (the assessor never raises: failures come back as records)."""
    item, view = task["item"], View.from_dict(task["view"])
    assessor = runtime.context.assessor
    if item.get("task") == "qa":
        record = await assessor.answer_question(item["image"], _question(item), view, hints=task["hints"])
    else:
        question = _question(item) if item.get("question") else None
        record = await assessor.assess(item["image"], question, view, hints=task["hints"])
    return {"results": [record]}


def _ordered(state: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The view records in the views' order (the fan-in appends them in completion order)."""
    rank = {v["name"]: i for i, v in enumerate(state.get("views") or [])}
    return sorted(state.get("results") or [], key=lambda r: rank.get(r["view"]["name"], len(rank)))


def compute_vote(state: Mapping[str, Any], context: UnderstandContext) -> dict[str, Any]:
    """The item's vote from its stored view records with the context's settings and calibration."""
    item = state["item"]
    records = _ordered(state)
    if item.get("task") == "qa":
        return vote_qa(records, item.get("format") or "single", context.settings)
    return vote_track1(records, context.settings, context.calibration)


async def vote(state: UnderstandState, runtime: Runtime[UnderstandContext]) -> dict[str, Any]:
    """Fan-in: aggregate the views; an item with no valid sample is "failed" with the reason."""
    try:
        return {"vote": compute_vote(state, runtime.context), "status": "finished", "error": None}
    except VoteError as exc:
        return {"vote": None, "status": "failed", "error": str(exc)}


def build_graph() -> StateGraph:
    """The uncompiled graph (compile with a checkpointer to resume)."""
    graph = StateGraph(UnderstandState, context_schema=UnderstandContext)
    graph.add_node("prepare", prepare)
    graph.add_node("assess_view", assess_view)
    graph.add_node("vote", vote)
    graph.add_edge(START, "prepare")
    graph.add_edge("assess_view", "vote")
    graph.add_edge("vote", END)
    return graph


graph = build_graph().compile()
"""The compiled graph without a checkpointer, for LangGraph Studio (langgraph.json); runs use `run_items`."""


def fingerprint(cfg: AssessorConfig, views: Sequence[View], extra: Mapping[str, Any] | None = None) -> str:
    """A short hash of everything that decides the view answers (endpoint, sampling, views, prompt texts).

    Aggregation switches and the calibration are left out on purpose: changing them re-votes from the stored
    records instead of asking the model again.
    """
    keys = ("base_url", "model", "kind", "samples", "temperature", "max_tokens", "seed", "output", "templates",
            "option_orders", "permute_options", "explanations", "geometry_hints", "extra")
    prompts = {name: load_prompt(f"understand/{name}") for name in
               ("system.md", "overall_digit.md", "qa.md", "geometry.md",
                *(f"templates/{t}.md" for t in cfg.templates))}
    asked = {k: getattr(cfg, k) for k in keys} | {"logprob_overall": cfg.overall == "logprob"}
    payload = {"cfg": asked, "views": [v.to_dict() for v in views],
               "prompts": prompts, "extra": dict(extra or {})}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def thread_id(item: Mapping[str, Any], run_fingerprint: str) -> str:
    return f"{safe_id(str(item['id']))}@{run_fingerprint}"


async def run_items(
    items: Sequence[UnderstandItem],
    context: UnderstandContext,
    *,
    checkpoint_dir: str | Path,
    run_fingerprint: str,
    concurrency: int = 4,
    on_view: Callable[[str], Awaitable[None] | None] | None = None,
    on_item: Callable[[ItemOutcome], Awaitable[None] | None] | None = None,
) -> list[ItemOutcome]:
    """Run every item as its own thread, `concurrency` items at a time, resuming from the checkpoint file.

    Args:
        items (sequence of UnderstandItem): the items (ids must be unique).
        context (UnderstandContext): assessor, views, settings, calibration, geometry.
        checkpoint_dir (str | Path): folder of the AsyncSqliteSaver file (`understand_checkpoints.sqlite`).
        run_fingerprint (str): `fingerprint(...)` of the run; part of every thread id.
        concurrency (int, optional): items in flight at once (views of an item run together).
        on_view / on_item (callable, optional): progress callbacks (a view finished; an item finished).

    Returns:
        One ItemOutcome per item, in input order; votes recomputed with the context's settings.
    """
    folder = Path(checkpoint_dir)

    async def call(callback: Callable[..., Any] | None, *args: Any) -> None:
        if callback is not None:
            result = callback(*args)
            if asyncio.iscoroutine(result):
                await result

    async with open_checkpointer(folder / CHECKPOINT_FILE) as saver:
        graph = build_graph().compile(checkpointer=saver)

        async def one(item: UnderstandItem) -> ItemOutcome:
            cfg: dict[str, Any] = {"configurable": {"thread_id": thread_id(item, run_fingerprint)},
                                   "max_concurrency": max(1, len(context.views)),
                                   "recursion_limit": RECURSION_LIMIT}
            status, values = await thread_status(graph, cfg)
            if status == "finished" and values.get("status") == "finished":  # a failed item is asked again
                for _ in values.get("results") or []:
                    await call(on_view, item["id"])
                return ItemOutcome(item, _revoted(values, context), reused=True)
            resume = status == "interrupted" and values.get("status") is None
            if resume:
                for _ in values.get("results") or []:
                    await call(on_view, item["id"])
            payload = None if resume else {"item": item, "results": None, "vote": None, "status": None,
                                           "error": None}
            async for update in graph.astream(payload, cfg, context=context, stream_mode="updates"):
                if "assess_view" in update:
                    await call(on_view, item["id"])
            return ItemOutcome(item, dict((await graph.aget_state(cfg)).values), reused=False)

        async def failed(item: UnderstandItem, exc: PortraitcraftError) -> None:
            failures[item["id"]] = ItemOutcome(item, {"item": item, "status": "failed",
                                                      "error": f"{type(exc).__name__}: {exc}"}, reused=False)
            await call(on_item, failures[item["id"]])

        failures: dict[str, ItemOutcome] = {}
        batch = await run_batch(items, one, key=lambda i: i["id"], concurrency=concurrency,
                                on_done=lambda _item, outcome: call(on_item, outcome), on_failed=failed)
    return [batch.results.get(item["id"]) or failures[item["id"]] for item in items]


def _revoted(values: dict[str, Any], context: UnderstandContext) -> dict[str, Any]:
    """A finished item's state with its vote recomputed under the current settings and calibration."""
    try:
        return dict(values, vote=compute_vote(values, context))
    except VoteError as exc:
        return dict(values, vote=None, status="failed", error=str(exc))


__all__ = ["CHECKPOINT_FILE", "ItemOutcome", "build_graph", "compute_vote", "fingerprint", "graph", "run_items",
           "thread_id"]
