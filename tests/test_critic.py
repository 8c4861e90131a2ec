"""The critic: VLM rules (one per request, batched, logprob), geometry deciding where it measures, heuristics,
faults recorded instead of raised."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from fake_vlm import make_client
from generate_fixtures import figure_analysis, figure_geometry, paint
from PIL import ImageFilter

from portraitcraft.agents.critic import Critic, merge_findings
from portraitcraft.config import CriticConfig
from portraitcraft.prompts.rules import load_rules
from portraitcraft.schemas import CompositionTargets, Finding

CONTENT = "A woman in a red coat."
COMPOSITION = "The subject is placed on the left third of the frame."
TARGETS = CompositionTargets(horizontal="left", phrases={"horizontal": "on the left third"})


def rule_of(body: dict[str, Any]) -> str:
    """Which rule a critic request asks about (its title line)."""
    text = json.dumps(body["messages"])
    for rule in load_rules():
        if f"check: {rule.title}" in text:
            return rule.id
    return "?"


def cfg(**kw: Any) -> CriticConfig:
    return CriticConfig(**{"rules": [], "geometry": False, "heuristics": False, **kw})


@pytest.fixture()
def picture(tmp_path: Path) -> Path:
    path = tmp_path / "right.png"
    paint(120, 90, 0.75).save(path)  # the figure on the RIGHT third
    return path


async def test_geometry_decides_a_left_right_disagreement(fake_vlm: Any, picture: Path) -> None:
    fake_vlm.script.default(fn=lambda body: {"detected": False, "evidence": "she is on the left", "instruction": ""})
    rules = load_rules(names=["placement", "anatomy"])
    async with make_client(fake_vlm) as vlm:
        critic = Critic(rules, cfg(geometry=True), vlm=vlm, analyze=figure_analysis, geometry=figure_geometry)
        out = await critic.critique(picture, CONTENT, COMPOSITION, TARGETS)
    assert out.vlm_calls == 2 and {rule_of(r.body) for r in fake_vlm.chat_requests} == {"placement", "anatomy"}
    assert not out.passed
    [geo] = [f for f in out.findings if f.source == "geometry"]
    assert geo.rule == "horizontal" and geo.detected and geo.measured == "right"
    assert "left" in geo.instruction and geo.severity == 5  # filled from the placement rule's template
    assert not any(f.rule == "placement" for f in out.findings)  # the VLM's verdict was overruled
    [d] = out.disagreements
    assert d["rule"] == "placement" and d["vlm_detected"] is False and d["geometry_detected"] is True
    assert d["decided_by"] == "geometry"


def test_unconfident_geometry_does_not_overrule() -> None:
    rules = load_rules(names=["placement"])
    vlm = [Finding(rule="placement", detected=True, source="vlm")]
    geo = [Finding(rule="horizontal", detected=False, confidence=0.2, source="geometry")]
    effective, disagreements = merge_findings(vlm, geo, [], rules, geometry_min_confidence=0.5)
    assert disagreements == [] and {f.source for f in effective} == {"vlm", "geometry"}


async def test_faults_are_recorded_and_the_critique_completes(fake_vlm: Any, picture: Path) -> None:
    fake_vlm.script.fault("status", status=503, times=10)  # more than the retries of one request
    fake_vlm.script.default({"detected": False})
    rules = load_rules(names=["placement"])
    async with make_client(fake_vlm, max_retries=1) as vlm:
        out = await Critic(rules, cfg(), vlm=vlm).critique(picture, CONTENT, COMPOSITION, TARGETS)
    assert out.passed and out.findings == []
    [failure] = out.failures
    assert failure["source"] == "vlm" and failure["rule"] == "placement" and "503" in failure["error"]
    fake_vlm.reset()
    fake_vlm.script.push("this is not json").push("still not json")
    async with make_client(fake_vlm) as vlm:
        out = await Critic(rules, cfg(), vlm=vlm).critique(picture, CONTENT, COMPOSITION, TARGETS)
    assert out.failures and out.failures[0]["rule"] == "placement"


async def test_batched_rules_share_a_request(fake_vlm: Any, picture: Path) -> None:
    def reply(body: dict[str, Any]) -> dict[str, Any]:
        return {"verdicts": [{"rule": "placement", "detected": True, "evidence": "on the right",
                              "instruction": "move her to the left third"}]}  # anatomy missing on purpose
    fake_vlm.script.default(fn=reply)
    rules = load_rules(names=["placement", "anatomy"])
    async with make_client(fake_vlm) as vlm:
        out = await Critic(rules, cfg(batch_size=4), vlm=vlm).critique(picture, CONTENT, COMPOSITION, TARGETS)
    assert len(fake_vlm.chat_requests) == 1 and out.vlm_calls == 1
    [f] = out.findings
    assert f.rule == "placement" and f.detected and f.instruction == "move her to the left third"
    assert f.frame == "viewer" and f.expected == "left"
    assert out.failures == [{"source": "vlm", "rule": "anatomy", "error": "the batched reply had no verdict"}]


async def test_logprob_mode_gives_confidence(fake_vlm: Any, picture: Path) -> None:
    fake_vlm.script.push("yes", top_logprobs=[{"yes": math.log(0.3), "no": math.log(0.7)}])
    rules = load_rules(names=["placement"])
    async with make_client(fake_vlm) as vlm:
        out = await Critic(rules, cfg(mode="logprob"), vlm=vlm).critique(picture, CONTENT, COMPOSITION, TARGETS)
    [f] = out.findings
    assert not f.detected and f.confidence == pytest.approx(0.7, abs=1e-3) and out.passed
    assert fake_vlm.chat_requests[0].body.get("logprobs") is True


async def test_no_vlm_runs_geometry_and_heuristics(tmp_path: Path) -> None:
    sharp = tmp_path / "sharp.png"
    paint(160, 120, 0.3).save(sharp)
    blurred = tmp_path / "blurred.png"
    paint(160, 120, 0.3).filter(ImageFilter.GaussianBlur(8)).save(blurred)
    critic = Critic(load_rules(), CriticConfig(enabled=False), vlm=object(),  # type: ignore[arg-type]
                    analyze=figure_analysis, geometry=figure_geometry)
    assert critic.vlm is None
    ok = await critic.critique(sharp, CONTENT, COMPOSITION, TARGETS)
    assert ok.passed, ok.findings
    assert {f.source for f in ok.findings} == {"geometry", "heuristic"}
    bad = await critic.critique(blurred, CONTENT, COMPOSITION, TARGETS)
    [sharpness] = [f for f in bad.findings if f.rule == "sharpness"]
    assert sharpness.detected and not bad.passed and "Laplacian" in sharpness.evidence
