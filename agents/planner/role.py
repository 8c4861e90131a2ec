"""The planner role: a Track 2 spec -> a Plan (canvas, prompt, seed, composition targets, reasons).

The targets come from the description (agents/planner/targets.py, read with the configured or fitted
convention), the canvas from a canvas policy that reads the same targets (agents/planner/canvas_policy.py:
the rule policy, or a fitted one named by PlannerConfig.policy), the prompt from the prompt builder
(agents/planner/prompt_builder.py), fitted into the text encoder's real budget. `plan` calls no model;
`aplan` may call the configured LLM for the targets (`[vision] targets = "llm" | "hybrid"`) and for condensing
(`[planner] condense = "llm"`), with the rules as the fallback.

The plan carries no negative prompt: the draft call uses the generator's configured one
(`generator.negative_prompt`, applied by the backend), so a copy here would only drift from it.
"""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from portraitcraft.agents.planner.canvas_policy import CanvasPolicy, load_policy, rule_policy
from portraitcraft.agents.planner.condense import condense_llm
from portraitcraft.agents.planner.prompt_builder import BuiltPrompt, PromptBuilder, TokenCounter, load_token_counter
from portraitcraft.agents.planner.targets import DEFAULT_ENFORCE_CONFIDENCE, Convention, extract_targets
from portraitcraft.config import DiffusionConfig, PlannerConfig, PortraitcraftConfig
from portraitcraft.errors import PortraitcraftError
from portraitcraft.schemas import CompositionTargets, Track2Spec

if TYPE_CHECKING:
    from portraitcraft.tools.vlm import VLMClient

logger = logging.getLogger(__name__)

# The longest `max_sequence_length` each diffusers pipeline can take: QwenImagePipeline raises above 1024;
# ZImagePipeline does not check, but its transformer's RoPE has 1024 positions on the axis where the caption
# (padded to a multiple of 32) is followed by the image, so the caption must stay within 992 tokens.
PIPELINE_MAX_SEQUENCE = {"qwen-image": 1024, "zimage": 992, "zimage-turbo": 992}
# Tokens of the chat template a pipeline wraps the prompt in that count against max_sequence_length
# (Z-Image tokenizes the templated prompt; Qwen-Image drops its template prefix before the limit).
TEMPLATE_TOKENS = {"zimage": 16, "zimage-turbo": 16}


class Plan(BaseModel):
    """What the generator needs for one item, what the description asks of it, and why the canvas is what it is."""

    id: str
    width: int
    height: int
    prompt: str
    seed: int
    targets: CompositionTargets = Field(default_factory=CompositionTargets,
                                        description="the description's composition targets (viewer's frame)")
    convention: Literal["strict", "loose"] = Field("strict", description="how subject-frame sides were read")
    reasons: list[str] = Field(default_factory=list, description="the canvas evidence and decision, readable")
    warnings: list[str] = Field(default_factory=list, description="e.g. the prompt will be truncated")
    prompt_tokens: int = Field(0, description="text-encoder tokens of the prompt (after condensing)")
    prompt_tokens_before: int = Field(0, description="tokens of the prompt before condensing")
    prompt_budget: int = Field(0, description="the text encoder's token budget the prompt was fitted to")


def policy_from_config(config: PlannerConfig) -> CanvasPolicy:
    """The fitted policy named by `config.policy`, else the rule policy over `config.aspect_ratios`."""
    if config.policy:
        return load_policy(config.policy)
    return rule_policy(config.aspect_ratios, config.prior_orientation)


