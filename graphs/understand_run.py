"""Run Track 1 understanding over many items: the run context (assessor, views, vote settings, calibration,
geometry hints) built from the config, the batch over the graph, and what its votes become (votes-file rows,
predictions). The `understand` commands and the LangGraph Studio entry build their runs here."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from portraitcraft.agents.assessor import Assessor
from portraitcraft.agents.assessor_calibration import Calibration
from portraitcraft.agents.assessor_vote import VoteSettings
from portraitcraft.agents.views import build_views
from portraitcraft.config import PortraitcraftConfig
from portraitcraft.errors import InputError
from portraitcraft.graphs.understand import fingerprint, run_items
from portraitcraft.graphs.understand_state import ItemOutcome, UnderstandContext, UnderstandItem
from portraitcraft.paths import cache_root
from portraitcraft.schemas import ATTRIBUTES, Track1Prediction
from portraitcraft.tools.vlm import VLMClient


def geometry_measure(cfg: PortraitcraftConfig) -> Callable[[str], dict[str, Any]] | None:
    """Image path -> geometry hints from portraitcraft.tools.vision (viewer's frame), or None when hints are off."""
    if not cfg.assessor.geometry_hints:
        return None
    try:
        from portraitcraft.tools.vision import analyze
    except ImportError as exc:  # the vision extra is not installed on this box
        raise InputError(f"assessor.geometry_hints needs portraitcraft.tools.vision, which cannot be imported "
                         f"here ({exc})") from None

    def measure(path: str) -> dict[str, Any]:
        analysis = analyze(path, cfg.vision)
        if analysis.subject is None:
            return {"people": len(analysis.persons)}
        data = analysis.subject.model_dump(mode="json")
        return {k: data.get(k) for k in ("horizontal", "vertical", "crop_level", "facing", "gaze", "people")}

    return measure


def build_understand(cfg: PortraitcraftConfig, calibration: Path | None = None
                     ) -> tuple[UnderstandContext, VLMClient, str]:
    """The run context (assessor, views, vote settings, calibration, geometry), its client and fingerprint.
    The caller closes the client (`run_understand` does)."""
    acfg = cfg.assessor
    views = build_views(flip=acfg.flip, max_pixels=acfg.max_pixels, templates=acfg.templates,
                        option_orders=acfg.option_orders if acfg.permute_options else 1)
    # the views shrink images themselves; the client must not shrink them further than the largest budget
    client_cfg = acfg.model_copy(update={"max_image_pixels": max(acfg.max_pixels)})
    client = VLMClient(client_cfg, cache_dir=cache_root(cfg.run.cache_dir) / "vlm")
    calib_path = calibration or (Path(acfg.calibration) if acfg.calibration else None)
    try:
        context = UnderstandContext(
            assessor=Assessor(acfg, client), views=views, settings=VoteSettings.from_config(acfg),
            calibration=Calibration.load(calib_path) if calib_path else None,
            measure=geometry_measure(cfg),
        )
    except BaseException:
        asyncio.run(client.aclose())
        raise
    return context, client, fingerprint(acfg, views)


async def run_understand(items: Sequence[UnderstandItem], context: UnderstandContext, client: VLMClient, *,
                         run_dir: Path, run_fingerprint: str, concurrency: int,
                         on_view: Callable[[str], Awaitable[None] | None] | None = None,
                         on_item: Callable[[ItemOutcome], Awaitable[None] | None] | None = None,
                         ) -> list[ItemOutcome]:
    """Every item through the graph (resumable from `run_dir`); the client is closed afterwards."""
    try:
        return await run_items(items, context, checkpoint_dir=run_dir, run_fingerprint=run_fingerprint,
                               concurrency=concurrency, on_view=on_view, on_item=on_item)
    finally:
        await client.aclose()


def vote_row(outcome: ItemOutcome, run_fingerprint: str) -> dict[str, Any]:
    """One line of the votes file: the item, every view's answers, the vote."""
    state = outcome.state
    return {"id": outcome.item["id"], "image_path": outcome.item["image_path"], "status": outcome.status,
            "error": state.get("error"), "fingerprint": run_fingerprint, "reused": outcome.reused,
            "hints": state.get("hints"), "views": state.get("results") or [], "vote": state.get("vote")}


def voted(outcomes: Sequence[ItemOutcome]) -> list[ItemOutcome]:
    """The items that finished with a vote."""
    return [o for o in outcomes if o.status == "finished" and o.state.get("vote")]


def validation_records(outcomes: Sequence[ItemOutcome]) -> list[dict[str, Any]]:
    """Votes as train-format prediction records (a validation split: `eval track1` scores them)."""
    return [{"image_path": o.item["image_path"],
             "criteria": {a: {"level": o.state["vote"]["levels"][a]} for a in ATTRIBUTES},
             "total_score": round(o.state["vote"]["total_score"])} for o in voted(outcomes)]


def predictions(outcomes: Sequence[ItemOutcome]) -> list[Track1Prediction]:
    """Votes as Track 1 predictions (an item whose vote has no answer gets "A", counted by `no_answer`)."""
    return [Track1Prediction(image_path=o.item["image_path"], total_score=o.state["vote"]["total_score"],
                             levels={a: o.state["vote"]["levels"][a] for a in ATTRIBUTES},
                             answer=o.state["vote"]["answer"] or "A", scores=o.state["vote"]["attribute_means"])
            for o in voted(outcomes)]


def no_answer(outcomes: Sequence[ItemOutcome]) -> int:
    """Voted items whose vote found no answer (they get the fallback answer)."""
    return sum(o.state["vote"]["answer"] is None for o in voted(outcomes))


__all__ = ["build_understand", "geometry_measure", "no_answer", "predictions", "run_understand",
           "validation_records", "vote_row", "voted"]
