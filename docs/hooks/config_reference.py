"""The configuration reference, generated from the pydantic settings in `portraitcraft/config.py`.

Every section and key with its type, default, `PORTRAITCRAFT_...` environment variable and the field's
description; nested models (`generator.refiner`, `generator.loras[]`) are listed under their parent. Called
by `reference_pages.py` at build time (so the page cannot drift from the code) and by tests/test_docs*.py.
"""

from __future__ import annotations

import inspect
import json
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, Union

import annotated_types
from markdown_cells import cell, code
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from portraitcraft.cli.config import ENDPOINT_SECTIONS
from portraitcraft.config import ENV_PREFIX, PortraitcraftConfig

API_KEYS = "_api_keys"  # what `config show --json` adds after the sections (never a key itself)


@dataclass(frozen=True)
class ConfigKey:
    """One documented key: `section.key` (nested keys `section.key.sub`, list items `section.key[].sub`)."""

    dotted: str
    type: str
    default: str
    env: str | None
    description: str

    @property
    def anchor(self) -> str:
        """The HTML id of the key's row (dots kept: `generator.steps`; `[]` dropped)."""
        return self.dotted.replace("[]", "")


def _model_in(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The pydantic model inside an annotation (`X`, `X | None`, `list[X]`) and whether it is a list item."""
    origin = typing.get_origin(annotation)
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return annotation, False
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(annotation):
            model, is_list = _model_in(arg)
            if model is not None:
                return model, is_list
    if origin is list:
        model, _ = _model_in(typing.get_args(annotation)[0])
        return model, model is not None
    return None, False


def type_name(annotation: Any) -> str:
    """A short readable type: `int`, `float | None`, `"json" | "logprob"`, `list[int]`, `dict[str, float]`."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_name(args[0]) + _constraints(args[1:])
    if origin is Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin in (list, tuple, dict):
        return f"{origin.__name__}[{', '.join('...' if a is Ellipsis else type_name(a) for a in args)}]"
    if annotation is type(None):
        return "None"
    if annotation is Any:
        return "any"
    return getattr(annotation, "__name__", str(annotation))


_BOUND_SIGNS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


def _constraints(metadata: typing.Iterable[Any]) -> str:
    parts = []
    for item in metadata:
        for attr, sign in _BOUND_SIGNS.items():
            value = getattr(item, attr, None)
            if value is not None and isinstance(item, annotated_types.BaseMetadata | FieldInfo):
                parts.append(f"{sign} {value:g}" if isinstance(value, float) else f"{sign} {value}")
        if isinstance(item, annotated_types.MinLen):
            parts.append(f"at least {item.min_length} item(s)")
        if isinstance(item, FieldInfo):
            parts.extend(_constraints(item.metadata).strip(" ()").split(", ") if item.metadata else [])
    parts = [p for p in parts if p]
    return f" ({', '.join(parts)})" if parts else ""


def field_type(field: FieldInfo) -> str:
    """The field's type with its bounds (`int (>= 1, <= 500)`)."""
    return type_name(field.annotation) + _constraints(field.metadata)


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    return json.dumps(_rounded(value), default=str)


def _rounded(value: Any) -> Any:
    """Floats to 6 significant digits (2/3 prints as 0.666667), inside lists and dicts too."""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def _env(path: list[str]) -> str:
    return ENV_PREFIX + "__".join(p.upper() for p in path)


def section_model(section: str) -> type[BaseModel]:
    """The model class of one top-level section (`generator` -> GeneratorConfig)."""
    model, _ = _model_in(PortraitcraftConfig.model_fields[section].annotation)
    assert model is not None, section
    return model


def iter_keys(model: type[BaseModel], path: list[str], *, env: bool = True) -> Iterator[ConfigKey]:
    """Every key of `model` under `path`, nested models' keys after their parent key."""
    for name, field in model.model_fields.items():
        keypath = [*path, name]
        yield ConfigKey(
            dotted=".".join(keypath), type=field_type(field), default=_default(field),
            env=_env(keypath) if env else None, description=(field.description or "").strip(),
        )
        nested, is_list = _model_in(field.annotation)
        if nested is not None:
            # a list of models is set as one JSON value (its parent's env var); its items have no env var
            yield from iter_keys(nested, [*path, name + "[]" if is_list else name], env=env and not is_list)


def sections() -> list[str]:
    """The top-level sections in declaration order (what `portraitcraft config show` prints)."""
    return list(PortraitcraftConfig.model_fields)


def all_keys() -> list[ConfigKey]:
    """Every documented key of every section."""
    return [key for section in sections() for key in iter_keys(section_model(section), [section])]




def _doc(model: type[BaseModel]) -> str:
    own = model.__dict__.get("__doc__")
    return inspect.cleandoc(own) if own else ""


def render() -> str:
    """The whole reference page (Markdown)."""
    out = [
        "# Configuration reference",
        "",
        "Generated at build time from the pydantic settings in `portraitcraft/config.py` (the fields' "
        "descriptions), so it lists exactly what `portraitcraft config show --json` prints. How a value is "
        "chosen (a TOML file < `PORTRAITCRAFT_<SECTION>__<KEY>` environment variables < `--set "
        "section.key=value` and each command's own flags) is explained in the "
        "[configuration guide](../guides/configuration.md).",
        "",
        "A list or table value set through an environment variable is written as JSON, e.g. "
        "`PORTRAITCRAFT_CRITIC__RULES='[\"placement\", \"facing\"]'`.",
        "",
        "Sections: " + ", ".join(f"[`[{s}]`](#{s})" for s in sections()) + ".",
        "",
    ]
    for section in sections():
        model = section_model(section)
        field = PortraitcraftConfig.model_fields[section]
        out += [f"## `[{section}]` {{#{section}}}", ""]
        for intro in dict.fromkeys(filter(None, [field.description, _doc(model)])):
            out += [intro[0].upper() + intro[1:] + ("" if intro.endswith(".") else "."), ""]
        out += ["| key | type and default | description and environment variable |", "| --- | --- | --- |"]
        for key in iter_keys(model, [section]):
            env = f"<br><small>{code(key.env)}</small>" if key.env else ""
            short = key.dotted.split(".", 1)[1]
            out.append(
                f'| <span id="{key.anchor}"></span><code class="key">{short}</code> | {code(key.type)}<br>'
                f"default {code(key.default)} | {cell(key.description)}{env} |"
            )
        out.append("")
    out += [
        f"## `{API_KEYS}` (printed by `config show --json`) {{#{API_KEYS}}}",
        "",
        "Not configuration: after the sections, `portraitcraft config show --json` prints, for each endpoint "
        "section, whether the environment variable its `api_key_env` names is set. The key itself is never "
        "printed, written to a file or logged.",
        "",
        "| key | value |",
        "| --- | --- |",
    ]
    for section in ENDPOINT_SECTIONS:
        out.append(f'| <span id="{API_KEYS}.{section}"></span>{code(f"{API_KEYS}.{section}")} | '
                   f'`"set"` or `"not set"`: the variable named by [`{section}.api_key_env`](#{section}.api_key_env) |')
    out.append("")
    return "\n".join(out)
