"""Structured-output dialects: how each endpoint dialect is asked for a typed answer, and how replies parse.

- `openai`: `response_format` json_schema with `strict: true` (hosted OpenAI, Gemini's OpenAI endpoint).
- `vllm`: `extra_body={"structured_outputs": {"json": schema}}` or `{"choice": [...]}` (vLLM >= 0.12;
  the old `guided_json` / `guided_choice` are silently ignored there, so they are never sent).
- `plain`: no server-side constraint; the schema goes into the prompt and the first JSON object in the
  reply is parsed.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from portraitcraft.config import Dialect

DIALECTS: tuple[str, ...] = ("vllm", "openai", "plain")


class AnswerInvalid(Exception):
    """A reply that does not parse or validate; `problem` says why in one line."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


@dataclass(frozen=True)
class AnswerFormat:
    """What to add to a request for one kind of answer, and how to read the reply.

    Attributes:
        fields: request fields (`response_format`, `extra_body`) merged into the request.
        instructions: text appended to the user prompt (plain dialect), or None.
        parse: reply text -> value; raises AnswerInvalid.
        value_offset: for closed choices, the character offset in the reply where the chosen option begins
            (None when it cannot be found); used to read top_logprobs at the deciding token.
    """

    fields: dict[str, Any]
    instructions: str | None
    parse: Callable[[str], Any]
    value_offset: Callable[[str], int | None] = field(default=lambda text: None)


def first_json_object(text: str) -> Any:
    """The first JSON object in `text` (code fences and chatter around it are ignored).

    Example:
        >>> first_json_object('Sure! ```json\\n{"a": 1}\\n```')
        {'a': 1}
    """
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    raise AnswerInvalid("the reply holds no complete JSON object")


def strict_json_schema(schema: dict[str, Any], *, require_all: bool = True) -> dict[str, Any]:
    """A copy of a JSON schema with every object closed (no extra keys).

    With require_all (OpenAI strict form) every property is also required and defaults are dropped; without it
    (vLLM grammars) only the objects are closed, so a grammar cannot wander into keys the schema never named.
    """

    def visit(node: Any) -> Any:
        if isinstance(node, dict):
            node = {k: visit(v) for k, v in node.items() if not (require_all and k == "default")}
            if node.get("type") == "object" or "properties" in node:
                props = node.get("properties", {})
                node["additionalProperties"] = False
                if require_all:
                    node["required"] = list(props)
            return node
        if isinstance(node, list):
            return [visit(v) for v in node]
        return node

    return visit(copy.deepcopy(schema))


def _schema_name(schema: type[BaseModel]) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", schema.__name__)[:64] or "answer"


def _validation_problem(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{loc}: {err['msg']}")
    more = f" (+{exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
    return "the JSON does not match the schema: " + "; ".join(parts) + more


@functools.lru_cache(maxsize=256)
def _schema_texts(schema: type[BaseModel], dialect: str) -> tuple[str, str]:
    """The answer's JSON schema and its dialect form, built once per (schema, dialect) and kept as JSON text:
    building them costs tens of ms per request, and text hands every caller its own fresh dicts."""
    json_schema = schema.model_json_schema()
    if dialect == "openai":
        shaped = strict_json_schema(json_schema)
    elif dialect == "vllm":
        shaped = strict_json_schema(json_schema, require_all=False)
    else:
        shaped = json_schema
    return json.dumps(json_schema), json.dumps(shaped)


def json_format(schema: type[BaseModel], dialect: Dialect) -> AnswerFormat:
    """The request fields and parser for a pydantic-typed answer on an endpoint of this `dialect`.

    Example:
        >>> class Verdict(BaseModel):
        ...     ok: bool
        >>> json_format(Verdict, "vllm").fields["extra_body"]["structured_outputs"]["json"]["type"]
        'object'
    """
    if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
        raise TypeError(f"schema must be a pydantic BaseModel subclass, got {schema!r}")
    if dialect not in DIALECTS:
        raise ValueError(f"unknown endpoint dialect {dialect!r}; expected one of {DIALECTS}")
    json_schema, dialect_schema = (json.loads(text) for text in _schema_texts(schema, dialect))

    def parse(text: str) -> BaseModel:
        try:
            return schema.model_validate(first_json_object(text))
        except ValidationError as exc:
            raise AnswerInvalid(_validation_problem(exc)) from None

    if dialect == "openai":
        fields = {"response_format": {"type": "json_schema", "json_schema": {
            "name": _schema_name(schema), "schema": dialect_schema, "strict": True}}}
        return AnswerFormat(fields, None, parse)
    if dialect == "vllm":
        return AnswerFormat({"extra_body": {"structured_outputs": {"json": dialect_schema}}}, None, parse)
    instructions = ("Reply with only a JSON object (no prose, no code fence) that matches this JSON schema:\n"
                    + json.dumps(json_schema, ensure_ascii=False))
    return AnswerFormat({}, instructions, parse)


_ANSWER_KEY = "answer"
_ANSWER_VALUE = re.compile(r'"answer"\s*:\s*"')


def choice_format(choices: Sequence[str], dialect: Dialect) -> AnswerFormat:
    """The request fields and parser for one option out of a closed set (score levels, yes/no, A-D).

    Example:
        >>> choice_format(["yes", "no"], "vllm").parse(" no")
        'no'
    """
    if isinstance(choices, str):
        raise ValueError(f"choices must be a list of options, not one string {choices!r}")
    options = [str(c) for c in choices]
    if len(options) < 2 or len(set(options)) != len(options) or any(not c.strip() for c in options):
        raise ValueError(f"choices must be at least two distinct non-empty strings, got {options!r}")
    listed = ", ".join(options)

    def leading_space(text: str) -> int:
        return len(text) - len(text.lstrip())

    def parse_bare(text: str) -> str:
        answer = text.strip().strip("\"'")
        if answer in options:
            return answer
        # plain endpoints may add punctuation or words after the option: "B." or "B) Good"
        starts = [c for c in options if answer.startswith(c) and not answer[len(c):len(c) + 1].isalnum()]
        if starts:
            return max(starts, key=len)
        raise AnswerInvalid(f"the reply {text.strip()[:80]!r} is not one of: {listed}")

    if dialect == "vllm":
        return AnswerFormat({"extra_body": {"structured_outputs": {"choice": options}}}, None, parse_bare,
                            leading_space)
    if dialect == "plain":
        return AnswerFormat({}, f"Reply with exactly one of these options and nothing else: {listed}",
                            parse_bare, lambda text: leading_space(text) + (text.lstrip()[:1] in ('"', "'")))
    if dialect == "openai":
        schema = {"type": "object", "properties": {_ANSWER_KEY: {"type": "string", "enum": options}},
                  "required": [_ANSWER_KEY], "additionalProperties": False}

        def parse_json(text: str) -> str:
            value = first_json_object(text).get(_ANSWER_KEY)
            if value not in options:
                raise AnswerInvalid(f"the reply's {_ANSWER_KEY!r} is {value!r}, not one of: {listed}")
            return str(value)

        def offset(text: str) -> int | None:
            match = _ANSWER_VALUE.search(text)
            return match.end() if match else None

        fields = {"response_format": {"type": "json_schema", "json_schema": {
            "name": "choice", "schema": schema, "strict": True}}}
        return AnswerFormat(fields, None, parse_json, offset)
    raise ValueError(f"unknown endpoint dialect {dialect!r}; expected one of {DIALECTS}")
