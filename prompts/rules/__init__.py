"""The critic's rule set: one Markdown file per failure mode, YAML front matter + a body the VLM reads.

Front matter keys (every one required, no others): `id`, `title`, `category`, `severity` (1-5), `applies_when`
(a list of conditions, any of which makes the rule apply; empty = always: a target key such as `gaze` (the
description states it) or `mentions:<words>` (the description contains them)), `question` (yes/no, "yes" =
the failure is present), `instruction` (the edit-instruction template, Jinja2 with `expected`, `measured`,
`phrase`, `evidence`), `geometry` (the geometric check that cross-checks the rule, or null) and `heuristic`
(the model-free check that reports under this rule, or null).

The shipped set lives beside this file; a folder of extra rules (`--rules DIR`, `critic.rules_dir`) adds to
it, a rule with a shipped id replacing the shipped one.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from portraitcraft.bounded import read_text
from portraitcraft.errors import DataError, PortraitcraftError
from portraitcraft.prompts.loader import PromptError, render_text
from portraitcraft.schemas import CompositionTargets

RULES_DIR = Path(__file__).resolve().parent
MAX_RULE_BYTES = 1024 * 1024
"""A rule file larger than this (1 MB) is a lint problem, never read whole."""
GeometryKey = Literal["horizontal", "vertical", "crop_level", "facing", "gaze", "people", "orientation", "subject"]
HeuristicKey = Literal["sharpness", "exposure", "horizon_tilt", "visible_fill"]
GEOMETRY_KEYS: tuple[str, ...] = get_args(GeometryKey)
HEURISTIC_KEYS: tuple[str, ...] = get_args(HeuristicKey)
TARGET_KEYS: tuple[str, ...] = tuple(k for k in CompositionTargets.model_fields if k != "phrases")
_FRONT = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)(.*)\Z", re.S)


class RuleError(PortraitcraftError):
    """A rule file is malformed, duplicated or has unknown fields (bad input: exit 2)."""

    exit_code = 2


class Rule(BaseModel):
    """One failure mode the critic checks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")]
    title: Annotated[str, Field(min_length=1)]
    category: Annotated[str, Field(min_length=1)]
    severity: Annotated[int, Field(ge=1, le=5)]
    applies_when: list[str]
    question: Annotated[str, Field(min_length=1)]
    instruction: Annotated[str, Field(min_length=1)]
    geometry: GeometryKey | None
    heuristic: HeuristicKey | None
    body: str = ""
    path: str = ""

    @field_validator("applies_when")
    @classmethod
    def _conditions(cls, value: list[str]) -> list[str]:
        for cond in value:
            if cond.startswith("mentions:"):
                if not cond.split(":", 1)[1].strip():
                    raise ValueError(f"{cond!r}: 'mentions:' needs words after it")
            elif cond not in TARGET_KEYS:
                raise ValueError(f"unknown condition {cond!r}: use a target key ({', '.join(TARGET_KEYS)}) or "
                                 "'mentions:<words>'")
        return value

    def applies(self, targets: CompositionTargets | None, text: str) -> bool:
        """Whether the description makes this rule relevant (an empty `applies_when` always applies)."""
        if not self.applies_when:
            return True
        lowered = text.lower()
        for cond in self.applies_when:
            if cond.startswith("mentions:"):
                if cond.split(":", 1)[1].strip().lower() in lowered:
                    return True
            elif targets is not None and getattr(targets, cond) is not None:
                return True
        return False

    def render_instruction(self, **values: Any) -> str:
        """The instruction template filled with `expected`, `measured`, `phrase`, `evidence` (missing = None)."""
        return _render(self.instruction, *(values.get(k) for k in ("expected", "measured", "phrase", "evidence")))


@functools.lru_cache(maxsize=4096)
def _render(template: str, expected: Any, measured: Any, phrase: Any, evidence: Any) -> str:
    """Rendered instructions are cached: the same finding recurs across rounds and items (Jinja compiles the
    template text on every render_text call)."""
    return render_text(template, expected=expected, measured=measured, phrase=phrase, evidence=evidence)


@dataclass(frozen=True)
class RuleProblem:
    """One lint problem: the file and what is wrong with it."""

    path: str
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


