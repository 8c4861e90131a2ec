"""Q-Bench-Portrait-style questions: the JSONL input, exact-match scoring, and the judge for open answers.

One question per line:

    {"id": "q1", "image_path": "a.jpg", "format": "single", "question": "...", "options": {"A": "...", ...},
     "answer": "B"}

`format` is "single" (one letter), "multiple" (a set of letters, e.g. ["A", "C"] or "A,C"; scored by exact set
match), "truefalse" (true/false, also "yes"/"no") or "open" (free text, graded by the judge endpoint against
the reference answer). `id` defaults to the line number.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from portraitcraft.agents.assessor import QA_FORMATS, QAFormat
from portraitcraft.prompts.loader import render_prompt
from portraitcraft.schemas import ItemProblem
from portraitcraft.tools.vlm import VLMClient

_TRUE = {"true", "yes", "y", "t", "1", "correct"}
_FALSE = {"false", "no", "n", "f", "0", "incorrect"}


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{value!r} is not true/false")


def _letters(value: Any) -> list[str]:
    items = value if isinstance(value, list) else re.split(r"[,\s;]+", str(value).strip())
    return sorted({str(v).strip().upper() for v in items if str(v).strip()})


class QAItem(BaseModel):
    """One validated question (see the module docstring)."""

    model_config = ConfigDict(extra="ignore")

    id: str = ""
    image_path: str = Field(min_length=1)
    format: Literal["single", "multiple", "truefalse", "open"]
    question: str = Field(min_length=1)
    options: dict[str, str] = Field(default_factory=dict)
    answer: Any

    @field_validator("options")
    @classmethod
    def _option_letters(cls, v: dict[str, str]) -> dict[str, str]:
        bad = [k for k in v if not re.fullmatch(r"[A-Z]", k)]
        if bad:
            raise ValueError(f"option keys must be single capital letters, got {bad}")
        return v

    @model_validator(mode="after")
    def _answer_fits(self) -> QAItem:
        if self.format in ("single", "multiple"):
            if len(self.options) < 2:
                raise ValueError(f"a {self.format}-choice question needs at least two options")
            letters = _letters(self.answer)
            unknown = [x for x in letters if x not in self.options]
            if not letters or unknown:
                raise ValueError(f"answer {self.answer!r} is not among the options {list(self.options)}")
            if self.format == "single" and len(letters) != 1:
                raise ValueError(f"a single-choice answer is one letter, got {self.answer!r}")
            self.answer = letters[0] if self.format == "single" else letters
        elif self.format == "truefalse":
            self.answer = _bool(self.answer)
        else:
            if not str(self.answer).strip():
                raise ValueError("an open-ended question needs a reference answer")
            self.answer = str(self.answer)
        return self


def parse_questions(records: Sequence[Any]) -> tuple[list[QAItem], list[ItemProblem]]:
    """Validate question rows, one problem per bad row; ids default to the row number and must be unique."""
    items: list[QAItem] = []
    problems: list[ItemProblem] = []
    seen: set[str] = set()
    for index, rec in enumerate(records):
        path = rec.get("image_path", "") if isinstance(rec, dict) else ""
        if not isinstance(rec, dict):
            problems.append(ItemProblem(index, "", "item", getattr(rec, "message", "expected a JSON object")))
            continue
        try:
            item = QAItem.model_validate(rec)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "item"
            problems.append(ItemProblem(index, str(path), where, err["msg"].removeprefix("Value error, ")))
            continue
        item.id = item.id or f"q{index:05d}"
        if item.id in seen:
            problems.append(ItemProblem(index, item.image_path, "id", f"duplicate id {item.id!r}"))
            continue
        seen.add(item.id)
        items.append(item)
    return items, problems


def exact_match(fmt: QAFormat, predicted: Any, reference: Any) -> bool:
    """Closed formats: the same letter, the same SET of letters, or the same truth value."""
    if predicted is None:
        return False
    if fmt == "multiple":
        return _letters(predicted) == _letters(reference)
    if fmt == "truefalse":
        return bool(predicted) is bool(reference)
    return str(predicted).strip().upper() == str(reference).strip().upper()


class Grade(BaseModel):
    """The judge's verdict on one open-ended answer."""

    correct: bool


async def grade_open(client: VLMClient, question: str, reference: str, answer: str) -> bool:
    """Ask the judge endpoint whether a free-text answer states the same as the reference."""
    prompt = render_prompt("understand/qa_grade.md", question=question, reference=reference, answer=answer)
    verdict = await client.ask(prompt, [], schema=Grade, temperature=0.0)
    return verdict.correct


def accuracy_by_format(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, float | int]]:
    """{format: {"n", "correct", "accuracy"}} plus "all"; an unanswered item counts as wrong."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row in rows:
        for key in (row["format"], "all"):
            counts[key][0] += 1
            counts[key][1] += int(bool(row.get("correct")))
    order = [*(f for f in QA_FORMATS if f in counts), "all"]
    return {k: {"n": counts[k][0], "correct": counts[k][1], "accuracy": counts[k][1] / counts[k][0]}
            for k in order if counts[k][0]}


__all__ = ["Grade", "QAItem", "accuracy_by_format", "exact_match", "grade_open", "parse_questions"]