def backend_token_budget(generator: DiffusionConfig) -> int:
    """The prompt tokens the generator's text encoder really reads: its max_sequence_length, capped by what
    the diffusers pipeline accepts, minus the chat template the pipeline adds.

    Example:
        >>> from portraitcraft.config import GeneratorConfig
        >>> backend_token_budget(GeneratorConfig(backend="qwen-image", max_sequence_length=2048))
        1024
    """
    limit = min(generator.max_sequence_length, PIPELINE_MAX_SEQUENCE.get(generator.backend, 10**6))
    return max(16, limit - TEMPLATE_TOKENS.get(generator.backend, 0))


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
        max_prompt_tokens (int, optional): the backend's budget when `config.max_prompt_tokens` is unset.
        counter (TokenCounter, optional): the model's tokenizer; defaults to the estimate.
        targets_mode ("rules" | "llm" | "hybrid", optional): `[vision] targets`; "llm" and "hybrid" are used by
            `aplan` when it is given an endpoint; unset = hybrid with an endpoint, else rules.
        enforce_confidence (float, optional, defaults to 0.8): `[vision] enforce_confidence`: the confidence a
            target needs to be enforced by the critic.

    Example:
        >>> spec = Track2Spec(image_path="a.jpg", content="A full-body shot of a dancer.", composition="")
        >>> plan = Planner().plan(spec)
        >>> plan.height > plan.width, plan.targets.crop_level
        (True, 'full-body')
    """

    def __init__(
        self,
        config: PlannerConfig | None = None,
        *,
        policy: CanvasPolicy | None = None,
        seed: int = 0,
        max_prompt_tokens: int | None = None,
        counter: TokenCounter | None = None,
        targets_mode: Literal["rules", "llm", "hybrid"] | None = None,
        enforce_confidence: float = DEFAULT_ENFORCE_CONFIDENCE,
    ) -> None:
        self.config = config or PlannerConfig()
        self.policy = policy or policy_from_config(self.config)
        self.builder = PromptBuilder.from_config(self.config, max_prompt_tokens=max_prompt_tokens, counter=counter)
        self.seed = seed
        self.targets_mode = targets_mode
        self.enforce_confidence = enforce_confidence
        self.convention: Convention = self.config.convention or self.policy.reading_convention or "strict"

    @classmethod
    def from_config(cls, config: PortraitcraftConfig) -> Planner:
        """A planner wired from the whole config: the planner section, run.seed, the generator's real token
        budget and tokenizer (when on disk), and `[vision] targets`."""
        return cls(config.planner, seed=config.run.seed, max_prompt_tokens=backend_token_budget(config.generator),
                   counter=load_token_counter(config.generator.model), targets_mode=config.vision.targets,
                   enforce_confidence=config.vision.enforce_confidence)

    def targets(self, spec: Track2Spec) -> CompositionTargets:
        """The item's composition targets by the rules (the planner's convention as the prior for ambiguous
        frames), each with its evidence and whether it is enforced."""
        return extract_targets(spec.content, spec.composition, convention=self.convention,
                               enforce_confidence=self.enforce_confidence)

    def plan(self, spec: Track2Spec) -> Plan:
        """Plan one item with the rules (pure and fast: no model call)."""
        targets = self.targets(spec)
        return self._plan(spec, targets, self.builder.build(spec.content, spec.composition, targets))

    async def aplan(self, spec: Track2Spec, vlm: VLMClient | None = None) -> Plan:
        """Plan one item, asking the LLM `vlm` for the targets (`targets_mode` "llm") and for condensing
        (`condense` "llm") when given; any failure of the LLM falls back to the rules, with a warning."""
        notes: list[str] = []
        targets = self.targets(spec)
        mode = self.targets_mode or ("hybrid" if vlm is not None else "rules")
        if vlm is not None and mode in ("llm", "hybrid"):
            from portraitcraft.agents.planner.targets_llm import extract_targets_llm, merge_targets

            try:
                answer = await extract_targets_llm(vlm, spec.content, spec.composition)
            except PortraitcraftError as exc:
                notes.append(f"LLM targets failed ({exc}); the rule extractor's are used")
            else:
                targets = merge_targets(targets, answer, mode=mode, enforce_confidence=self.enforce_confidence)
        built = await self._abuild(spec, targets, vlm, notes)
        plan = self._plan(spec, targets, built)
        for note in notes:
            logger.warning("item %s: %s", spec.id, note)
        return plan.model_copy(update={"warnings": notes + plan.warnings})

    async def _abuild(self, spec: Track2Spec, targets: CompositionTargets, vlm: VLMClient | None,
                      notes: list[str]) -> BuiltPrompt:
        b = self.builder
        content, composition, n_spatial = b.arrange(spec.content, spec.composition, targets)
        if vlm is None or b.condense != "llm" or b.fits(content, composition):
            return b.finish(content, composition, n_spatial, targets)
        before = b.counter.count(b.render(content, composition))
        words = len(f"{content} {composition}".split())
        budget_words = max(20, int(words * b.max_prompt_tokens / before * 0.9))
        try:
            answer = await condense_llm(vlm, content, composition, budget_words=budget_words, targets=targets,
                                        fits=b.fits, read_targets=lambda c, k: extract_targets(
                                            c, k, convention=self.convention))
        except PortraitcraftError as exc:
            notes.append(f"LLM condensing failed ({exc}); the rules condense the prompt")
            answer = None
        if answer is None:
            if not notes:
                notes.append("the LLM's shorter prompt did not fit or lost a target; the rules condense it")
            return b.finish(content, composition, n_spatial, targets)
        return b.finish(answer.content, answer.composition, n_spatial, targets, tokens_before=before,
                        steps=["llm"])

    def _plan(self, spec: Track2Spec, targets: CompositionTargets, prompt: BuiltPrompt) -> Plan:
        canvas = self.policy.choose(spec.description, long_side=self.config.long_side,
                                    multiple=self.config.multiple, targets=targets)
        for warning in prompt.warnings:
            logger.warning("item %s: %s", spec.id, warning)
        seed = self.seed if self.config.seed_mode == "fixed" else item_seed(self.seed, spec.id)
        return Plan(
            id=spec.id, width=canvas.width, height=canvas.height, prompt=prompt.text, seed=seed, targets=targets,
            convention=self.convention, reasons=canvas.reasons, warnings=prompt.warnings, prompt_tokens=prompt.tokens,
            prompt_tokens_before=prompt.tokens_before, prompt_budget=prompt.budget,
        )
