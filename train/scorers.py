"""Reward objectives for the reward server, one pluggable scorer each, and their group-wise combination.

Objectives (PortraitRL, methods.md): `geometry` (the geometric critic's pass ratio: share of measured
targets met), `rules` (the VLM rule critic's pass ratio: share of applicable rules not fired), `content` and
`composition` (the judge's 0-100 scores), and `fidelity` (only for requests with condition images: how little
the image drifted from its source, measured like the editor's drift guard).

Two ways to combine them (`[reward] normalise`):
- `group`: each objective is z-scored within its group, (s - mean) / std over the group's images (population
  std; a constant objective, a single image or an image the scorer could not measure gives 0), then combined
  with weights renormalised over the objectives actually scored. Relative: it needs whole groups.
- `none`: each objective on an absolute 0-1 scale (judge scores / 100), combined with weights renormalised
  over the objectives measured for THAT image: a reward in [0, 1] that does not depend on the rest of the batch.

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

from portraitcraft.agents.rewards import renormalised_weights, zscore_within_group
from portraitcraft.config import PortraitcraftConfig

OBJECTIVES = ("geometry", "rules", "content", "composition", "fidelity")
ABSOLUTE_SCALE = {"content": 100.0, "composition": 100.0}
"""Divisors that bring an objective to 0-1 under `normalise = "none"` (the others already are)."""
_SECTIONS = re.compile(r"\[Content\]\s*(?P<content>.*?)\s*(?:\[Composition\]\s*(?P<composition>.*))?\Z", re.S)


@dataclass
class Sample:
    """One image to score with its description."""

    prompt: str
    content: str
    composition: str
    image: Image.Image
    condition: Image.Image | None = None
    """the source image of an edit (the request's first condition image), for the fidelity objective"""


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

    async def probe(self) -> str | None:
        """None when the scorer can score now, else why not (its endpoint does not answer, ...)."""
        ...

    async def aclose(self) -> None: ...


async def probe_endpoint(client: Any, model: str, timeout: float) -> str | None:
    """None when `client`'s endpoint lists `model` within `timeout` seconds, else the reason (no secrets)."""
    try:
        models = await asyncio.wait_for(client.list_models(), timeout)
    except TimeoutError:
        return f"{client.url} did not answer GET /models within {timeout:g} s"
    except Exception as exc:  # any failure to reach it is the answer
        return f"{client.url}: {type(exc).__name__}: {exc}"
    if model not in models:
        return f"{client.url} answers but does not serve {model} (it serves: {', '.join(models[:8]) or 'nothing'})"
    return None


def _pass_ratio(findings: Sequence[Any]) -> float | None:
    return None if not findings else sum(1 for f in findings if not f.detected) / len(findings)


class JudgeScorer:
    """`content` and `composition` from portraitcraft.agents.judge (the VLM judge; its client caches replies)."""

    name = "judge"
    objectives = ("content", "composition")

    def __init__(self, judge: Any, client: Any = None, *, probe_timeout: float = 3.0) -> None:
        self.judge, self.client, self.probe_timeout = judge, client, probe_timeout

    async def score(self, sample: Sample) -> dict[str, float | None]:
        result = await self.judge.score(sample.image, sample.content, sample.composition)
        return {"content": result.content, "composition": result.composition}

    async def probe(self) -> str | None:
        return None if self.client is None else await probe_endpoint(self.client, self.client.cfg.model,
                                                                      self.probe_timeout)

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

    async def probe(self) -> str | None:
        return None

    async def aclose(self) -> None:
        return None


class FidelityScorer:
    """`fidelity`: how little an image drifted from its source (the request's condition image), with the
    editor's drift-guard metrics (tools/fidelity.py, the source's real person mask): background PSNR and person
    CIEDE2000, each mapped to 0-1 so that the drift guard's threshold is 0.5, then averaged."""

    name = "fidelity"
    objectives = ("fidelity",)
    needs_condition = True

    def __init__(self, analyze: Any, min_psnr_background: float, max_delta_e_person: float) -> None:
        self.analyze = analyze
        self.min_psnr_background, self.max_delta_e_person = min_psnr_background, max_delta_e_person

    def measure(self, image: Image.Image, source: Image.Image) -> float | None:
        import numpy as np

        from portraitcraft.tools.fidelity import edit_drift

        mask = getattr(self.analyze(source), "mask", None)
        if mask is None:
            mask = np.zeros((source.height, source.width), dtype=bool)
        report = edit_drift(source, image, np.asarray(mask, dtype=bool), resize=True, with_lpips=False)
        parts = []
        if report.psnr_background is not None:
            parts.append(min(1.0, report.psnr_background / (2 * self.min_psnr_background)))
        if report.delta_e_person is not None:
            parts.append(max(0.0, 1.0 - report.delta_e_person / (2 * self.max_delta_e_person)))
        return round(sum(parts) / len(parts), 6) if parts else None

    async def score(self, sample: Sample) -> dict[str, float | None]:
        if sample.condition is None:
            return {"fidelity": None}
        return {"fidelity": await asyncio.to_thread(self.measure, sample.image, sample.condition)}

    async def probe(self) -> str | None:
        return None

    async def aclose(self) -> None:
        return None


class RuleScorer:
    """`rules`: portraitcraft.agents.critic's VLM findings (geometry and heuristics are other objectives, or off)."""

    name = "rules"
    objectives = ("rules",)

    def __init__(self, critic: Any, extract_targets: Any, client: Any = None, *, probe_timeout: float = 3.0) -> None:
        self.critic, self.extract_targets, self.client = critic, extract_targets, client
        self.probe_timeout = probe_timeout

    async def score(self, sample: Sample) -> dict[str, float | None]:
        targets = self.extract_targets(sample.content, sample.composition) if self.extract_targets else None
        with tempfile.TemporaryDirectory(prefix="reward-") as tmp:  # the critic reads an image file
            path = Path(tmp) / "image.png"
            sample.image.save(path)
            critique = await self.critic.critique(path, sample.content, sample.composition, targets)
        return {"rules": _pass_ratio([f for f in critique.findings if getattr(f, "source", "vlm") == "vlm"])}

    async def probe(self) -> str | None:
        return None if self.client is None else await probe_endpoint(self.client, self.client.cfg.model,
                                                                      self.probe_timeout)

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

    @property
    def takes_conditions(self) -> bool:
        """Some scorer compares an image with its source (the fidelity objective is enabled)."""
        return any(getattr(s, "needs_condition", False) for s in self.scorers)

    async def unreachable(self) -> dict[str, str]:
        """Scorer name -> why it cannot score now, for every scorer whose endpoint does not answer."""
        async def probe(scorer: Any) -> str | None:
            check = getattr(scorer, "probe", None)  # a scorer without one has no endpoint (local models)
            return await check() if check is not None else None

        reasons = await asyncio.gather(*(probe(s) for s in self.scorers))
        return {s.name: r for s, r in zip(self.scorers, reasons, strict=True) if r is not None}

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
            out.scorers.append(RuleScorer(Critic(rules, critic_cfg, vlm=client), extract, client,
                                          probe_timeout=cfg.reward.probe_timeout))
    judged = wanted & {"content", "composition"}
    if judged:
        from portraitcraft.agents.judge import Judge

        # the judge gives up on an image before the trainer's client gives up on the request (no double load)
        judge_cfg = cfg.judge.model_copy(update={"item_deadline": min(cfg.judge.item_deadline,
                                                                      cfg.reward.judge_deadline)})
        client = VLMClient(judge_cfg, cache_dir=cache_dir if judge_cfg.cache else None)
        out.scorers.append(JudgeScorer(Judge(judge_cfg, client), client, probe_timeout=cfg.reward.probe_timeout))
    if "fidelity" in wanted:
        try:
            from portraitcraft.tools.fidelity import edit_drift  # noqa: F401
            from portraitcraft.tools.vision import analyze as analyze_fidelity
        except ImportError as exc:
            out.skipped["fidelity"] = f"the fidelity metrics or the person mask are not available here ({exc})"
        else:
            out.scorers.append(FidelityScorer(functools.partial(analyze_fidelity, config=getattr(cfg, "vision", None)),
                                              cfg.loop.drift_min_psnr_background, cfg.loop.drift_max_delta_e_person))
    for name in wanted - set(OBJECTIVES):
        out.skipped[name] = f"unknown objective (known: {', '.join(OBJECTIVES)})"
    return out


def group_zscores(values: Sequence[float | None], groups: Sequence[Any]) -> list[float]:
    """agents.rewards.zscore_within_group per group over the measured values; 0 for an unmeasured (None) one.

    Example:
        >>> group_zscores([1.0, 3.0, 5.0, None], ["a", "a", "b", "b"])
        [-1.0, 1.0, 0.0, 0.0]
    """
    out = [0.0] * len(values)
    members: dict[Any, list[int]] = {}
    for i, g in enumerate(groups):
        if values[i] is not None:
            members.setdefault(g, []).append(i)
    for idx in members.values():
        for i, z in zip(idx, zscore_within_group([float(values[i]) for i in idx]), strict=True):  # type: ignore[arg-type]
            out[i] = z
    return out


def absolute_rewards(components: Mapping[str, Sequence[float | None]], weights: Mapping[str, float],
                     n: int) -> tuple[list[float], dict[str, list[float | None]], dict[str, float]]:
    """(rewards in [0, 1], the 0-1 value per objective, the weights): per image, sum_k w_k s_k / sum_k w_k over
    the objectives measured for THAT image, so a reward never depends on the rest of the batch.

    Example:
        >>> absolute_rewards({"rules": [1.0, None], "content": [50.0, 80.0]}, {"rules": 1, "content": 1}, 2)[0]
        [0.75, 0.8]
    """
    used = {k: float(weights.get(k, 0.0)) for k in components if weights.get(k, 0.0) > 0}  # per image below
    scaled = {k: [None if v is None else min(1.0, max(0.0, float(v) / ABSOLUTE_SCALE.get(k, 1.0)))
                  for v in components[k]] for k in used}
    rewards = []
    for i in range(n):
        measured = {k: scaled[k][i] for k in used if scaled[k][i] is not None}
        w = renormalised_weights(used, measured)
        rewards.append(round(sum(w[k] * v for k, v in measured.items()), 6) if w else 0.0)
    return rewards, scaled, used


def combine(components: Mapping[str, Sequence[float | None]], weights: Mapping[str, float],
            groups: Sequence[Any]) -> tuple[list[float], dict[str, list[float]], dict[str, float]]:
    """(rewards, z-scores per objective, the weights used): sum_k w_k z_k with w renormalised to sum 1 over
    the objectives present."""
    used = renormalised_weights(weights, components)
    z = {k: group_zscores(components[k], groups) for k in used}
    n = len(groups)
    rewards = [sum(used[k] * z[k][i] for k in used) for i in range(n)]
    return rewards, z, used
