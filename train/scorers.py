"""Reward objectives for the reward server, one pluggable scorer each, and their group-wise combination.

Objectives (PortraitRL, methods.md): `geometry` (the geometric critic's pass ratio: share of measured
targets met), `rules` (the VLM rule critic's pass ratio: share of applicable rules not fired), `content` and
`composition` (the judge's 0-100 scores). Each is z-scored within its group, (s - mean) / std over the
group's images (population std; a constant objective, a single image or an image the scorer could not
measure gives 0), then combined with weights renormalised over the objectives actually scored.

A scorer whose modules are not in this checkout (the vision or critic work not merged, an extra missing) is
skipped with a message naming what is missing; the server reports which objectives it serves.
"""

from __future__ import annotations

import asyncio
import functools
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from portraitcraft.config import PortraitcraftConfig

OBJECTIVES = ("geometry", "rules", "content", "composition")
_SECTIONS = re.compile(r"\[Content\]\s*(?P<content>.*?)\s*(?:\[Composition\]\s*(?P<composition>.*))?\Z", re.S)


@dataclass
class Sample:
    """One image to score with its description."""

    prompt: str
    content: str
    composition: str
    image: Image.Image


def split_prompt(prompt: str) -> tuple[str, str]:
    """(content, composition) from a prompt in the prompt builder's layout; else (prompt, "").

    Example:
        >>> split_prompt("Generate an image.\\n\\n[Content]\\nA man.\\n\\n[Composition]\\nLeft third.")
        ('A man.', 'Left third.')
    """
    m = _SECTIONS.search(prompt)
    if not m:
        return prompt.strip(), ""
    return m.group("content").strip(), (m.group("composition") or "").strip()


class Scorer(Protocol):
    """Scores one sample on its objectives; None for an objective it cannot measure on this image."""

    name: str
    objectives: tuple[str, ...]

    async def score(self, sample: Sample) -> dict[str, float | None]: ...

    async def aclose(self) -> None: ...


def _pass_ratio(findings: Sequence[Any]) -> float | None:
    return None if not findings else sum(1 for f in findings if not f.detected) / len(findings)


class JudgeScorer:
    """`content` and `composition` from portraitcraft.agents.judge (the VLM judge; its client caches replies)."""

    name = "judge"
    objectives = ("content", "composition")

    def __init__(self, judge: Any, client: Any = None) -> None:
        self.judge, self.client = judge, client

    async def score(self, sample: Sample) -> dict[str, float | None]:
        result = await self.judge.score(sample.image, sample.content, sample.composition)
        return {"content": result.content, "composition": result.composition}

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.aclose()


class GeometryScorer:
    """`geometry`: tools.vision.analyze + agents.geometry_critic against the description's targets."""

    name = "geometry"
    objectives = ("geometry",)

    def __init__(self, analyze: Any, critique: Any, extract_targets: Any) -> None:
        self.analyze, self.critique, self.extract_targets = analyze, critique, extract_targets

    async def score(self, sample: Sample) -> dict[str, float | None]:
        targets = self.extract_targets(sample.content, sample.composition)
        analysis = await asyncio.to_thread(self.analyze, sample.image)
        return {"geometry": _pass_ratio(self.critique(targets, analysis))}

    async def aclose(self) -> None:
        return None


class RuleScorer:
    """`rules`: portraitcraft.agents.critic's VLM findings (geometry and heuristics are other objectives, or off)."""

    name = "rules"
    objectives = ("rules",)

    def __init__(self, critic: Any, extract_targets: Any, client: Any = None) -> None:
        self.critic, self.extract_targets, self.client = critic, extract_targets, client

    async def score(self, sample: Sample) -> dict[str, float | None]:
        targets = self.extract_targets(sample.content, sample.composition) if self.extract_targets else None
        with tempfile.TemporaryDirectory(prefix="reward-") as tmp:  # the critic reads an image file
            path = Path(tmp) / "image.png"
            sample.image.save(path)
            critique = await self.critic.critique(path, sample.content, sample.composition, targets)
        return {"rules": _pass_ratio([f for f in critique.findings if getattr(f, "source", "vlm") == "vlm"])}

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.aclose()


