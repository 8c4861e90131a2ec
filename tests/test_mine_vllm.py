"""Mining with a REAL vLLM CPU server (tiny random Qwen2-VL) as the miner: the run completes, every VLM record that
came back is schema-valid, a reply that never validated is recorded on its item, and geometry still mines.

Random weights: the discrepancies are noise. With this two-image prompt the greedy tiny model tends to fill a
string with escaped whitespace until max_tokens, so most replies end as recorded per-item VLM errors; the test
checks that plumbing (request, structured-output schema, re-ask, per-item failure), not content."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from portraitcraft.agents.miner import Discrepancy
from portraitcraft.graphs.mine import run_mining
from portraitcraft.schemas import SubjectFeatures, Track2Spec
from portraitcraft.tools.vlm import VLMClient

pytest_plugins = ["vllm_server"]
pytestmark = pytest.mark.vllm


class _Analysis:
    def __init__(self, side: str) -> None:
        self.subject = SubjectFeatures(box=(0.1, 0.1, 0.5, 0.9), centroid=(0.3, 0.5), horizontal=side,
                                       vertical="upper", thirds_distance=0.05, headroom=0.1)


def test_real_vllm_miner_gives_schema_valid_records(tmp_path: Path, vllm_server: Any) -> None:
    real, gen = tmp_path / "real", tmp_path / "gen"
    real.mkdir()
    gen.mkdir()
    rng = np.random.default_rng(0)
    items = []
    for i in range(2):
        for folder in (real, gen):
            Image.fromarray(rng.integers(0, 255, (96, 64, 3), dtype=np.uint8)).save(folder / f"m{i}.png")
        items.append(Track2Spec(image_path=f"m{i}.png", content="a woman in a red coat",
                                composition="she stands on the left third"))

    async def go() -> Any:
        async with VLMClient(vllm_server.endpoint(max_tokens=384, max_retries=1)) as vlm:
            summary = await run_mining(items, images=real, counterparts=gen, out=tmp_path / "mine", vlm=vlm,
                                       analyze=lambda p: _Analysis("left" if "/real" in p else "right"))
            return summary, vlm.stats.requests

    summary, requests = asyncio.run(go())
    assert summary.n_done == 2 and summary.n_failed == 0
    assert requests >= 2  # one discrepancy request per item (plus naming, when a VLM cluster forms)
    rows = [json.loads(line) for line in (tmp_path / "mine" / "results.jsonl").read_text().splitlines()]
    for row in rows:
        if row["vlm_error"]:  # a reply that never validated is recorded per item (named endpoint), never a crash
            assert vllm_server.model in row["vlm_error"]
            continue
        for d in row["discrepancies"]:
            if d["source"] == "vlm":
                Discrepancy.model_validate({k: d[k] for k in ("aspect", "difference", "instruction")})
    assert any(m["geometry"] == "horizontal" for m in summary.modes)  # geometry mined without the VLM's help
