"""LangGraph Studio / `langgraph dev` entries (langgraph.json): each graph runs ONE item from plain JSON.

The graphs the CLI runs (graphs/generate.py, graphs/understand.py) take a runtime context of live objects
(config, run folder, critic, editor, GPU drawer, VLM clients) that a client cannot send. These entries take a
JSON context instead, build the live one on the server with the builders the CLI uses, run the item through
the same batch driver (results row, final image, pairs and checkpoints in the run folder) and return its
outcome:

    generate   context {"config", "run_dir", "init_images", "strategy", "max_rounds"}
               input   {"item": {"image_path", "content_description", "composition_analysis"}}
               output  {"id", "status" (done | failed), "passed", "rounds", "final_image", "verdict", "error",
                        "run_dir"}
    understand context {"config", "run_dir", "images", "calibration"}
               input   {"item": Track 1 test item {"image_path", "question", "options"}}
               output  {"id", "status" (finished | failed), "levels", "total_score", "answer", "error", "run_dir"}

The item runs on its own thread and event loop, so the server stays responsive during model work; the models
do synchronous file and tensor work there, so start the dev server with `langgraph dev --allow-blocking`
(its blocking-call detector otherwise stops the run). Progress events of the inner graph come out of the
`custom` stream mode. A finished item in `run_dir` is answered from its results row (use another `run_dir`
to draw it again).
"""

import asyncio
from pathlib import Path
from typing import Any, Literal

from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from typing_extensions import TypedDict

from portraitcraft.bounded import set_max_input_mb
from portraitcraft.config import PortraitcraftConfig, load_config
from portraitcraft.errors import PortraitcraftError

DEFAULT_RUN_DIR = "studio"
"""Where an entry writes when the context names no `run_dir`: `<run.out_dir>/studio`."""


class GenerateItem(TypedDict, total=False):
    """A Track 2 item as the benchmark writes it."""

    image_path: str
    content_description: str
    composition_analysis: str


class GenerateInput(TypedDict):
    item: GenerateItem


class GenerateOutput(TypedDict, total=False):
    id: str
    status: str
    """done | failed"""
    passed: bool
    rounds: int
    final_image: str | None
    """absolute path of the final image (the run folder's submission copy)"""
    verdict: str | None
    error: str | None
    run_dir: str


class GenerateStudioState(GenerateInput, GenerateOutput, total=False):
    """Input and outcome of one generate item."""


class GenerateStudioContext(BaseModel):
    """The JSON context of the `generate` entry."""

    model_config = ConfigDict(extra="forbid")

    config: str | None = Field(None, description="TOML config file (e.g. configs/offline.toml); none = defaults")
    run_dir: str | None = Field(None, description="run folder (reused: finished items are answered from it); "
                                "default <run.out_dir>/studio")
    init_images: str | None = Field(None, description="folder of images to start from instead of drafting")
    strategy: Literal["loop", "best-of-n", "one-shot"] = Field("loop", description="loop | best-of-n | one-shot")
    max_rounds: int | None = Field(None, ge=0, description="corrections per item (loop.max_rounds)")


class UnderstandInput(TypedDict):
    item: dict[str, Any]
    """a Track 1 test item: image_path, question, options (criteria / total_score / answer are ignored)"""


class UnderstandOutput(TypedDict, total=False):
    id: str
    status: str
    """finished | failed"""
    levels: dict[str, str] | None
    total_score: float | None
    answer: str | None
    error: str | None
    run_dir: str


class UnderstandStudioState(UnderstandInput, UnderstandOutput, total=False):
    """Input and outcome of one understanding item."""


class UnderstandStudioContext(BaseModel):
    """The JSON context of the `understand` entry."""

    model_config = ConfigDict(extra="forbid")

    config: str | None = Field(None, description="TOML config file with the [assessor] endpoint")
    run_dir: str | None = Field(None, description="checkpoint folder (default <run.out_dir>/studio)")
    images: str | None = Field(None, description="folder the item's image_path is resolved in (root, then "
                               "images_00..10); default the current folder")
    calibration: str | None = Field(None, description="calib.json from `understand calibrate`")


def _context(runtime: Runtime[Any], schema: type[BaseModel]) -> Any:
    """The run's JSON context, validated (the server passes a dict, an instance, or nothing)."""
    given = runtime.context
    if isinstance(given, schema):
        return given
    return schema.model_validate(dict(given or {}))


def _config(path: str | None, overrides: dict[str, Any]) -> PortraitcraftConfig:
    cfg = load_config(path, overrides)
    set_max_input_mb(cfg.limits.max_input_mb)
    return cfg


def _run_dir(cfg: PortraitcraftConfig, given: str | None) -> Path:
    return Path(given) if given else Path(cfg.run.out_dir) / DEFAULT_RUN_DIR


def _writer() -> Any:
    try:
        return get_stream_writer()
    except RuntimeError:  # not inside a run (a direct call)
        return lambda _chunk: None


async def _on_own_loop(work: Any) -> Any:
    """Run the coroutine function `work` on a fresh event loop in a worker thread (model work stays off the
    server's loop)."""
    return await asyncio.to_thread(asyncio.run, work())


# ------------------------------------------------------------------------------------------------ generate


