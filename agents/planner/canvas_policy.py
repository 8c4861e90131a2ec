"""Canvas policies: description -> canvas (width, height), with the reasons.

Two layers of evidence (the second is team sky's prompt-conditioned adaptive canvas, methods.md):

1. STRONG evidence decides the orientation: the composition targets (agents/planner/targets.py) an entry of
   `strong` names, first match in order: an explicit format word ("vertical frame", "16:9"), three or more
   people, the crop level ("full-body", "head-and-shoulders"). Its aspect is the default class.
2. WEAK cues (phrases with weights) give a score

       score = sum(orientation weights present) / (1 + sum(square damping present)) / max(1, words / words_per_unit)

   negative = taller, positive = wider. Dividing by the text length (in units of `words_per_unit` words)
   weighs cues per text length, not per occurrence: a 400-word composition analysis almost always says
   "background" or "expansive" somewhere, and that must not add up to a wide canvas. Each class further
   from square needs the score to pass one more cut point (`tall_cuts` for the classes below 1,
   nearest-to-square first; `wide_cuts` above 1).

With strong evidence the weak score may pick another class of the SAME orientation (a very tall one for a
full-body shot in a doorway), else the strong default stands. Without it the weak class stands, except
inside the square band, where the `prior` class does (a configurable prior orientation: people portraits
are mostly upright).

- The RULE policy takes its weights, strong table and prior from prompts/planner/canvas_evidence.json and
  PlannerConfig, and spaces its cut points evenly (`square_margin`, then every `class_step`).
- The FITTED policy (agents/planner/plan_fit.py, `portraitcraft plan fit`) has per-phrase weights, cut
  points, a strong table and a prior learned from the train images' real aspect ratios, and is stored as
  JSON (with the fitted reading convention of "her left", `plan fit-convention`).
"""

from __future__ import annotations

import json
import re
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from portraitcraft.agents.planner.plan_keywords import PhraseMatcher, PlannerDataError, load_planner_data, normalise
from portraitcraft.errors import InputError
from portraitcraft.schemas import CompositionTargets

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


