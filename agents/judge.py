"""The Track 2 judge: a Content and a Composition score (0-100) for one image and its description.

A documented PROXY of the challenge judge (Gemini 3.1 Pro with an unpublished prompt): the rubric lives in
prompts/judge/<rubric>.md and follows the report's definitions (docs/portraitcraft-data.md). Modes
(`JudgeConfig.mode`):

- "sampled": K samples of a JSON verdict (reasons, then scores) in one request (`ask_votes`); the score is
  their mean, the spread their standard deviation, the reasons those of the sample nearest the mean.
- "logprob": one request for the reasons, then one per score asking for a digit 0-9; the score is the
  expected digit under the model's token probabilities, normalised to 0-100 (PortraitRL / Q-Align).
- "auto": logprob if the endpoint returns logprobs, else sampled.

ONE method scores every image of a run (the two give different scales): `Judge.prepare()` probes the
endpoint once, before the first image (auto: does it return logprobs? logprob: check that it does), and
`Judge.method` is then fixed. In logprob mode an image whose reply carries no usable logprobs fails; it is
never scored by sampling instead. Every result records its `mode`.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from PIL import Image
from pydantic import AfterValidator, BaseModel, Field

from portraitcraft.config import JudgeConfig
from portraitcraft.errors import PortraitcraftError
from portraitcraft.prompts.loader import PromptError, render_prompt, render_text
from portraitcraft.tools.images import ImageInput
from portraitcraft.tools.vlm import ChoiceDistribution, VLMAnswerError, VLMClient, VLMError

LEVELS: dict[str, float] = {str(d): float(d) for d in range(10)}
"""The logprob mode's answer tokens and their values; the expected value is normalised to 0-100."""
ASPECTS: tuple[str, ...] = ("content", "composition")
Method = Literal["sampled", "logprob"]
REASON_CHARS = 600
Reason = Annotated[str, AfterValidator(lambda text: text.strip()[:REASON_CHARS])]
"""A judge's reason, clipped to REASON_CHARS after parsing: a long reason must not cost a valid score, and a
length limit in the JSON schema is refused by some strict structured-output endpoints."""


class JudgeError(PortraitcraftError):
    """The judge could not score an image (names the image and the problem)."""


class JudgeVerdict(BaseModel):
    """One sampled verdict: reasons first, so the model explains before it scores."""

    content_reason: Reason
    content_score: int = Field(ge=0, le=100)
    composition_reason: Reason
    composition_score: int = Field(ge=0, le=100)


class JudgeNotes(BaseModel):
    """The logprob mode's first step: the judge's reasons before it scores."""

    content_reason: Reason
    composition_reason: Reason


