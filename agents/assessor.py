"""The Track 1 assessor: one view of one image -> K sampled answers (overall 0-100, 13 attributes, the VQA letter).

One request per view carries all K samples (`n=K`, `VLMClient.ask_votes`). Each answer is typed by a pydantic
schema built from the attribute names (levels or 0-10 scores, `AssessorConfig.output`); the answer letter is
mapped back through the view's option order, so every sample in the returned record speaks the ORIGINAL
letters. With `overall = "logprob"` one more request per view reads the expected overall score from the
model's digit probabilities (Q-Align style). The prompts live in prompts/understand/; `request_text` is also
what `understand export-sft` writes, so training and inference prompts never drift.

The returned records are plain JSON (graph state, the votes file): see `assess` and `answer_question`.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from portraitcraft.agents.views import View, swap_directions, unpermute_letter
from portraitcraft.config import AssessorConfig
from portraitcraft.errors import PortraitcraftError
from portraitcraft.prompts.loader import load_prompt, render_prompt
from portraitcraft.schemas import ATTRIBUTES, Level
from portraitcraft.tools.images import hflip, load_image, resize_to_budget
from portraitcraft.tools.vlm import VLMAnswerError, VLMClient, VLMError
from portraitcraft.tools.vlm_formats import json_format

QAFormat = Literal["single", "multiple", "truefalse", "open"]
QA_FORMATS: tuple[str, ...] = ("single", "multiple", "truefalse", "open")
OVERALL_DIGITS: dict[str, float] = {str(d): float(d) for d in range(10)}
"""The logprob overall score's answer tokens; the expected digit is normalised to 0-100."""
LEVEL_NAMES: tuple[str, ...] = tuple(level.value for level in Level)


class AssessorError(PortraitcraftError):
    """A prompt template or an item the assessor cannot use (names it and the problem)."""


@dataclass(frozen=True)
class Question:
    """What an item asks besides the attributes: a question and its options (empty for train items).

    Attributes:
        text: the question (None or "" when there is none).
        options: {letter: option text} in the original order.
        format: the answer format (Track 1 questions are "single").
    """

    text: str | None = None
    options: Mapping[str, str] = field(default_factory=dict)
    format: QAFormat = "single"

    @property
    def letters(self) -> tuple[str, ...]:
        return tuple(self.options)


def _field_name(attribute: str) -> str:
    return "_".join(attribute.lower().split())


@functools.cache
def criteria_schema(output: Literal["levels", "scores"]) -> type[BaseModel]:
    """The 13 attributes as one object, JSON keys the exact attribute names (in the benchmark's order)."""
    value: Any = Literal[LEVEL_NAMES] if output == "levels" else float  # type: ignore[valid-type]
    bounds: dict[str, Any] = {} if output == "levels" else {"ge": 0.0, "le": 10.0}
    fields = {_field_name(a): (value, Field(alias=a, **bounds)) for a in ATTRIBUTES}
    return create_model(f"Criteria{output.capitalize()}",
                        __config__=ConfigDict(populate_by_name=True, extra="forbid"), **fields)


@functools.cache
def answer_schema(output: Literal["levels", "scores"], letters: tuple[str, ...] = ("A", "B", "C", "D"),
                  explanations: bool = False) -> type[BaseModel]:
    """The typed answer of one Track 1 sample: [explanation], criteria, overall, [answer letter].

    Args:
        output ("levels" | "scores"): attributes as Poor/Medium/Good or as 0-10 scores.
        letters (tuple of str, optional): the option letters; empty for an item without a question.
        explanations (bool, optional): ask for a short explanation first (reasons before scores).

    Example:
        >>> list(answer_schema("scores").model_json_schema()["properties"])
        ['criteria', 'overall', 'answer']
    """
    fields: dict[str, Any] = {}
    if explanations:
        fields["explanation"] = (str, Field(description="main strengths and weaknesses, briefly"))
    fields["criteria"] = (criteria_schema(output), ...)
    fields["overall"] = (int, Field(ge=0, le=100))
    if letters:
        fields["answer"] = (Literal[letters], ...)  # type: ignore[valid-type]
    name = f"Assessment{output.capitalize()}{''.join(letters)}{'X' if explanations else ''}"
    return create_model(name, **fields)


