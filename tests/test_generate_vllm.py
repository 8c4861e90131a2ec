"""The generate loop with a REAL vLLM CPU server (tiny random Qwen2-VL) as the critic: the run completes and
every finding is schema-valid (random weights: the verdicts are noise, the plumbing is real)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from generate_fixtures import ScriptedDrawer
from test_generate_graph import rows_by_id, run

from portraitcraft.schemas import Finding, Track2Spec
from portraitcraft.tools.vlm import VLMClient

pytest_plugins = ["vllm_server"]
pytestmark = pytest.mark.vllm


async def test_real_vllm_critic_completes_with_schema_valid_findings(tmp_path: Path, vllm_server: Any) -> None:
    specs = [Track2Spec(image_path=f"v{i}.png", content="a woman in a red coat", composition="on the left third")
             for i in range(2)]
    async with VLMClient(vllm_server.endpoint(max_tokens=256, max_retries=1)) as vlm:
        summary, folder = await run(tmp_path, specs, ScriptedDrawer(drafts=[0.8], edits=[0.2, 0.5]), vlm=vlm,
                                    sections={"critic": {"enabled": True, "rules": ["placement", "anatomy"]},
                                              "loop": {"max_rounds": 1}})
        requests = vlm.stats.requests
    assert summary["n_done"] == 2 and summary["n_failed"] == 0
    assert requests >= 4  # two rules on at least two images
    vlm_findings = 0
    for row in rows_by_id(folder).values():
        for h in row["history"]:
            for f in h["findings"]:
                finding = Finding.model_validate(f)
                if finding.source == "vlm":
                    vlm_findings += 1
                    assert finding.rule in {"placement", "anatomy"} and 0 <= finding.confidence <= 1
            for failure in h["failures"]:
                assert failure["source"] in ("vlm", "geometry") and failure["error"]
    assert vlm_findings > 0
