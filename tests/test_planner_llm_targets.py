"""The LLM path for targets (`[vision] targets = "llm" | "hybrid"`) against the scripted fake VLM server:
verbatim quotes or nothing, and the rules cross-checking the LLM (agree -> more confident, disagree -> not
enforced, recorded)."""

from __future__ import annotations

from typing import Any

from fake_vlm import make_client

from portraitcraft.agents.planner import Planner
from portraitcraft.schemas import Track2Spec

CONTENT = ("A young woman in a mustard raincoat stands on a wet cobbled street. She looks off-camera to her left, "
           "holding a red umbrella.")
COMPOSITION = ("She is placed on the right third of the frame. Her gaze leads the eye toward the left edge of the "
               "frame. She is framed from the waist up.")
SPEC = Track2Spec(image_path="rain.jpg", content=CONTENT, composition=COMPOSITION)


def item(value: Any, quote: str, frame: str = "viewer") -> dict[str, Any]:
    return {"value": value, "quote": quote, "frame": frame}


async def test_hybrid_agreement_disagreement_and_llm_only(fake_vlm: Any) -> None:
    rules = Planner().plan(SPEC).targets
    assert (rules.horizontal, rules.gaze, rules.crop_level) == ("right", "left", "half-body")
    fake_vlm.script.push({
        "horizontal": item("right", "placed on the right third of the frame"),  # agrees
        "gaze": item("right", "looks off-camera to her left", "subject"),  # disagrees with the rules
        "crop_level": item("full-body", "framed from the knees"),  # a quote that is not in the text
        "orientation": item("portrait", "stands on a wet cobbled street"),  # only the LLM reads it
        "people": item(1, "A young woman"),
    })
    async with make_client(fake_vlm) as vlm:
        plan = await Planner().aplan(SPEC, vlm)  # an endpoint and no mode set: hybrid
    t = plan.targets
    assert t.horizontal == "right" and t.enforced("horizontal")
    assert t.evidence["horizontal"].confidence > rules.evidence["horizontal"].confidence
    assert "rules" in t.evidence["horizontal"].source and "llm" in t.evidence["horizontal"].source
    assert t.gaze == "left" and not t.enforced("gaze")
    assert t.evidence["gaze"].note == "rules read left, the LLM read right: not enforced"
    assert t.crop_level == "half-body" and t.enforced("crop_level")  # the invented quote dropped the LLM's
    assert t.orientation == "portrait" and not t.enforced("orientation")
    assert t.evidence["orientation"].note == "only the LLM read it"
    span = t.evidence["orientation"].spans[0]
    assert span[2] == "content" and CONTENT[span[0]:span[1]] == "stands on a wet cobbled street"
    sent = fake_vlm.chat_requests[0].body["messages"][-1]["content"]
    text = sent if isinstance(sent, str) else " ".join(p.get("text", "") for p in sent)
    assert CONTENT in text and COMPOSITION in text and "quote" in text


async def test_llm_mode_uses_the_llm_and_rules_mode_never_asks(fake_vlm: Any) -> None:
    fake_vlm.script.push({"horizontal": item("left", "She is placed on the right third of the frame"),
                          "gaze": item("left", "toward the left edge of the frame")})
    async with make_client(fake_vlm) as vlm:
        llm = await Planner(targets_mode="llm").aplan(SPEC, vlm)
        rules = await Planner(targets_mode="rules").aplan(SPEC, vlm)
    assert llm.targets.horizontal == "left" and llm.targets.evidence["horizontal"].source.startswith("llm")
    assert llm.targets.crop_level is None  # the LLM said nothing about it
    assert rules.targets.horizontal == "right" and len(fake_vlm.chat_requests) == 1
