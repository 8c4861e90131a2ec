"""Shared pydantic types: the PortraitCraft vocabulary every package speaks.

The attribute names, level codes and score-to-level rule are the benchmark's own
(../shared/docs/portraitcraft-data.md); changing them breaks submissions.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from portraitcraft.ids import default_item_id, item_key

ATTRIBUTES: tuple[str, ...] = (
    "Color Harmony",
    "Visual Style Consistency",
    "Sharpness",
    "Light and Shadow Modeling",
    "Creativity and Originality",
    "Exposure Control",
    "Application of Classical Composition Principles",
    "Depth of Field and Layering",
    "Visual Center Stability",
    "Visual Flow Guidance",
    "Structural Support Stability",
    "Appropriateness of Negative Space",
    "Subject Integrity",
)
"""The 13 composition attributes, exact strings, in the benchmark's order."""

ANSWER_LETTERS: tuple[str, ...] = ("A", "B", "C", "D")
PLACEHOLDER_LEVEL = "x"
PLACEHOLDER_ANSWER = "x"


class Level(StrEnum):
    """A composition level. Its submission code is A (Poor), B (Medium), C (Good)."""

    POOR = "Poor"
    MEDIUM = "Medium"
    GOOD = "Good"

    @property
    def code(self) -> str:
        return _LEVEL_TO_CODE[self]

    @classmethod
    def from_code(cls, code: str) -> Level:
        """Level from a submission code ("A"/"B"/"C") or a level name ("Poor"...), case-insensitive."""
        exact = _CODE_TO_LEVEL.get(code) if isinstance(code, str) else None
        if exact is not None:  # the common case, first: scoring 2,000 x 13 labels calls this a lot
            return exact
        text = str(code).strip()
        upper = text.upper()
        if upper in _CODE_TO_LEVEL:
            return _CODE_TO_LEVEL[upper]
        for level in cls:
            if level.value.lower() == text.lower():
                return level
        raise ValueError(f"level {code!r} is not one of A, B, C (Poor, Medium, Good)")

    @classmethod
    def from_score(cls, score: float) -> Level:
        """The benchmark rule: score < 5 is Poor, 5 <= score < 7 is Medium, score >= 7 is Good."""
        return level_from_score(score)

    @property
    def midpoint(self) -> float:
        """A representative 0-10 score for the level (used when only levels are known)."""
        return {Level.POOR: 3.0, Level.MEDIUM: 6.0, Level.GOOD: 8.0}[self]


_LEVEL_TO_CODE = {Level.POOR: "A", Level.MEDIUM: "B", Level.GOOD: "C"}
_CODE_TO_LEVEL = {v: k for k, v in _LEVEL_TO_CODE.items()}
LEVEL_CODES: tuple[str, ...] = ("A", "B", "C")


def level_from_score(score: float, thresholds: tuple[float, float] = (5.0, 7.0)) -> Level:
    """Map a 0-10 attribute score to a level.

    Args:
        score (float): the attribute score.
        thresholds (tuple[float, float], optional, defaults to (5, 7)): the Medium and Good lower bounds;
            per-criterion calibrated thresholds (methods.md, MSIIP) pass their own.

    Example:
        >>> level_from_score(6.9).code
        'B'
    """
    low, high = thresholds
    if score < low:
        return Level.POOR
    if score < high:
        return Level.MEDIUM
    return Level.GOOD


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


def _check_image_path(value: str) -> str:
    if not value or not value.strip():
        raise ValueError("must be a non-empty file name")
    if "\x00" in value:
        raise ValueError("contains a NUL byte")
    return value


def _check_attribute_keys(criteria: dict[str, object]) -> None:
    unknown = [k for k in criteria if k not in ATTRIBUTES]
    if unknown:
        raise ValueError(f"unknown attribute(s) {', '.join(map(repr, unknown))}; expected the 13 names in order")
    missing = [a for a in ATTRIBUTES if a not in criteria]
    if missing:
        raise ValueError(f"missing attribute(s) {', '.join(map(repr, missing))}")


ImagePath = Annotated[str, AfterValidator(_check_image_path)]


class CriterionScore(_Strict):
    """One attribute of a Track 1 train item: a 0-10 score and the expert's reason."""

    score: Annotated[float, Field(ge=0.0, le=10.0)]
    reason: str = ""

    @property
    def level(self) -> Level:
        return level_from_score(self.score)