@dataclass
class ScorerSet:
    """The scorers that could be built, and a message for each objective that could not."""

    scorers: list[Any]
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def objectives(self) -> list[str]:
        return [o for s in self.scorers for o in s.objectives]

    async def aclose(self) -> None:
        for scorer in self.scorers:
            await scorer.aclose()


def _targets_extractor() -> Any:
    try:
        from portraitcraft.agents.planner.targets import extract_targets
    except ImportError:
        return None
    return extract_targets


def build_scorers(cfg: PortraitcraftConfig) -> ScorerSet:
    """The scorers for every objective with a weight above 0 in `[reward] weights` (others are not built)."""
    from portraitcraft.tools.vlm import VLMClient

    wanted = {k for k, w in cfg.reward.weights.items() if w > 0}
    out = ScorerSet(scorers=[])
    from portraitcraft.paths import cache_root

    cache_dir = cache_root(cfg.run.cache_dir) / "vlm"
    extract = _targets_extractor()
    if "geometry" in wanted:
        try:
            from portraitcraft.agents.geometry_critic import critique_geometry
            from portraitcraft.tools.vision import analyze
        except ImportError as exc:
            out.skipped["geometry"] = f"the geometric critic is not available here ({exc})"
        else:
            if extract is None:
                out.skipped["geometry"] = "no target extractor (portraitcraft.agents.planner.targets) in this checkout"
            else:
                vision = getattr(cfg, "vision", None)  # the [vision] section, once the vision work is merged
                out.scorers.append(GeometryScorer(functools.partial(analyze, config=vision), critique_geometry,
                                                  extract))
    if "rules" in wanted:
        try:
            from portraitcraft.agents.critic import Critic
            from portraitcraft.prompts.rules import load_rules
        except ImportError as exc:
            out.skipped["rules"] = f"the VLM rule critic is not available here ({exc})"
        else:  # the VLM's verdicts only: geometry is its own objective, heuristics are not rules
            critic_cfg = cfg.critic.model_copy(update={"geometry": False, "heuristics": False, "enabled": True})
            rules = load_rules(critic_cfg.rules_dir, critic_cfg.rules or None)
            client = VLMClient(critic_cfg, cache_dir=cache_dir if critic_cfg.cache else None)
            out.scorers.append(RuleScorer(Critic(rules, critic_cfg, vlm=client), extract, client))
    judged = wanted & {"content", "composition"}
    if judged:
        from portraitcraft.agents.judge import Judge

        client = VLMClient(cfg.judge, cache_dir=cache_dir if cfg.judge.cache else None)
        out.scorers.append(JudgeScorer(Judge(cfg.judge, client), client))
    for name in wanted - set(OBJECTIVES):
        out.skipped[name] = f"unknown objective (known: {', '.join(OBJECTIVES)})"
    return out


def group_zscores(values: Sequence[float | None], groups: Sequence[Any]) -> list[float]:
    """agents.rewards.zscore_within_group per group over the measured values; 0 for an unmeasured (None) one.

    Example:
        >>> group_zscores([1.0, 3.0, 5.0, None], ["a", "a", "b", "b"])
        [-1.0, 1.0, 0.0, 0.0]
    """
    from portraitcraft.agents.rewards import zscore_within_group

    out = [0.0] * len(values)
    members: dict[Any, list[int]] = {}
    for i, g in enumerate(groups):
        if values[i] is not None:
            members.setdefault(g, []).append(i)
    for idx in members.values():
        for i, z in zip(idx, zscore_within_group([float(values[i]) for i in idx]), strict=True):  # type: ignore[arg-type]
            out[i] = z
    return out


def combine(components: Mapping[str, Sequence[float | None]], weights: Mapping[str, float],
            groups: Sequence[Any]) -> tuple[list[float], dict[str, list[float]], dict[str, float]]:
    """(rewards, z-scores per objective, the weights used): sum_k w_k z_k with w renormalised to sum 1 over
    the objectives present."""
    used = {k: float(weights.get(k, 0.0)) for k in components if weights.get(k, 0.0) > 0}
    total = sum(used.values())
    used = {k: w / total for k, w in used.items()} if total > 0 else {}
    z = {k: group_zscores(components[k], groups) for k in used}
    n = len(groups)
    rewards = [sum(used[k] * z[k][i] for k in used) for i in range(n)]
    return rewards, z, used
