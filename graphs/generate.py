"""The critique-correct generate graph: plan -> draft -> critique -> (edit -> critique)* -> finalize.

One LangGraph thread per item (thread_id = item id). Nodes read the state, call one step
(graphs/generate_steps.py) and route with `Command`; the loop's stop rule is `stop_verdict`, one pure function.
Run many items with graphs/generate_run.py.
"""

from __future__ import annotations

from typing import Literal

from langgraph.graph import START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Command

from portraitcraft.errors import PortraitcraftError
from portraitcraft.graphs import generate_steps as steps
from portraitcraft.graphs.generate_state import GenerateContext, GenerateState

ITEM_ERRORS = (PortraitcraftError,)
"""What makes ONE item fail (bad input, an unreadable image, a backend or endpoint refusing it: all
`PortraitcraftError`s); the others go on. Anything else is a bug and stops the run (resume continues it)."""


def stop_verdict(*, strategy: str, passed: bool, corrections: int, max_rounds: int) -> str | None:
    """Why the loop stops after a critique, or None to go on editing.

    Args:
        strategy: loop | best-of-n | one-shot.
        passed: the image just critiqued passed.
        corrections: images made after the first one so far (edits, reframes, regenerations, samples).
        max_rounds: `loop.max_rounds` (best-of-n draws max_rounds + 1 samples: the loop's image budget).
    """
    if strategy == "one-shot":
        return "passed" if passed else "one-shot"
    if strategy == "best-of-n":
        return "samples-done" if corrections >= max_rounds else None
    if passed:
        return "passed"
    if corrections >= max_rounds:
        return "max-rounds"
    return None


async def plan(state: GenerateState, runtime: Runtime[GenerateContext]) -> Command[Literal["draft", "finalize"]]:
    try:
        update = await steps.plan_item(state, runtime.context)
    except ITEM_ERRORS as exc:
        return Command(update=steps.failure_update(exc), goto="finalize")
    return Command(update=update, goto="draft")


async def draft(state: GenerateState, runtime: Runtime[GenerateContext]) -> Command[Literal["critique", "finalize"]]:
    try:
        update = await steps.draw_first(state, runtime.context)
    except ITEM_ERRORS as exc:
        return Command(update=steps.failure_update(exc), goto="finalize")
    return Command(update=update, goto="critique")


async def critique(state: GenerateState, runtime: Runtime[GenerateContext]) -> Command[Literal["edit", "finalize"]]:
    ctx = runtime.context
    update = await steps.critique_last(state, ctx)
    last = update["rounds"][-1]  # the critiqued round; its index = images made after the first one
    verdict = stop_verdict(strategy=ctx.strategy, passed=bool(last["passed"]), corrections=last["round"],
                           max_rounds=ctx.max_rounds)
    return Command(update={**update, "verdict": verdict}, goto="finalize" if verdict else "edit")


async def edit(state: GenerateState, runtime: Runtime[GenerateContext]) -> Command[Literal["critique", "finalize"]]:
    ctx = runtime.context
    try:
        update = await steps.apply_plan(state, ctx, steps.next_plan(state, ctx))
    except ITEM_ERRORS as exc:  # the item keeps its best image so far; the error is recorded
        return Command(update={"error": f"{type(exc).__name__}: {exc}", "verdict": "edit-failed"}, goto="finalize")
    return Command(update=update, goto="critique")


async def finalize(state: GenerateState, runtime: Runtime[GenerateContext]) -> dict[str, object]:
    return await steps.finalize_item(state, runtime.context)


def build_graph() -> StateGraph:
    """The uncompiled graph (compile with a checkpointer: `build_graph().compile(checkpointer=saver)`)."""
    graph = StateGraph(GenerateState, context_schema=GenerateContext)
    graph.add_node("plan", plan)
    graph.add_node("draft", draft)
    graph.add_node("critique", critique)
    graph.add_node("edit", edit)
    graph.add_node("finalize", finalize)
    graph.add_edge(START, "plan")
    graph.set_finish_point("finalize")
    return graph


graph = build_graph().compile()
"""The compiled graph without a checkpointer, for LangGraph Studio (langgraph.json)."""

__all__ = ["build_graph", "graph", "stop_verdict"]