class Track1TrainItem(_Strict):
    """A Track 1 train item: 13 scored attributes and an overall 0-100 score (no VQA)."""

    image_path: ImagePath
    criteria: dict[str, CriterionScore]
    total_score: Annotated[float, Field(ge=0, le=100)]

    @field_validator("criteria")
    @classmethod
    def _all_attributes(cls, v: dict[str, CriterionScore]) -> dict[str, CriterionScore]:
        _check_attribute_keys(v)
        return v

    @property
    def levels(self) -> dict[str, Level]:
        return {a: self.criteria[a].level for a in ATTRIBUTES}


class CriterionLevel(_Strict):
    """One attribute of a Track 1 test item: a level code, or the template placeholder "x"."""

    level: str

    @field_validator("level")
    @classmethod
    def _code(cls, v: str) -> str:
        if v == PLACEHOLDER_LEVEL:
            return v
        return Level.from_code(v).code


class Track1TestItem(_Strict):
    """A Track 1 test item (the template participants fill in, or a labelled ground truth).

    In the template, levels are "x", `total_score` is 0 and `answer` is "x": placeholders, not labels.
    """

    image_path: ImagePath
    criteria: dict[str, CriterionLevel]
    total_score: Annotated[float, Field(ge=0, le=100)]
    question: str
    options: dict[str, str]
    answer: str

    @field_validator("criteria")
    @classmethod
    def _all_attributes(cls, v: dict[str, CriterionLevel]) -> dict[str, CriterionLevel]:
        _check_attribute_keys(v)
        return v

    @field_validator("options")
    @classmethod
    def _four_options(cls, v: dict[str, str]) -> dict[str, str]:
        if sorted(v) != list(ANSWER_LETTERS):
            raise ValueError(f"must have exactly the keys A, B, C, D (got {', '.join(sorted(v)) or 'none'})")
        return v

    @field_validator("answer")
    @classmethod
    def _answer(cls, v: str) -> str:
        if v != PLACEHOLDER_ANSWER and v not in ANSWER_LETTERS:
            raise ValueError(f"answer {v!r} is not one of A, B, C, D (or the placeholder 'x')")
        return v

    @property
    def is_placeholder(self) -> bool:
        """True when the item carries the template's placeholders instead of labels."""
        return self.answer == PLACEHOLDER_ANSWER or any(
            c.level == PLACEHOLDER_LEVEL for c in self.criteria.values()
        )

    @property
    def levels(self) -> dict[str, Level | None]:
        return {
            a: (None if self.criteria[a].level == PLACEHOLDER_LEVEL else Level.from_code(self.criteria[a].level))
            for a in ATTRIBUTES
        }


def _to_level(value: object) -> object:
    return Level.from_code(value) if isinstance(value, str) else value


LevelField = Annotated[Level, BeforeValidator(_to_level)]
"""A level given as a code (A/B/C) or a name (Poor/Medium/Good)."""


class Track1Prediction(_Strict):
    """One model's answer to a Track 1 test item.

    `total_score` may be fractional while aggregating; submission writers round it to an int.
    """

    image_path: ImagePath
    levels: dict[str, LevelField]
    total_score: Annotated[float, Field(ge=0, le=100, strict=True, allow_inf_nan=False)]
    """A finite number (a string, a bool, NaN or infinity is refused, never coerced)."""
    answer: Literal["A", "B", "C", "D"]
    scores: dict[str, float] | None = None
    """Optional continuous 0-10 attribute scores behind the levels."""

    @field_validator("levels")
    @classmethod
    def _all_attributes(cls, v: dict[str, Level]) -> dict[str, Level]:
        _check_attribute_keys(v)
        return v


class Track2Spec(_Strict):
    """A Track 2 item to draw: content and composition descriptions, and the output file name.

    `id` is the item's raw identity (results row id, graph thread_id, source of its folder name); it
    defaults to the stem of the image's key and is never sanitised here: `portraitcraft.ids.safe_id`
    does that once, where a path is built.
    """

    image_path: ImagePath
    content: str
    composition: str
    id: str = ""

    @model_validator(mode="after")
    def _fill_id(self) -> Track2Spec:
        if not self.id:
            self.id = default_item_id(self.image_path)
        return self

    @property
    def key(self) -> str:
        """The join key (`portraitcraft.ids.item_key`)."""
        return item_key(self.image_path)

    @property
    def output_name(self) -> str:
        """The submission file name: the basename of `image_path` (its key)."""
        return item_key(self.image_path)

    @property
    def description(self) -> str:
        return f"{self.content}\n\n{self.composition}".strip()


