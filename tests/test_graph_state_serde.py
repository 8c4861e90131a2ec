"""What graph state will hold survives LangGraph's REAL checkpoint serializer, default and strict msgpack.

State values are plain data: `model_dump()` dicts of Plan / Finding / targets, `JudgeResult.to_dict()`, image
paths, counters. (A pydantic round trip proves nothing here: through JsonPlusSerializer a Plan object reloads
with a "will be blocked in a future version" warning, and as a bare dict under strict msgpack.)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from portraitcraft.agents.judge import JudgeResult
from portraitcraft.agents.planner import Plan, Planner
from portraitcraft.schemas import CompositionTargets, Finding, Track2Spec

SERIALIZERS = {
    "default": lambda: JsonPlusSerializer(),
    "strict": lambda: JsonPlusSerializer(allowed_msgpack_modules=None),  # LANGGRAPH_STRICT_MSGPACK=true
}


def item_state() -> tuple[dict[str, Any], Plan, JudgeResult, Finding]:
    spec = Track2Spec(image_path="images_03/a b.jpg", content="A surfer walks on the left third at dusk.",
                      composition="Soft light from the right; the horizon is low.")
    plan = Planner(seed=7).plan(spec)
    judged = JudgeResult(81.5, 70.25, 3.0, 4.5, "clean hands", "subject on the left third", "logprob", "logprobs", 0)
    finding = Finding(rule="horizontal", detected=True, confidence=0.75, evidence="nose at x=0.62",
                      expected="left", measured=0.62, frame="viewer", instruction="move the subject left",
                      source="geometry")
    targets = CompositionTargets(horizontal="left", people=1, phrases={"horizontal": "on the left third"})
    state = {
        "id": spec.id,
        "plan": plan.model_dump(mode="json"),
        "targets": targets.model_dump(mode="json"),
        "judge": judged.to_dict(),
        "history": [{"image": "items/a_b/round_0.png", "findings": [finding.model_dump(mode="json")],
                     "action": "edit", "seed": 7}],
        "image_path": Path("items/a_b/round_1.png"),
        "rounds": 1,
        "passed": False,
        "status": "running",
    }
    return state, plan, judged, finding


@pytest.mark.parametrize("name", list(SERIALIZERS))
def test_state_round_trips_unchanged_and_without_warnings(name: str, caplog: pytest.LogCaptureFixture) -> None:
    state, plan, judged, finding = item_state()
    serde = SERIALIZERS[name]()
    with caplog.at_level(logging.DEBUG):
        loaded = serde.loads_typed(serde.dumps_typed(state))
    assert loaded == state
    assert not [r for r in caplog.records if "deserializ" in r.getMessage().lower()]  # no blocked/unregistered type
    assert Plan.model_validate(loaded["plan"]) == plan
    assert JudgeResult(**loaded["judge"]) == judged
    assert Finding.model_validate(loaded["history"][0]["findings"][0]) == finding
    assert isinstance(loaded["image_path"], Path)
