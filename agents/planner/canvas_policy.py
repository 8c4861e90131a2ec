"""Canvas policies: description -> canvas (width, height), with the reasons.

One model serves both policies (team sky's prompt-conditioned adaptive canvas, methods.md):

    score = sum(orientation weights of the phrases present) / (1 + sum(square damping weights present))

A negative score asks for a taller canvas, a positive one for a wider canvas. The canvas classes are the
configured aspect ratios (width / height) plus 1:1, sorted. Square when |score| is inside the square band;
each class further from square needs the score to pass one more cut point (`tall_cuts` for the classes
below 1, nearest-to-square first; `wide_cuts` above 1). Weak evidence therefore always gives a square.

- The RULE policy takes its weights from prompts/planner/canvas_evidence.json (one weight per group) and
  spaces its cut points evenly (`square_margin`, then every `class_step`).
- The FITTED policy (agents/planner/plan_fit.py, `portraitcraft plan fit`) has per-phrase weights and cut points
  learned from the train images' real aspect ratios, and is stored as JSON.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from agents.planner.plan_keywords import PhraseMatcher, PlannerDataError, load_planner_data
from portraitcraft.errors import InputError

EVIDENCE_FILE = "canvas_evidence.json"
POLICY_FORMAT = "portraitcraft.canvas_policy/2"
LEGACY_FORMAT = "portraitcraft.canvas_policy/1"  # the same with `method` spelled `kind`

Effect = Literal["orientation", "square"]
"""What a phrase does: push the orientation (signed weight) or damp the score toward square."""
Orientation = Literal["portrait", "square", "landscape"]


class Evidence(BaseModel):
    """One phrase found in a description, and what it weighs."""

    model_config = ConfigDict(frozen=True)

    phrase: str
    group: str
    effect: Effect
    weight: float


class Canvas(BaseModel):
    """A chosen canvas and why (shared by every policy).

    `aspect` is the class ratio (width / height); `width` / `height` are the sides after rounding to the
    model's multiple, so their ratio is close to, not always exactly, `aspect`.
    """

    model_config = ConfigDict(frozen=True)

    width: int
    height: int
    aspect: float
    label: str = Field(description="the class as W:H, e.g. '2:3'")
    policy: Literal["rule", "fitted"]
    score: float
    evidence: list[Evidence] = Field(default_factory=list)
    reasons: list[str] = Field(default_factory=list)

    @property
    def orientation(self) -> Orientation:
        return orientation_of(self.aspect)


def orientation_of(aspect: float) -> Orientation:
    """'portrait' below 1, 'square' at 1, 'landscape' above 1 (width / height)."""
    if np.isclose(aspect, 1.0):
        return "square"
    return "portrait" if aspect < 1 else "landscape"


def ratio_label(aspect: float) -> str:
    """A short W:H label for a ratio.

    Example:
        >>> ratio_label(9 / 16), ratio_label(1.5)
        ('9:16', '3:2')
    """
    frac = Fraction(aspect).limit_denominator(20)
    return f"{frac.numerator}:{frac.denominator}"


def canvas_classes(aspect_ratios: list[float]) -> list[float]:
    """The canvas classes: the given ratios plus 1.0, de-duplicated and sorted.

    Example:
        >>> canvas_classes([1.5, 2 / 3])
        [0.666667, 1.0, 1.5]
    """
    if any(not r > 0 for r in aspect_ratios):
        raise InputError(f"aspect ratios must be positive (got {aspect_ratios})")
    return sorted({round(float(r), 6) for r in aspect_ratios} | {1.0})


def canvas_size(aspect: float, long_side: int, multiple: int) -> tuple[int, int]:
    """(width, height) with the long side fixed and both sides rounded to `multiple` (at least one multiple).

    Args:
        aspect (float): width / height.
        long_side (int): the longer side in pixels (rounded to `multiple` too).
        multiple (int): the model's side multiple (16 for Z-Image and Qwen-Image).

    Example:
        >>> canvas_size(2 / 3, 1024, 16)
        (688, 1024)
    """
    long = max(multiple, round(long_side / multiple) * multiple)
    short = max(multiple, round(long * min(aspect, 1 / aspect) / multiple) * multiple)
    return (long, short) if aspect >= 1 else (short, long)


def ordinal_index(scores: np.ndarray, tall_cuts: np.ndarray, wide_cuts: np.ndarray, square: int) -> np.ndarray:
    """Class indices for scores, vectorised over items and (for fitting) candidate policies.

    Args:
        scores (np.ndarray): shape (n,) or (n, S) for S candidate policies.
        tall_cuts (np.ndarray): shape (J_tall,) or (J_tall, S), increasing, positive.
        wide_cuts (np.ndarray): shape (J_wide,) or (J_wide, S), increasing, positive.
        square (int): the index of 1:1 among the classes.

    A score moves one class away from square per cut point it strictly passes.

    Example:
        >>> ordinal_index(np.array([-2.0, 0.3, 0.9]), np.array([0.5, 1.5]), np.array([0.5]), 2).tolist()
        [0, 2, 3]
    """
    index = np.full(scores.shape, square, dtype=np.intp)
    for cut in tall_cuts:  # a handful of cut points: a loop beats a (J, n, S) boolean cube
        index -= scores < -cut
    for cut in wide_cuts:
        index += scores > cut
    return index


class CanvasPolicy(BaseModel):
    """A canvas policy: phrase weights, square damping and cut points over a set of canvas classes.

    Build one with `rule_policy(...)` or `load_policy(path)`; call `choose(text, ...)`.

    Example:
        >>> policy = rule_policy([2 / 3, 1.0, 3 / 2])
        >>> policy.choose("A full-body portrait, standing", long_side=1024, multiple=16).label
        '2:3'
    """

    model_config = ConfigDict(extra="forbid")

    format: Literal["portraitcraft.canvas_policy/2"] = POLICY_FORMAT
    method: Literal["rule", "fitted"] = Field(description="how the weights were set: the rule data or a fit")
    classes: list[float] = Field(description="canvas aspect ratios (width / height), sorted, including 1.0")
    weights: dict[str, float] = Field(description="orientation weight per phrase: < 0 taller, > 0 wider")
    damping: dict[str, float] = Field(description="square damping per phrase (>= 0)")
    groups: dict[str, str] = Field(default_factory=dict, description="phrase -> evidence group name")
    tall_cuts: list[float]
    wide_cuts: list[float]
    fit: dict[str, Any] = Field(default_factory=dict, description="how a fitted policy was fitted and scored")

    _matcher: PhraseMatcher | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _consistent(self) -> CanvasPolicy:
        if self.classes != sorted(self.classes) or 1.0 not in self.classes:
            raise ValueError("classes must be sorted and include 1.0")
        n_tall = self.classes.index(1.0)
        n_wide = len(self.classes) - n_tall - 1
        if len(self.tall_cuts) != n_tall or len(self.wide_cuts) != n_wide:
            raise ValueError(f"need {n_tall} tall and {n_wide} wide cut points for classes {self.classes}")
        for cuts in (self.tall_cuts, self.wide_cuts):
            if any(c <= 0 for c in cuts) or cuts != sorted(cuts):
                raise ValueError("cut points must be positive and increasing")
        if any(d < 0 for d in self.damping.values()):
            raise ValueError("damping weights must be >= 0")
        if overlap := set(self.weights) & set(self.damping):
            raise ValueError(f"phrases both orientation and square: {sorted(overlap)}")
        return self

    @property
    def square_index(self) -> int:
        return self.classes.index(1.0)

    @property
    def matcher(self) -> PhraseMatcher:
        if self._matcher is None:
            self._matcher = PhraseMatcher([*self.weights, *self.damping])
        return self._matcher

    def evidence(self, text: str) -> list[Evidence]:
        """The phrases of this policy present in `text`, with their weights."""
        found = []
        for phrase in self.matcher.find(text):
            effect: Effect = "orientation" if phrase in self.weights else "square"
            weight = self.weights[phrase] if effect == "orientation" else self.damping[phrase]
            found.append(Evidence(phrase=phrase, group=self.groups.get(phrase, ""), effect=effect, weight=weight))
        return found

    def choose(self, text: str, *, long_side: int, multiple: int) -> Canvas:
        """The canvas for a description, with the evidence and a readable account of the choice.

        Args:
            text (str): the description (content and composition together).
            long_side (int): the canvas's long side in pixels.
            multiple (int): the model's side multiple.
        """
        found = self.evidence(text)
        push = sum(e.weight for e in found if e.effect == "orientation")
        damp = sum(e.weight for e in found if e.effect == "square")
        score = push / (1.0 + damp)
        index = int(ordinal_index(np.array([score]), np.array(self.tall_cuts), np.array(self.wide_cuts),
                                  self.square_index)[0])
        aspect = self.classes[index]
        width, height = canvas_size(aspect, long_side, multiple)
        label = ratio_label(aspect)
        low = f"-{self.tall_cuts[0]:.2f}" if self.tall_cuts else "-inf"
        high = f"{self.wide_cuts[0]:.2f}" if self.wide_cuts else "inf"
        reasons = [_reason(e) for e in found] or ["no canvas evidence in the description"]
        reasons.append(
            f"{self.method} policy: score {push:+.2f} / (1 + {damp:.2f}) = {score:+.2f}, square band "
            f"[{low}, {high}] -> {label} {orientation_of(aspect)}, {width}x{height}"
        )
        return Canvas(width=width, height=height, aspect=aspect, label=label, policy=self.method, score=score,
                      evidence=found, reasons=reasons)

    def save(self, path: str | Path) -> Path:
        """Write the policy as JSON (atomically)."""
        from portraitcraft.runs import atomic_write_json

        return atomic_write_json(path, self.model_dump(mode="json"))


def _reason(e: Evidence) -> str:
    where = f" ({e.group})" if e.group else ""
    if e.effect == "square":
        return f"'{e.phrase}'{where}: square damping {e.weight:.2f}"
    return f"'{e.phrase}'{where}: {e.weight:+.2f} toward {'wider' if e.weight > 0 else 'taller'}"


def rule_policy(aspect_ratios: list[float]) -> CanvasPolicy:
    """The rule policy over these aspect ratios, from prompts/planner/canvas_evidence.json.

    Args:
        aspect_ratios (list[float]): width / height ratios (PlannerConfig.aspect_ratios); 1.0 is added.

    Raises:
        PlannerDataError: the evidence file is malformed (a phrase in two groups, a bad effect or weight).

    Example:
        >>> rule_policy([9 / 16, 16 / 9]).classes
        [0.5625, 1.0, 1.777778]
    """
    data = load_planner_data(EVIDENCE_FILE)
    classes = canvas_classes(aspect_ratios)
    weights: dict[str, float] = {}
    damping: dict[str, float] = {}
    groups: dict[str, str] = {}
    try:
        margin, step = float(data["rule"]["square_margin"]), float(data["rule"]["class_step"])
        for group in data["groups"]:
            target = {"orientation": weights, "square": damping}[group["effect"]]
            for phrase in PhraseMatcher(group["phrases"]).phrases:
                if phrase in groups:
                    raise PlannerDataError(
                        f"prompts/planner/{EVIDENCE_FILE}: phrase '{phrase}' is in groups "
                        f"'{groups[phrase]}' and '{group['name']}'"
                    )
                target[phrase] = float(group["weight"])
                groups[phrase] = str(group["name"])
    except (KeyError, TypeError, ValueError) as exc:
        raise PlannerDataError(f"prompts/planner/{EVIDENCE_FILE}: malformed ({type(exc).__name__}: {exc})") from None
    n_tall = classes.index(1.0)
    n_wide = len(classes) - n_tall - 1
    try:
        return CanvasPolicy(
            method="rule", classes=classes, weights=weights, damping=damping, groups=groups,
            tall_cuts=[margin + step * j for j in range(n_tall)],
            wide_cuts=[margin + step * j for j in range(n_wide)],
        )
    except ValidationError as exc:
        raise PlannerDataError(f"prompts/planner/{EVIDENCE_FILE}: {exc.errors()[0]['msg']}") from None


def load_policy(path: str | Path) -> CanvasPolicy:
    """Read a policy JSON written by `CanvasPolicy.save` / `portraitcraft plan fit`.

    Raises:
        InputError: the file is missing, not JSON, or not a canvas policy (names the file and the problem).
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"canvas policy {p}: file does not exist") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"canvas policy {p}: not a JSON file ({exc})") from None
    except OSError as exc:  # a folder, no permission, ...
        raise InputError(f"canvas policy {p}: cannot be read ({exc.strerror or exc})") from None
    if isinstance(data, dict) and data.get("format") == LEGACY_FORMAT:
        data = {**data, "format": POLICY_FORMAT, "method": data.get("kind")}
        data.pop("kind", None)
    try:
        return CanvasPolicy.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "policy"
        raise InputError(f"canvas policy {p}: {where}: {err['msg']}") from None
