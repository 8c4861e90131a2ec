"""The run context of the understanding graph, built from a configuration: the one builder that
`portraitcraft understand` and the LangGraph Studio entry (graphs/studio.py) both call."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from portraitcraft.config import PortraitcraftConfig
from portraitcraft.errors import InputError
from portraitcraft.graphs.understand_state import UnderstandContext
from portraitcraft.paths import cache_root


def geometry_measure(cfg: PortraitcraftConfig) -> Any:
    """Image path -> geometry hints from portraitcraft.tools.vision (viewer's frame), or None when hints are off."""
    if not cfg.assessor.geometry_hints:
        return None
    try:
        from portraitcraft.tools.vision import analyze
    except ImportError as exc:  # the vision extra is not installed on this box
        raise InputError(f"assessor.geometry_hints needs portraitcraft.tools.vision, which cannot be imported here "
                         f"({exc})") from None

    def measure(path: str) -> dict[str, Any]:
        analysis = analyze(path, cfg.vision)
        if analysis.subject is None:
            return {"people": len(analysis.persons)}
        data = analysis.subject.model_dump(mode="json")
        return {k: data.get(k) for k in ("horizontal", "vertical", "crop_level", "facing", "gaze", "people")}

    return measure


def build_understand_context(cfg: PortraitcraftConfig, calibration: Path | None) -> tuple[UnderstandContext, Any, str]:
    """The run context (assessor, views, vote settings, calibration, geometry), its VLM client (close it with
    `await client.aclose()`) and the run fingerprint."""
    from portraitcraft.agents.assessor import Assessor
    from portraitcraft.agents.assessor_calibration import Calibration
    from portraitcraft.agents.assessor_vote import VoteSettings
    from portraitcraft.agents.views import build_views
    from portraitcraft.graphs.understand import fingerprint
    from portraitcraft.tools.vlm import VLMClient

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
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run(client.aclose())
        raise
    return context, client, fingerprint(acfg, views)


__all__ = ["build_understand_context", "geometry_measure"]