def _parse(path: Path) -> tuple[Rule | None, list[RuleProblem]]:
    where = str(path)
    try:
        text = read_text(path, what="rule file", max_bytes=MAX_RULE_BYTES)
    except DataError as exc:  # a FIFO, /dev/zero, a folder, a huge or binary file: named, never read whole
        return None, [RuleProblem(where, str(exc).removeprefix(f"{where}: "))]
    match = _FRONT.match(text)
    if not match:
        return None, [RuleProblem(where, "malformed: no YAML front matter (the file must start with a '---' "
                                         "line and close it with another '---' line)")]
    try:
        meta = yaml.safe_load(match.group(1))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at front-matter line {mark.line + 1}" if mark is not None else ""
        return None, [RuleProblem(where, f"malformed: the front matter is not valid YAML{at} "
                                         f"({getattr(exc, 'problem', None) or exc})")]
    if not isinstance(meta, dict):
        return None, [RuleProblem(where, "malformed: the front matter must be a mapping of keys to values")]
    problems: list[RuleProblem] = []
    for key in sorted(set(meta) - set(Rule.model_fields) | ({"body", "path"} & set(meta))):
        problems.append(RuleProblem(where, f"unknown field {key!r} (allowed: "
                                           f"{', '.join(k for k in Rule.model_fields if k not in ('body', 'path'))})"))
    if problems:
        return None, problems
    try:
        rule = Rule(**meta, body=match.group(2).strip(), path=where)
    except ValidationError as exc:
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(front matter)"
            msg = "missing required field" if err["type"] == "missing" else err["msg"]
            problems.append(RuleProblem(where, f"field {key!r}: {msg}"))
        return None, problems
    for name in ("instruction", "question"):
        try:
            render_text(getattr(rule, name), expected=None, measured=None, phrase=None, evidence=None)
        except PromptError as exc:
            problems.append(RuleProblem(where, f"field {name!r}: the template does not render ({exc})"))
    if not rule.body:
        problems.append(RuleProblem(where, "malformed: the body (what the VLM reads) is empty"))
    return (None if problems else rule), problems


def lint_rules(folder: str | Path | None = None) -> tuple[list[Rule], list[RuleProblem]]:
    """Parse every `*.md` of a folder (default: the shipped set): the valid rules and every problem."""
    root = Path(folder) if folder is not None else RULES_DIR
    if not root.is_dir():
        return [], [RuleProblem(str(root), "not a folder of rule files")]
    rules: list[Rule] = []
    problems: list[RuleProblem] = []
    seen: dict[str, str] = {}
    heuristics: dict[str, str] = {}
    files = sorted(root.glob("*.md"))
    if not files:
        problems.append(RuleProblem(str(root), "holds no *.md rule files"))
    for path in files:
        rule, found = _parse(path)
        problems.extend(found)
        if rule is None:
            continue
        if rule.id in seen:
            problems.append(RuleProblem(str(path), f"duplicate id {rule.id!r} (also in {seen[rule.id]})"))
            continue
        if rule.heuristic and rule.heuristic in heuristics:
            problems.append(RuleProblem(str(path), f"heuristic {rule.heuristic!r} is already reported by rule "
                                                   f"{heuristics[rule.heuristic]!r}"))
            continue
        seen[rule.id] = str(path)
        if rule.heuristic:
            heuristics[rule.heuristic] = rule.id
        rules.append(rule)
    return rules, problems


def load_rules(extra_dir: str | Path | None = None, names: list[str] | None = None) -> list[Rule]:
    """The shipped rules, plus (replacing same ids) those of `extra_dir`, optionally only `names`.

    Raises:
        RuleError: any lint problem in either folder, or a requested name that no rule has.
    """
    rules, problems = lint_rules(None)
    by_id = {r.id: r for r in rules}
    if extra_dir is not None:
        extra, more = lint_rules(extra_dir)
        problems += more
        by_id.update({r.id: r for r in extra})
    if problems:
        raise RuleError(f"{len(problems)} rule problem(s):\n" + "\n".join(map(str, problems)))
    if names:
        unknown = [n for n in names if n not in by_id]
        if unknown:
            raise RuleError(f"unknown rule(s) {', '.join(unknown)}; known: {', '.join(sorted(by_id))}")
        return [by_id[n] for n in names]
    heuristic_owner: dict[str, str] = {}
    for rule in by_id.values():  # an extra rule may claim a heuristic a shipped rule also claims
        if rule.heuristic and heuristic_owner.setdefault(rule.heuristic, rule.id) != rule.id:
            raise RuleError(f"heuristic {rule.heuristic!r} is claimed by rules {heuristic_owner[rule.heuristic]!r} "
                            f"and {rule.id!r}")
    return sorted(by_id.values(), key=lambda r: (-r.severity, r.id))


__all__ = ["GEOMETRY_KEYS", "HEURISTIC_KEYS", "RULES_DIR", "Rule", "RuleError", "RuleProblem", "lint_rules",
           "load_rules"]
