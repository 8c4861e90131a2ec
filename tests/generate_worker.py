"""A generate run in its own process (for the kill-and-resume test): scripted drawer with delays, no VLM.

    python tests/generate_worker.py OUT N_ITEMS  -> runs (or resumes) OUT, writes OUT/calls-<pid>.json at the end
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from generate_fixtures import ScriptedDrawer, figure_analysis, figure_geometry

from portraitcraft.config import load_config
from portraitcraft.graphs.generate_run import build_context, run_items
from portraitcraft.runs import RunFolder
from portraitcraft.schemas import CompositionTargets, Track2Spec


async def main(out: Path, n: int) -> None:
    cfg = load_config(overrides={"critic": {"enabled": False}, "planner": {"long_side": 96},
                                 "loop": {"max_rounds": 2}, "run": {"concurrency": 2}})
    run = RunFolder.create(out.parent, out.name, config=cfg, resume=True)
    drawer = ScriptedDrawer(drafts=[0.8], edits=[0.2] * (3 * n), delay=0.25)
    ctx = build_context(cfg, run, drawer=drawer, analyze=figure_analysis, geometry=figure_geometry, reframe=False,
                        targets_of=lambda s, p: CompositionTargets(horizontal="left"))
    specs = [Track2Spec(image_path=f"item{i:02d}.jpg", content=f"a woman {i}", composition="left third")
             for i in range(n)]
    await run_items(ctx, specs)
    (out / f"calls-{os.getpid()}.json").write_text(json.dumps(drawer.calls))


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))
