"""The LLM targets path against a REAL vLLM CPU server (tiny random Qwen2-VL): the structured-output schema
is accepted and parsed, every target kept has its verbatim quote in the text, and hybrid planning finishes
(random weights: the values are noise, the plumbing is real)."""

from __future__ import annotations

from typing import Any

import pytest

from portraitcraft.agents.planner import Planner
from portraitcraft.agents.planner.targets_llm import extract_targets_llm
from portraitcraft.schemas import Track2Spec
from portraitcraft.tools.vlm import VLMClient

pytest_plugins = ["vllm_server"]
pytestmark = pytest.mark.vllm

CONTENT = "A young woman in a red coat looks off-camera to her left."
COMPOSITION = "She is placed on the right third of the frame, framed from the waist up."


async def test_real_vllm_targets_keep_only_verbatim_quotes(vllm_server: Any) -> None:
    async with VLMClient(vllm_server.endpoint(max_tokens=384, max_retries=1)) as vlm:
        llm = await extract_targets_llm(vlm, CONTENT, COMPOSITION)
        plan = await Planner().aplan(Track2Spec(image_path="v.png", content=CONTENT, composition=COMPOSITION), vlm)
    for key, ev in llm.evidence.items():
        start, end, section = ev.spans[0]
        text = CONTENT if section == "content" else COMPOSITION
        assert text[start:end] and ev.source.startswith("llm"), key
    assert plan.targets.horizontal == "right"  # the rules keep their value; the LLM can only confirm or doubt it