async def _generate_item(ctx: GenerateStudioContext, item: dict[str, Any], emit: Any) -> GenerateOutput:
    from portraitcraft.data import parse_items
    from portraitcraft.graphs.generate_run import build_context, build_drawer, model_clients, run_items
    from portraitcraft.runs import RunFolder

    parsed = parse_items([item], "track2")
    if parsed.problems:
        return {"status": "failed", "error": "; ".join(str(p) for p in parsed.problems), "passed": False,
                "rounds": 0, "final_image": None}
    (spec,) = parsed.items
    strategy = ctx.strategy
    cfg = _config(ctx.config, {"loop": {k: v for k, v in (("max_rounds", ctx.max_rounds),
                                                          ("strategy", strategy)) if v is not None}})
    out = _run_dir(cfg, ctx.run_dir)
    run = RunFolder.create(out.parent, out.name, config=cfg, command=["langgraph", "generate", spec.id],
                           resume=True)
    init_images = Path(ctx.init_images) if ctx.init_images else None
    if init_images is not None and not init_images.is_dir():
        return {"id": spec.id, "status": "failed", "error": f"init_images {init_images}: not a folder",
                "passed": False, "rounds": 0, "final_image": None, "run_dir": str(run.root)}
    drawer = build_drawer(cfg)
    try:
        async with model_clients(cfg) as (vlm, judge):
            live = build_context(cfg, run, drawer=drawer, vlm=vlm, init_images=init_images, strategy=strategy,
                                 judge=judge, on_event=lambda kind, data: emit({"event": kind, **data}))
            await run_items(live, [spec])
    finally:
        await drawer.aclose()
    rows = [r for r in run.results.rows() if r.get("id") == spec.id]
    row = rows[-1] if rows else {"status": "failed", "error": "no results row was written"}
    final = row.get("final_image")
    return {"id": spec.id, "status": row.get("status", "failed"), "passed": bool(row.get("passed")),
            "rounds": int(row.get("rounds") or 0), "final_image": str(run.root / final) if final else None,
            "verdict": row.get("verdict"), "error": row.get("error"), "run_dir": str(run.root)}


async def run_generate_item(state: GenerateStudioState, runtime: Runtime[GenerateStudioContext]) -> GenerateOutput:
    """Build the live context from the JSON one and run the item through the critique-correct loop."""
    emit = _writer()
    try:
        ctx = _context(runtime, GenerateStudioContext)
        return await _on_own_loop(lambda: _generate_item(ctx, dict(state.get("item") or {}), emit))
    except (PortraitcraftError, ValidationError) as exc:
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}", "passed": False, "rounds": 0,
                "final_image": None}


def build_generate_entry() -> StateGraph:
    graph = StateGraph(GenerateStudioState, context_schema=GenerateStudioContext, input_schema=GenerateInput,
                       output_schema=GenerateOutput)
    graph.add_node("run_generate_item", run_generate_item)
    graph.add_edge(START, "run_generate_item")
    graph.add_edge("run_generate_item", END)
    return graph


# ------------------------------------------------------------------------------------------------ understand


async def _understand_item(ctx: UnderstandStudioContext, item: dict[str, Any]) -> UnderstandOutput:
    from portraitcraft.data import resolve_image
    from portraitcraft.graphs.understand_run import build_understand, run_understand
    from portraitcraft.ids import item_key

    image_path = item.get("image_path")
    if not isinstance(image_path, str) or not image_path:
        return {"status": "failed", "error": "item.image_path: a non-empty string is required"}
    cfg = _config(ctx.config, {})
    out = _run_dir(cfg, ctx.run_dir)
    found = resolve_image(Path(ctx.images or "."), image_path)
    options = item.get("options") if isinstance(item.get("options"), dict) else {}
    one = {"id": item_key(image_path), "image_path": image_path, "image": str(found) if found else None,
           "task": "track1", "question": item.get("question") or None, "options": dict(options or {}),
           "format": "single"}
    context, client, fingerprint = build_understand(cfg, Path(ctx.calibration) if ctx.calibration else None)
    (outcome,) = await run_understand([one], context, client, run_dir=out, run_fingerprint=fingerprint,
                                      concurrency=1)
    vote = outcome.state.get("vote") or {}
    return {"id": one["id"], "status": outcome.status, "levels": vote.get("levels"),
            "total_score": vote.get("total_score"), "answer": vote.get("answer"),
            "error": outcome.state.get("error"), "run_dir": str(out)}


async def run_understand_item(state: UnderstandStudioState,
                              runtime: Runtime[UnderstandStudioContext]) -> UnderstandOutput:
    """Build the assessor context from the JSON one and vote the item's views."""
    try:
        ctx = _context(runtime, UnderstandStudioContext)
        return await _on_own_loop(lambda: _understand_item(ctx, dict(state.get("item") or {})))
    except (PortraitcraftError, ValidationError) as exc:
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}


def build_understand_entry() -> StateGraph:
    graph = StateGraph(UnderstandStudioState, context_schema=UnderstandStudioContext, input_schema=UnderstandInput,
                       output_schema=UnderstandOutput)
    graph.add_node("run_understand_item", run_understand_item)
    graph.add_edge(START, "run_understand_item")
    graph.add_edge("run_understand_item", END)
    return graph


generate = build_generate_entry().compile()
"""langgraph.json `generate`: one Track 2 item through the critique-correct loop, from plain JSON."""

understand = build_understand_entry().compile()
"""langgraph.json `understand`: one Track 1 item through the views and the vote, from plain JSON."""

__all__ = ["GenerateStudioContext", "UnderstandStudioContext", "generate", "understand"]

