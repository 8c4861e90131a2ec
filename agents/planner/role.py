"""The planner role: a Track 2 spec -> a Plan (canvas, prompt, seed, reasons).

The canvas comes from a canvas policy (agents/planner/canvas_policy.py: the rule policy, or a fitted one named
by PlannerConfig.policy), the prompt from the prompt builder (agents/planner/prompt_builder.py). No model is
called. The plan carries no negative prompt: the draft call uses the generator's configured one
(`generator.negative_prompt`, applied by the backend), so a copy here would only drift from it.
"""

from __future__ import annotations

import hashlib
import logging

from pydantic import BaseModel, Field

from agents.planner.canvas_policy import CanvasPolicy, load_policy, rule_policy
from agents.planner.prompt_builder import PromptBuilder
from portraitcraft.config import PlannerConfig, PortraitcraftConfig
from portraitcraft.schemas import Track2Spec

logger = logging.getLogger(__name__)


class Plan(BaseModel):
    """What the generator needs for one item, and why the canvas is what it is."""

    id: str
    width: int
    height: int
    prompt: str
    seed: int
    reasons: list[str] = Field(default_factory=list, description="the canvas evidence and decision, readable")
    warnings: list[str] = Field(default_factory=list, description="e.g. the prompt will be truncated")
    prompt_tokens: int = Field(0, description="estimated text-encoder tokens of the prompt")


def policy_from_config(config: PlannerConfig) -> CanvasPolicy:
    """The fitted policy named by `config.policy`, else the rule policy over `config.aspect_ratios`."""
    return load_policy(config.policy) if config.policy else rule_policy(config.aspect_ratios)


def item_seed(base: int, item_id: str) -> int:
    """A stable 32-bit seed for an item: the same (base, id) always gives the same seed.

    Example:
        >>> item_seed(0, "a") == item_seed(0, "a") != item_seed(0, "b")
        True
    """
    digest = hashlib.sha256(f"{base}:{item_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


class Planner:
    """Turns a Track2Spec into a Plan.

    Args:
        config (PlannerConfig, optional): the planner section; defaults to the defaults.
        policy (CanvasPolicy, optional): overrides the policy `config` names (tests, notebooks).
        seed (int, optional, defaults to 0): the run seed (`run.seed`).

    Example:
        >>> spec = Track2Spec(image_path="a.jpg", content="A full-body shot of a dancer.", composition="")
        >>> plan = Planner().plan(spec)
        >>> plan.height > plan.width
        True
    """

    def __init__(
        self,
        config: PlannerConfig | None = None,
        *,
        policy: CanvasPolicy | None = None,
        seed: int = 0,
    ) -> None:
        self.config = config or PlannerConfig()
        self.policy = policy or policy_from_config(self.config)
        self.builder = PromptBuilder.from_config(self.config)
        self.seed = seed

    @classmethod
    def from_config(cls, config: PortraitcraftConfig) -> Planner:
        """A planner wired from the whole config: the planner section and run.seed."""
        return cls(config.planner, seed=config.run.seed)

    def plan(self, spec: Track2Spec) -> Plan:
        """Plan one item (pure and fast: no model call)."""
        canvas = self.policy.choose(spec.description, long_side=self.config.long_side,
                                    multiple=self.config.multiple)
        prompt = self.builder.build(spec.content, spec.composition)
        for warning in prompt.warnings:
            logger.warning("item %s: %s", spec.id, warning)
        seed = self.seed if self.config.seed_mode == "fixed" else item_seed(self.seed, spec.id)
        return Plan(
            id=spec.id, width=canvas.width, height=canvas.height, prompt=prompt.text,
            seed=seed, reasons=canvas.reasons,
            warnings=prompt.warnings, prompt_tokens=prompt.tokens,
        )