@dataclass
class JudgeResult:
    """One image's two scores (0-100), their spread, and the judge's short reasons."""

    content: float
    composition: float
    content_std: float
    composition_std: float
    content_reason: str
    composition_reason: str
    mode: Method
    source: Literal["samples", "logprobs"]
    n_samples: int
    """Valid samples behind a sampled score (0 when read from logprobs)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


class Judge:
    """Scores images against their Track 2 descriptions with an OpenAI-compatible VLM.

    Args:
        cfg (JudgeConfig): endpoint, mode, samples, temperature and rubric name (prompts/judge/<rubric>.md,
            or a path to a rubric file).
        client (VLMClient): the client to call; the caller owns (and closes) it.

    Example:
        >>> async with VLMClient(cfg.judge) as client:                              # doctest: +SKIP
        ...     result = await Judge(cfg.judge, client).score("img.png", content, composition)
        >>> result.content, result.composition                                      # doctest: +SKIP
        (84.0, 71.5)
    """

    def __init__(self, cfg: JudgeConfig, client: VLMClient) -> None:
        self.cfg = cfg
        self.client = client
        self.system = self._load_rubric(cfg.rubric)
        self.method: Method | None = "sampled" if cfg.mode == "sampled" else None
        """The scoring method of this run; decided by `prepare()` (at once for mode "sampled")."""
        self._probe = asyncio.Lock()

    @staticmethod
    def _load_rubric(rubric: str) -> str:
        if Path(rubric).is_file():
            try:
                text = Path(rubric).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise JudgeError(f"judge rubric {rubric}: not a readable UTF-8 text file ({exc})") from None
            return render_text(text)
        try:
            return render_prompt(f"judge/{rubric}.md")
        except PromptError as exc:
            raise JudgeError(
                f"judge rubric {rubric!r} is neither a file nor a rubric in prompts/judge/ ({exc})"
            ) from None

    async def prepare(self) -> Method:
        """Decide the run's scoring method once (a no-op after the first call; concurrent callers wait).

        auto: one probe request with logprobs; logprob if the endpoint returns them, else sampled.
        logprob: the same probe; an endpoint without logprobs is an error (choose auto or sampled).

        Raises:
            JudgeError: the probe failed (endpoint unreachable, refused, unusable answer) or mode "logprob"
                on an endpoint without logprobs.
        """
        if self.method is not None:
            return self.method
        async with self._probe:
            if self.method is None:
                probe = Image.new("RGB", (32, 32), (128, 128, 128))
                try:
                    has_logprobs = await self.client.logprobs_available(
                        render_prompt("judge/probe.md"), [probe], choices=list(LEVELS), system=self.system)
                except VLMError as exc:
                    raise JudgeError(f"judge probe (does the endpoint return logprobs?) failed: {exc}") from None
                if not has_logprobs and self.cfg.mode == "logprob":
                    raise JudgeError(f"judge.mode is 'logprob' but {self.client.url} ({self.cfg.model}) returns no "
                                     "usable logprobs; set judge.mode to 'auto' or 'sampled'")
                self.method = "logprob" if has_logprobs else "sampled"
        return self.method

    async def score(self, image: ImageInput, content: str, composition: str) -> JudgeResult:
        """Score one image.

        Args:
            image (ImageInput): the generated image (path, bytes or PIL image).
            content (str): its content description.
            composition (str): its composition analysis.

        Raises:
            JudgeError: no valid verdict among the samples, or the probe of `prepare()` failed.
            VLMError: the endpoint refused the request or failed after retries, or answers did not parse
                (in logprob mode: a reply without usable logprobs).
        """
        if await self.prepare() == "logprob":
            return await self._score_logprob(image, content, composition)
        return await self._score_sampled(image, content, composition)

    async def _score_sampled(self, image: ImageInput, content: str, composition: str) -> JudgeResult:
        prompt = render_prompt("judge/sampled.md", content=content, composition=composition)
        votes = await self.client.ask_votes(
            prompt, [image], schema=JudgeVerdict, k=self.cfg.samples, temperature=self.cfg.temperature,
            system=self.system, seed=self.cfg.seed,
        )
        valid = [v for v in votes if isinstance(v, JudgeVerdict)]
        if not valid:
            problems = "; ".join(sorted({v.problem for v in votes if isinstance(v, VLMAnswerError)}))
            raise JudgeError(f"none of the {len(votes)} judge samples was a valid verdict ({problems})")
        content_mean, content_std = _mean_std([v.content_score for v in valid])
        comp_mean, comp_std = _mean_std([v.composition_score for v in valid])
        nearest = min(
            valid, key=lambda v: abs(v.content_score - content_mean) + abs(v.composition_score - comp_mean)
        )
        return JudgeResult(
            content=content_mean, composition=comp_mean, content_std=content_std, composition_std=comp_std,
            content_reason=nearest.content_reason, composition_reason=nearest.composition_reason,
            mode="sampled", source="samples", n_samples=len(valid),
        )

    async def _score_logprob(self, image: ImageInput, content: str, composition: str) -> JudgeResult:
        explain = render_prompt("judge/explain.md", content=content, composition=composition)
        notes = await self.client.ask(explain, [image], schema=JudgeNotes, system=self.system, temperature=0.0,
                                      seed=self.cfg.seed)
        reasons = {"content": notes.content_reason, "composition": notes.composition_reason}
        scored = await asyncio.gather(*(
            self.client.expected_score(
                render_prompt(f"judge/level_{aspect}.md", content=content, composition=composition,
                              reason=reasons[aspect]),
                [image], levels=LEVELS, system=self.system, seed=self.cfg.seed, fallback=False,
            )
            for aspect in ASPECTS
        ))
        (content_value, content_norm, content_dist), (comp_value, comp_norm, comp_dist) = scored
        to_points = 100.0 / (max(LEVELS.values()) - min(LEVELS.values()))  # level units -> 0-100 points

        def spread(dist: ChoiceDistribution, mean: float) -> float:
            return to_points * math.sqrt(sum(p * (LEVELS[c] - mean) ** 2 for c, p in dist.probs.items()))

        return JudgeResult(
            content=100.0 * content_norm, composition=100.0 * comp_norm,
            content_std=spread(content_dist, content_value), composition_std=spread(comp_dist, comp_value),
            content_reason=notes.content_reason, composition_reason=notes.composition_reason,
            mode="logprob", source="logprobs", n_samples=0,
        )

