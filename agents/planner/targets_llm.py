"""Composition targets by the configured LLM (`[vision] targets = "llm"`): structured output into
CompositionTargets through tools.vlm (prompt: prompts/planner/targets.j2). The planner falls back to the rule
extractor (agents/planner/targets.py) when this fails; a `phrases` entry the text does not contain is dropped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from portraitcraft.agents.planner.targets import Convention
from portraitcraft.prompts.loader import render_prompt
from portraitcraft.schemas import CompositionTargets

if TYPE_CHECKING:
    from portraitcraft.tools.vlm import VLMClient

TARGETS_PROMPT = "planner/targets.j2"


async def extract_targets_llm(vlm: VLMClient, content: str, composition: str, *,
                              convention: Convention = "strict") -> CompositionTargets:
    """The targets the LLM reads from a description (same type and frame as the rule extractor's).

    Raises:
        VLMError: the endpoint failed or its answer did not validate (the caller falls back to the rules).
    """
    prompt = render_prompt(TARGETS_PROMPT, content=content, composition=composition, convention=convention)
    answer = await vlm.ask(prompt, schema=CompositionTargets)
    text = f"{content}\n{composition}".lower()
    phrases = {k: v for k, v in answer.phrases.items()
               if getattr(answer, k, None) is not None and v and v.lower() in text}
    return answer.model_copy(update={"phrases": phrases})