@dataclass(frozen=True)
class ItemProblem:
    """One problem with one input item."""

    index: int
    image_path: str
    field: str
    problem: str

    def __str__(self) -> str:
        return f"item {self.index} ({self.image_path or '?'}): {self.field}: {self.problem}"


# --- Composition vocabulary: what the vision tools measure, what a description asks, what a critic finds ---
# Every direction is in the VIEWER's frame (the side of the image) unless a field says otherwise; coordinates
# are normalised 0-1 with the origin at the top-left.

Horizontal = Literal["left", "center", "right"]
Vertical = Literal["upper", "middle", "lower"]
CropLevel = Literal["close-up", "head-and-shoulders", "half-body", "three-quarter", "full-body"]
CROP_LEVELS: tuple[str, ...] = ("close-up", "head-and-shoulders", "half-body", "three-quarter", "full-body")
"""Crop levels from tightest to loosest (index order is meaningful: a tighter crop has a lower index)."""
Direction = Literal["left", "right", "camera"]
Orientation = Literal["portrait", "landscape", "square"]
Frame = Literal["viewer", "subject"]
FindingSource = Literal["vlm", "geometry", "heuristic"]


class _Open(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PersonDetection(_Open):
    """One detected person: box `[x0, y0, x1, y1]`, detector score, COCO-17 keypoints name -> `[x, y, score]`."""

    box: tuple[float, float, float, float]
    score: float
    keypoints: dict[str, tuple[float, float, float]] = Field(default_factory=dict)


class SubjectFeatures(_Open):
    """The main subject's measured composition (viewer's frame). The `portraitcraft inspect --json` contract."""

    box: tuple[float, float, float, float]
    centroid: tuple[float, float]
    face_center: tuple[float, float] | None = None
    horizontal: Horizontal
    vertical: Vertical
    thirds_distance: float
    headroom: float
    crop_level: CropLevel | None = None
    facing: Direction | None = None
    gaze: Direction | None = None
    tilt_deg: float | None = None
    people: int = 1


TargetFrame = Literal["viewer", "subject", "ambiguous"]
"""The frame a target's words were written in: the viewer's (the side of the image), the subject's own (settled
by the same text), or ambiguous (a bare "to her left" nothing in the text settles: never enforced)."""
TextSection = Literal["content", "composition"]


class TargetEvidence(_Open):
    """Why a composition target has its value: the `plan show --json` `target_evidence` contract (per key).

    `spans` are `[start, end, section]` character offsets into the ORIGINAL content or composition text;
    `source` names the pattern or model that read it; `note` says what was set aside (a conflict, an implied
    value an explicit statement beat, a disagreement between the rules and the LLM).
    """

    value: str | int | None
    spans: list[tuple[int, int, TextSection]] = Field(default_factory=list)
    frame: TargetFrame = "viewer"
    confidence: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    enforced: bool = False
    source: str = ""
    note: str = ""


class CompositionTargets(_Open):
    """What a description demands, in the same vocabulary as `SubjectFeatures`; None where the text is silent.

    `phrases` maps each non-null key to the words it came from (evidence for a report or a finding);
    `evidence` (when the extractor filled it) holds per key the spans, frame, confidence and whether the
    critic enforces it. A key without evidence is enforced (targets built by hand, older checkpoints).
    """

    horizontal: Horizontal | None = None
    vertical: Vertical | None = None
    crop_level: CropLevel | None = None
    facing: Direction | None = None
    gaze: Direction | None = None
    orientation: Orientation | None = None
    people: int | None = None
    phrases: dict[str, str] = Field(default_factory=dict)
    evidence: dict[str, TargetEvidence] = Field(default_factory=dict)

    def enforced(self, key: str) -> bool:
        """Whether the critic enforces `key`: it is set, and its evidence (if any) is marked enforced.

        Example:
            >>> CompositionTargets(gaze="left").enforced("gaze")
            True
        """
        if getattr(self, key, None) is None:
            return False
        ev = self.evidence.get(key)
        return ev is None or ev.enforced


class Finding(_Open):
    """One critic verdict on one rule for one image.

    `detected` means the failure mode IS present (the image violates the rule). `expected` / `measured` carry
    the values compared (geometry) and `frame` the reference frame they are in; `instruction` is the edit that
    would fix it, phrased in the viewer's frame.
    """

    rule: str
    detected: bool
    confidence: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0
    evidence: str = ""
    expected: str | int | float | None = None
    measured: str | int | float | None = None
    frame: Frame | None = None
    instruction: str = ""
    source: FindingSource
    severity: Annotated[int, Field(ge=1, le=5)] = 3