@functools.cache
def qa_schema(fmt: QAFormat, letters: tuple[str, ...] = ()) -> type[BaseModel]:
    """The typed answer of one Q-Bench-style sample for a question format."""
    if fmt in ("single", "multiple") and not letters:
        raise AssessorError(f"a {fmt}-choice question needs options")
    if fmt == "single":
        value: Any = (Literal[letters], ...)  # type: ignore[valid-type]
    elif fmt == "multiple":
        value = (list[Literal[letters]], Field(min_length=1, max_length=len(letters)))  # type: ignore[valid-type]
    elif fmt == "truefalse":
        value = (bool, ...)
    else:
        value = (str, ...)
    return create_model(f"QA{fmt.capitalize()}{''.join(letters)}", answer=value)


def render_hints(hints: Mapping[str, Any] | None, *, flip: bool = False) -> str | None:
    """The geometry hints as prompt text (prompts/understand/geometry.md), mirrored for a flipped view."""
    if not hints:
        return None
    keys = ("horizontal", "vertical", "crop_level", "facing", "gaze", "people")
    text = render_prompt("understand/geometry.md", **{k: hints.get(k) for k in keys}).strip().rstrip(";").strip()
    if not text:
        return None
    return swap_directions(text) if flip else text


def check_templates(templates: Sequence[str]) -> None:
    """Fail early, naming the template, when a prompt-template variant does not exist."""
    for name in templates:
        try:
            load_prompt(f"understand/templates/{name}.md")
        except PortraitcraftError as exc:
            raise AssessorError(f"assessor template {name!r}: {exc}") from None


def system_text() -> str:
    return render_prompt("understand/system.md")


def request_text(question: Question | None, view: View, cfg: AssessorConfig, *,
                 hints: Mapping[str, Any] | None = None) -> tuple[str, dict[str, str], tuple[str, ...]]:
    """The user text of a Track 1 request as this view shows it, with the shown options and the option order.

    The text is exactly what the endpoint receives (for `plain` endpoints the client appends the schema).
    """
    text, shown, order = ("", {}, ())
    if question is not None and question.text:
        text, shown, order = view.present(question.text, dict(question.options),
                                          cfg.option_orders if cfg.permute_options else 1)
    prompt = render_prompt(
        f"understand/templates/{view.template}.md", attributes=list(ATTRIBUTES), output=cfg.output,
        question=text or None, options=shown, explanations=cfg.explanations,
        hints=render_hints(hints, flip=view.flip),
    )
    return prompt, shown, order


def qa_text(question: Question, view: View, cfg: AssessorConfig, *,
            hints: Mapping[str, Any] | None = None) -> tuple[str, dict[str, str], tuple[str, ...]]:
    """The user text of a Q-Bench-style request as this view shows it (options permuted unless true/false)."""
    permute = cfg.permute_options and question.format in ("single", "multiple")
    text, shown, order = view.present(question.text or "", dict(question.options),
                                      cfg.option_orders if permute else 1)
    prompt = render_prompt("understand/qa.md", question=text, format=question.format, options=shown,
                           hints=render_hints(hints, flip=view.flip))
    return prompt, shown, order


def full_user_text(prompt: str, schema: type[BaseModel], kind: str) -> str:
    """The user text as the endpoint sees it: `plain` endpoints get the schema appended by the client."""
    instructions = json_format(schema, kind).instructions  # type: ignore[arg-type]
    return f"{prompt}\n\n{instructions}" if instructions else prompt