class StrongRule(BaseModel):
    """A composition target that decides the orientation: `key` = `value` -> the class `aspect`.

    `value` "3+" on `people` means three or more. `n` / `share`: in a fitted policy, how many train items
    this entry decided and the share of them whose image had this orientation.
    """

    model_config = ConfigDict(frozen=True)

    key: Literal["orientation", "people", "crop_level"]
    value: str
    aspect: float = Field(gt=0)
    n: int | None = None
    share: float | None = None

    def matches(self, targets: CompositionTargets) -> bool:
        got = getattr(targets, self.key)
        if got is None:
            return False
        if self.key == "people" and self.value.endswith("+"):
            return int(got) >= int(self.value[:-1])
        return str(got) == self.value


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
    ratio: str = Field("", description="the real width:height after rounding, e.g. '2:1' for 96x48")
    policy: Literal["rule", "fitted"]
    score: float
    decided_by: str | None = Field(None, description="the strong target that decided the orientation")
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
        >>> ratio_label(9 / 16), ratio_label(1.5), ratio_label(96 / 48)
        ('9:16', '3:2', '2:1')
    """
    frac = Fraction(aspect).limit_denominator(20)
    return f"{frac.numerator}:{frac.denominator}"


ORIENTATION_CODE = {"portrait": -1, "square": 0, "landscape": 1}


def decide_index(weak: np.ndarray, strong: np.ndarray, orient: np.ndarray, prior: int, square: int) -> np.ndarray:
    """Final class indices from weak-score classes and strong decisions (vectorised like `ordinal_index`).

    Args:
        weak (np.ndarray): (n,) or (n, S) class indices from the weak score.
        strong (np.ndarray): (n,) the strong default class index per item, -1 where nothing strong was said.
        orient (np.ndarray): (C,) orientation code per class (-1 portrait, 0 square, 1 landscape).
        prior (int): the class inside the square band when nothing strong was said.
        square (int): the index of 1:1.

    Example:
        >>> orient = np.array([-1, -1, 0, 1])
        >>> decide_index(np.array([0, 3, 2, 2]), np.array([1, 1, -1, 3]), orient, 1, 2).tolist()
        [0, 1, 1, 3]
    """
    strong_col = strong if weak.ndim == 1 else strong[:, None]
    has_strong = strong_col >= 0
    same_side = (orient[weak] == orient[np.maximum(strong_col, 0)]) & (orient[np.maximum(strong_col, 0)] != 0)
    with_strong = np.where(same_side, weak, strong_col)
    without = np.where(weak == square, prior, weak)
    return np.where(has_strong, with_strong, without)


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
    strong: list[StrongRule] = Field(default_factory=list, description="targets that decide the orientation")
    prior: float = Field(1.0, description="the class (a ratio in `classes`) when nothing decides: weak score "
                         "inside the square band and no strong target")
    words_per_unit: float = Field(0.0, ge=0, description="weak score / max(1, words / this); 0 = no scaling")
    convention: dict[str, Any] | None = Field(None, description="the fitted reading of 'her left' (strict|loose) "
                                              "with its evidence counts (plan fit-convention)")
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
        if not any(np.isclose(self.prior, c) for c in self.classes):
            raise ValueError(f"prior {self.prior} is not one of the classes {self.classes}")
        for rule in self.strong:
            if not any(np.isclose(rule.aspect, c) for c in self.classes):
                raise ValueError(f"strong {rule.key}={rule.value}: aspect {rule.aspect} is not one of the classes")
        return self

    @property
    def square_index(self) -> int:
        return self.classes.index(1.0)

    @property
    def prior_index(self) -> int:
        return self.class_index(self.prior)

    @property
    def orientation_codes(self) -> np.ndarray:
        return np.array([ORIENTATION_CODE[orientation_of(c)] for c in self.classes])

    @property
    def reading_convention(self) -> Literal["strict", "loose"] | None:
        """The fitted reading convention of subject-frame sides, when `plan fit-convention` stored one."""
        value = (self.convention or {}).get("value")
        return value if value in ("strict", "loose") else None

    def class_index(self, aspect: float) -> int:
        return int(np.argmin(np.abs(np.log(np.asarray(self.classes)) - np.log(aspect))))

    def strong_rule(self, targets: CompositionTargets) -> StrongRule | None:
        """The first strong entry the targets match, or None."""
        return next((r for r in self.strong if r.matches(targets)), None)

    def length_scale(self, text: str) -> float:
        """The divisor of the weak score for this text: max(1, words / words_per_unit), 1 when unscaled."""
        if self.words_per_unit <= 0:
            return 1.0
        return max(1.0, len(normalise(text).split()) / self.words_per_unit)

    @property
    def matcher(self) -> PhraseMatcher:
        if self._matcher is None:
            self._matcher = PhraseMatcher([*self.weights, *self.damping])
        return self._matcher

    def evidence(self, text: str) -> list[Evidence]:
        """The phrases of this policy present in `text`, with their weights (the `not_cues` of
        canvas_evidence.json, 'stand out', 'sweeping curve', are taken out first: a cue counts by meaning)."""
        found = []
        for phrase in self.matcher.find(_without_not_cues(text)):
            effect: Effect = "orientation" if phrase in self.weights else "square"
            weight = self.weights[phrase] if effect == "orientation" else self.damping[phrase]
            found.append(Evidence(phrase=phrase, group=self.groups.get(phrase, ""), effect=effect, weight=weight))
        return found

    def choose(self, text: str, *, long_side: int, multiple: int,
               targets: CompositionTargets | None = None) -> Canvas:
        """The canvas for a description, with the evidence and a readable account of the choice.

        Args:
            text (str): the description (content and composition together).
            long_side (int): the canvas's long side in pixels.
            multiple (int): the model's side multiple.
            targets (CompositionTargets, optional): the description's targets; extracted from `text` when
                not given (orientation, people and crop level do not depend on the reading convention).
        """
        if targets is None:
            from portraitcraft.agents.planner.targets import extract_targets

            targets = extract_targets(text, "")
        found = self.evidence(text)
        push = sum(e.weight for e in found if e.effect == "orientation")
        damp = sum(e.weight for e in found if e.effect == "square")
        scale = self.length_scale(text)
        score = push / (1.0 + damp) / scale
        weak = int(ordinal_index(np.array([score]), np.array(self.tall_cuts), np.array(self.wide_cuts),
                                 self.square_index)[0])
        strong = self.strong_rule(targets)
        lying = [e.phrase for e in found if e.group == RECLINING_GROUP]
        if strong is not None and strong.key == "crop_level" and lying:
            strong = None  # a lying full-body figure is wide: the crop level does not decide, the cues do
        strong_index = self.class_index(strong.aspect) if strong is not None else -1
        index = int(decide_index(np.array([weak]), np.array([strong_index]), self.orientation_codes,
                                 self.prior_index, self.square_index)[0])
        aspect = self.classes[index]
        width, height = canvas_size(aspect, long_side, multiple)
        label, ratio = ratio_label(aspect), ratio_label(width / height)
        low = f"-{self.tall_cuts[0]:.2f}" if self.tall_cuts else "-inf"
        high = f"{self.wide_cuts[0]:.2f}" if self.wide_cuts else "inf"
        reasons = [_reason(e) for e in found] or ["no weak canvas cues in the description"]
        per_length = f" / {scale:.1f} (text length)" if scale > 1 else ""
        reasons.append(f"weak cues: {push:+.2f} / (1 + {damp:.2f}){per_length} = {score:+.2f}, square band "
                       f"[{low}, {high}] -> {ratio_label(self.classes[weak])}")
        decided_by = None
        if lying and targets.crop_level is not None and strong is None:
            reasons.append(f"a lying pose ({lying[0]!r}): the crop level {targets.crop_level} does not decide the "
                           "canvas")
        if strong is not None:
            decided_by = f"{strong.key}={getattr(targets, strong.key)}"
            said = targets.phrases.get(strong.key, "")
            how = ("the weak cues pick this class of that orientation" if index != strong_index
                   else f"default {ratio_label(strong.aspect)}")
            reasons.append(f"strong: {strong.key} {getattr(targets, strong.key)}"
                           f"{f' (from {said!r})' if said else ''} decides {orientation_of(strong.aspect)}; {how}")
        elif weak == self.square_index and index != weak:
            reasons.append(f"nothing decides: the prior {ratio_label(self.prior)} {orientation_of(self.prior)}")
        size = f"{width}x{height} = {ratio} {orientation_of(aspect)}"
        rounded = f" (class {label}, sides rounded to multiples of {multiple})" if ratio != label else ""
        reasons.append(f"{self.method} policy -> {size}{rounded}")
        return Canvas(width=width, height=height, aspect=aspect, label=label, ratio=ratio, policy=self.method,
                      score=score, decided_by=decided_by, evidence=found, reasons=reasons)

    def save(self, path: str | Path) -> Path:
        """Write the policy as JSON (atomically)."""
        from portraitcraft.atomic import atomic_write_json

        return atomic_write_json(path, self.model_dump(mode="json"))


RECLINING_GROUP = "reclining"
"""The canvas_evidence.json group of lying / reclining poses (see `choose`)."""


@cache
def _not_cues() -> re.Pattern[str] | None:
    words = load_planner_data(EVIDENCE_FILE).get("not_cues", [])
    if not words:
        return None
    return re.compile(r"\b(?:" + "|".join(re.escape(normalise(w)) for w in words) + r")\b")


def _without_not_cues(text: str) -> str:
    pattern = _not_cues()
    return pattern.sub(" ", normalise(text)) if pattern is not None else text


def _reason(e: Evidence) -> str:
    where = f" ({e.group})" if e.group else ""
    if e.effect == "square":
        return f"'{e.phrase}'{where}: square damping {e.weight:.2f}"
    return f"'{e.phrase}'{where}: {e.weight:+.2f} toward {'wider' if e.weight > 0 else 'taller'}"


def rule_policy(aspect_ratios: list[float], prior_orientation: Orientation = "portrait") -> CanvasPolicy:
    """The rule policy over these aspect ratios, from prompts/planner/canvas_evidence.json.

    Args:
        aspect_ratios (list[float]): width / height ratios (PlannerConfig.aspect_ratios); 1.0 is added.
        prior_orientation (str, optional, defaults to "portrait"): the canvas when nothing decides
            (PlannerConfig.prior_orientation); its class is the data's prior ratio snapped to the classes.

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

    def snap(aspect: float) -> float:
        return classes[int(np.argmin(np.abs(np.log(classes) - np.log(float(aspect)))))]

    try:
        strong = [StrongRule(key=r["key"], value=str(r["value"]), aspect=snap(r["aspect"])) for r in data["strong"]]
        prior = snap(data["prior"][prior_orientation])
        words_per_unit = float(data["weak"]["words_per_unit"])
        return CanvasPolicy(
            method="rule", classes=classes, weights=weights, damping=damping, groups=groups,
            tall_cuts=[margin + step * j for j in range(n_tall)],
            wide_cuts=[margin + step * j for j in range(n_wide)],
            strong=strong, prior=prior, words_per_unit=words_per_unit,
        )
    except (KeyError, TypeError) as exc:
        raise PlannerDataError(f"prompts/planner/{EVIDENCE_FILE}: malformed ({type(exc).__name__}: {exc})") from None
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