def prepare_image(path: str | Path, view: View) -> Any:
    """The image as the view shows it: decoded, mirrored when flipped, shrunk to the view's pixel budget."""
    img = load_image(path)
    if view.flip:
        img = hflip(img)
    return resize_to_budget(img, view.max_pixels)


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class Assessor:
    """Asks an OpenAI-compatible VLM about one view of an image; returns JSON records of K samples.

    Args:
        cfg (AssessorConfig): samples (K), temperature, output, templates, option orders, overall mode, ...
        client (VLMClient): the client to call (the caller owns and closes it).

    Example:
        >>> async with VLMClient(cfg.assessor) as client:                                # doctest: +SKIP
        ...     record = await Assessor(cfg.assessor, client).assess("a.jpg", question, view)
        >>> record["samples"][0]["answer"]                                                # doctest: +SKIP
        'C'
    """

    def __init__(self, cfg: AssessorConfig, client: VLMClient) -> None:
        check_templates(cfg.templates)
        self.cfg = cfg
        self.client = client
        self.system = system_text()

    @property
    def samples(self) -> int:
        """K per view; greedy decoding (temperature 0) gives K identical answers, so it asks for one."""
        return 1 if self.cfg.temperature == 0 else self.cfg.samples

    async def assess(self, image: str | Path, question: Question | None, view: View, *,
                     hints: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """K samples of the Track 1 answer for one view (one request with n=K, plus one for logprob overall).

        Returns:
            {"view": view dict, "order": shown->original order, "samples": [{"criteria": {attr: level|score},
            "overall": int, "answer": original letter | None, "shown_answer", ["explanation"]} | {"error"}],
            "overall_expected": float | None, "overall_source": "logprobs" | "samples" | None, "error": None}
            An image or endpoint failure is returned as {"error": "..."} with no samples (never raised).
        """
        record: dict[str, Any] = {"view": view.to_dict(), "order": [], "samples": [], "overall_expected": None,
                                  "overall_source": None, "error": None}
        try:
            prompt, _, order = request_text(question, view, self.cfg, hints=hints)
            record["order"] = list(order)
            letters = question.letters if question is not None and question.text else ()
            schema = answer_schema(self.cfg.output, letters, self.cfg.explanations)
            img = await asyncio.to_thread(prepare_image, image, view)
            votes_task = self.client.ask_votes(prompt, [img], schema=schema, k=self.samples,
                                               temperature=self.cfg.temperature, system=self.system,
                                               seed=self.cfg.seed)
            if self.cfg.overall == "logprob":
                digit_prompt = render_prompt("understand/overall_digit.md", hints=render_hints(hints, flip=view.flip))
                votes, (_, unit, dist) = await asyncio.gather(votes_task, self.client.expected_score(
                    digit_prompt, [img], levels=OVERALL_DIGITS, system=self.system, seed=self.cfg.seed,
                    samples_if_no_logprobs=self.cfg.samples))
                record["overall_expected"], record["overall_source"] = 100.0 * unit, dist.source
            else:
                votes = await votes_task
        except (VLMError, PortraitcraftError, OSError) as exc:
            record["error"] = _error_text(exc)
            return record
        for vote in votes:
            record["samples"].append(self._sample(vote, order, letters))
        return record

    @staticmethod
    def _sample(vote: Any, order: Sequence[str], letters: Sequence[str]) -> dict[str, Any]:
        if isinstance(vote, VLMAnswerError):
            return {"error": vote.problem}
        data = vote.model_dump(by_alias=True)
        sample: dict[str, Any] = {"criteria": data["criteria"], "overall": data["overall"]}
        if "explanation" in data:
            sample["explanation"] = data["explanation"]
        if "answer" in data:
            sample["shown_answer"] = data["answer"]
            sample["answer"] = unpermute_letter(data["answer"], order, letters)
        return sample

    async def answer_question(self, image: str | Path, question: Question, view: View, *,
                              hints: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """K samples of a Q-Bench-style answer for one view, in the ORIGINAL letters / frame.

        Letters go back through the option order; a free-text answer from a mirrored view has its directional
        words swapped back. Returns {"view", "order", "samples": [{"answer": ...} | {"error"}], "error"}.
        """
        record: dict[str, Any] = {"view": view.to_dict(), "order": [], "samples": [], "error": None}
        try:
            prompt, _, order = qa_text(question, view, self.cfg, hints=hints)
            record["order"] = list(order)
            schema = qa_schema(question.format, question.letters if question.format in ("single", "multiple")
                               else ())
            img = await asyncio.to_thread(prepare_image, image, view)
            votes = await self.client.ask_votes(prompt, [img], schema=schema, k=self.samples,
                                                temperature=self.cfg.temperature, system=self.system,
                                                seed=self.cfg.seed)
        except (VLMError, PortraitcraftError, OSError) as exc:
            record["error"] = _error_text(exc)
            return record
        letters = question.letters
        for vote in votes:
            if isinstance(vote, VLMAnswerError):
                record["samples"].append({"error": vote.problem})
                continue
            value = vote.answer
            if question.format == "single":
                value = unpermute_letter(value, order, letters)
            elif question.format == "multiple":
                value = sorted({unpermute_letter(v, order, letters) for v in value})
            elif question.format == "open" and view.flip:
                value = swap_directions(value)
            record["samples"].append({"answer": value})
        return record


__all__ = [
    "OVERALL_DIGITS",
    "QA_FORMATS",
    "Assessor",
    "AssessorError",
    "Question",
    "answer_schema",
    "check_templates",
    "criteria_schema",
    "full_user_text",
    "prepare_image",
    "qa_schema",
    "qa_text",
    "render_hints",
    "request_text",
    "system_text",
]
