"""The miner: what a generated portrait gets wrong against the real one, and the recurring failure modes.

Per sampled training item (real image x*, description c, generated counterpart x~):
- geometric discrepancies from the vision features of both images (the real image's geometry is the truth):
  placement, crop level, facing, gaze, people count — no VLM needed, never confused about left and right;
- VLM discrepancies (when `[miner] enabled`): typed {aspect, difference, instruction} records; every VLM
  statement naming a side is checked against the geometry and marked `confirmed`, `contradicted` or
  `unchecked`.
Across the sample the discrepancy texts are clustered (TF-IDF + scipy average-linkage on cosine distance;
geometric ones group by the measured key), each cluster is named (by the LLM when configured, else from its
key and top terms) and written as a rule file the critic reads (prompts/rules format).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from portraitcraft.errors import InputError
from portraitcraft.prompts.loader import load_prompt, render_prompt
from portraitcraft.schemas import CROP_LEVELS, SubjectFeatures

GEOMETRY_KEYS: tuple[str, ...] = ("horizontal", "vertical", "crop_level", "facing", "gaze", "people")
_SIDE = re.compile(r"\b(left|right)\b", re.IGNORECASE)
_WORD = re.compile(r"[a-z]+")
_STOP = frozenset(load_prompt("mine/stopwords.txt").split())


class MinerError(InputError):
    """Mining input that cannot be used (named in the message)."""


class Discrepancy(BaseModel):
    """One visible difference of the generated image against the real one."""

    aspect: str = Field(description="one or two words: placement, gaze, crop, pose, ...")
    difference: str = Field(description="what differs, one sentence")
    instruction: str = Field(description="an edit that moves the generated image toward the real one")


class DiscrepancyList(BaseModel):
    """The VLM's answer: the discrepancies it sees (empty when the images agree)."""

    discrepancies: list[Discrepancy] = Field(default_factory=list, max_length=12)


class ModeName(BaseModel):
    """The LLM's naming of one cluster of discrepancies, in the rule-file vocabulary."""

    title: str
    category: Literal["layout", "chirality", "gaze", "placement", "framing", "people", "space", "lines", "depth",
                      "lighting", "anatomy", "artifacts", "other"]
    question: str
    instruction: str
    guidance: str


@dataclass
class MinedDiscrepancy:
    """A discrepancy with where it came from; `check` is set for VLM statements that name a side."""

    item_id: str
    aspect: str
    difference: str
    instruction: str
    source: Literal["vlm", "geometry"]
    key: str | None = None
    check: Literal["confirmed", "contradicted", "unchecked"] | None = None

    def text(self) -> str:
        return f"{self.aspect}: {self.difference}"


_INSTRUCTIONS = {
    "horizontal": "Move the subject to the {expected} of the frame (the viewer's {expected}).",
    "vertical": "Place the subject's eyes in the {expected} part of the frame.",
    "crop_level": "Reframe as a {expected} shot.",
    "facing": "Turn the subject's body toward the viewer's {expected}.",
    "gaze": "Make the subject look toward the viewer's {expected}.",
    "people": "Show exactly {expected} person(s).",
}


_TEMPLATES = {key: text.replace("{expected}", "{{ expected }}") for key, text in _INSTRUCTIONS.items()}
"""The rule-file form of the geometric instructions: Jinja2, filled with the critic's `expected` value."""


def geometric_discrepancies(item_id: str, real: SubjectFeatures | None,
                            generated: SubjectFeatures | None) -> list[MinedDiscrepancy]:
    """Differences of the measured composition; the real image's values are the truth.

    A generated image with no person where the real one has one is a single `subject` discrepancy.
    """
    if real is None:
        return []
    if generated is None:
        return [MinedDiscrepancy(item_id, "subject", "the generated image shows no person", "Show the subject.",
                                 "geometry", key="subject")]
    found = []
    for key in GEOMETRY_KEYS:
        want, got = getattr(real, key), getattr(generated, key)
        if want is None or got is None or want == got:
            continue
        if key == "crop_level" and abs(CROP_LEVELS.index(want) - CROP_LEVELS.index(got)) < 1:
            continue
        where = " (viewer's frame)" if key in ("horizontal", "facing", "gaze") else ""
        found.append(MinedDiscrepancy(
            item_id, key.replace("_", " "), f"{key.replace('_', ' ')} is {got}, the real image has {want}{where}",
            _INSTRUCTIONS[key].format(expected=want), "geometry", key=key))
    return found


def check_sides(items: Sequence[MinedDiscrepancy], real: SubjectFeatures | None,
                generated: SubjectFeatures | None) -> None:
    """Mark every VLM statement that names a side: `confirmed` when geometry also sees a left/right difference
    (placement, facing or gaze), `contradicted` when geometry measured those and they agree, else `unchecked`."""
    measurable = real is not None and generated is not None
    side_differs = measurable and any(
        getattr(real, k) is not None and getattr(generated, k) is not None and getattr(real, k) != getattr(generated, k)
        for k in ("horizontal", "facing", "gaze"))
    side_measured = measurable and any(
        getattr(real, k) is not None and getattr(generated, k) is not None for k in ("horizontal", "facing", "gaze"))
    for item in items:
        if item.source != "vlm" or not _SIDE.search(f"{item.difference} {item.instruction}"):
            continue
        if side_differs:
            item.check = "confirmed"
        elif side_measured:
            item.check = "contradicted"
        else:
            item.check = "unchecked"


async def ask_discrepancies(vlm: Any, real: Any, generated: Any, description: str, *,
                            max_items: int = 8) -> list[Discrepancy]:
    """The VLM's typed list of discrepancies of `generated` against `real` (images as paths or PIL)."""
    prompt = render_prompt("mine/discrepancies.md", description=description, max_items=max_items)
    answer = await vlm.ask(prompt, [real, generated], schema=DiscrepancyList)
    return answer.discrepancies[:max_items]


def _tokens(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 2]


def tfidf(texts: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """L2-normalised TF-IDF rows (smooth idf) and the vocabulary."""
    docs = [_tokens(t) for t in texts]
    vocab = sorted({w for d in docs for w in d})
    index = {w: i for i, w in enumerate(vocab)}
    matrix = np.zeros((len(docs), len(vocab)), dtype=np.float64)
    for row, doc in enumerate(docs):
        for word, count in Counter(doc).items():
            matrix[row, index[word]] = count
    df = (matrix > 0).sum(axis=0)
    idf = np.log((1 + len(docs)) / (1 + df)) + 1.0
    matrix *= idf
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0), vocab


def cluster_texts(texts: Sequence[str], *, max_distance: float = 0.8) -> list[int]:
    """Cluster labels (0..k-1, largest cluster first) by average-linkage on cosine distance of TF-IDF."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import pdist

    if not texts:
        return []
    if len(texts) == 1:
        return [0]
    matrix, _ = tfidf(texts)
    distances = np.nan_to_num(pdist(matrix, metric="cosine"), nan=1.0)
    raw = fcluster(linkage(distances, method="average"), t=max_distance, criterion="distance")
    order = [label for label, _ in Counter(raw).most_common()]
    rank = {label: i for i, label in enumerate(order)}
    return [rank[label] for label in raw]


@dataclass
class FailureMode:
    """A recurring failure across the sample, ready to become a rule file."""

    id: str
    title: str
    category: str
    question: str
    instruction: str
    guidance: str
    geometry: str | None
    count: int
    frequency: float
    example_ids: list[str]
    examples: list[str] = field(default_factory=list)
    top_terms: list[str] = field(default_factory=list)
    named_by: Literal["llm", "rules"] = "rules"


_GEOMETRY_MODES = {
    "horizontal": ("Subject on the wrong side", "placement",
                   "Is the subject on a different side of the frame (viewer's frame) than the description asks?"),
    "vertical": ("Subject at the wrong height", "placement",
                 "Are the subject's eyes at a different height in the frame than the description asks?"),
    "crop_level": ("Wrong framing / crop level", "framing",
                   "Is the shot framed tighter or looser (close-up ... full-body) than the description asks?"),
    "facing": ("Body facing the wrong way", "chirality",
               "Does the subject's body face a different direction (viewer's frame) than the description says?"),
    "gaze": ("Gaze in the wrong direction", "gaze",
             "Does the subject look in a different direction (viewer's frame) than the description says?"),
    "people": ("Wrong number of people", "people",
               "Does the image show a different number of people than the description asks?"),
    "subject": ("Subject missing", "people", "Is the described person missing from the image?"),
}


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:48] or "mode"


def aggregate(discrepancies: Sequence[MinedDiscrepancy], n_items: int, *, max_modes: int = 12,
              max_distance: float = 0.8, min_count: int = 2) -> list[FailureMode]:
    """Group discrepancies into failure modes, most frequent first; a mode needs `min_count` distinct items.

    Geometric discrepancies group by their key; VLM texts (less the ones geometry contradicted) by clustering.
    Frequency = distinct items showing the mode / `n_items`.
    """
    if n_items <= 0:
        raise MinerError("cannot aggregate failure modes over an empty sample")
    groups: list[list[MinedDiscrepancy]] = []
    by_key: dict[str, list[MinedDiscrepancy]] = {}
    for d in discrepancies:
        if d.source == "geometry" and d.key:
            by_key.setdefault(d.key, []).append(d)
    groups.extend(by_key.values())
    vlm = [d for d in discrepancies if d.source == "vlm" and d.check != "contradicted"]
    labels = cluster_texts([d.text() for d in vlm], max_distance=max_distance)
    clusters: dict[int, list[MinedDiscrepancy]] = {}
    for d, label in zip(vlm, labels, strict=True):
        clusters.setdefault(label, []).append(d)
    groups.extend(clusters.values())

    modes: list[FailureMode] = []
    for group in groups:
        ids = sorted({d.item_id for d in group})
        if len(ids) < min_count:
            continue
        texts = [d.text() for d in group]
        key = group[0].key if group[0].source == "geometry" else None
        terms = [w for w, _ in Counter(w for t in texts for w in set(_tokens(t))).most_common(4)]
        instruction = Counter(d.instruction for d in group).most_common(1)[0][0]
        if key in _TEMPLATES:
            instruction = _TEMPLATES[key]
        if key:
            title, category, question = _GEOMETRY_MODES[key]
        else:
            title = " / ".join(terms[:3]).capitalize() or "Recurring discrepancy"
            category = "other"
            question = f"Does the image show this problem: {Counter(texts).most_common(1)[0][0]}?"
        modes.append(FailureMode(
            id="", title=title, category=category, question=question, instruction=instruction,
            guidance=f"Seen as: {texts[0]}", geometry=key, count=len(ids), frequency=len(ids) / n_items,
            example_ids=ids[:8], examples=list(dict.fromkeys(texts))[:6], top_terms=terms))
    modes.sort(key=lambda m: (-m.count, m.title))
    modes = modes[:max_modes]
    for index, mode in enumerate(modes, start=1):
        mode.id = f"mined-{index:02d}-{_slug(mode.title)}"
    return modes


async def name_mode(vlm: Any, mode: FailureMode) -> FailureMode:
    """Let the LLM name a VLM-text cluster and write its rule (geometric modes keep their exact wording)."""
    if mode.geometry:
        return mode
    answer = await vlm.ask(render_prompt("mine/name_mode.md", examples=mode.examples), schema=ModeName)
    mode.title, mode.category, mode.question = answer.title.strip(), answer.category, answer.question.strip()
    mode.instruction, mode.guidance, mode.named_by = answer.instruction.strip(), answer.guidance.strip(), "llm"
    mode.id = f"{mode.id.split('-')[0]}-{mode.id.split('-')[1]}-{_slug(mode.title)}"
    return mode


def _literal(text: str) -> str:
    """Free text (a VLM's or LLM's instruction) made safe as a Jinja2 template: no braces to evaluate."""
    return text.replace("{", "(").replace("}", ")")


def write_rule_set(modes: Sequence[FailureMode], out: Path, *, total: int) -> list[Path]:
    """One rule file per failure mode under `out` (the critic's rules folder format)."""
    from portraitcraft.atomic import atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for mode in modes:
        severity = max(1, min(5, math.ceil(mode.frequency * 5)))
        applies = [mode.geometry] if mode.geometry in _APPLIES else []
        instruction = mode.instruction if mode.geometry in _TEMPLATES else _literal(mode.instruction)
        text = render_prompt("mine/rule.md.j2", id=mode.id, title=mode.title, category=mode.category,
                             severity=severity, applies_when=applies, question=mode.question,
                             instruction=instruction, geometry=mode.geometry, guidance=mode.guidance,
                             count=mode.count, total=total, frequency=mode.frequency, example_ids=mode.example_ids,
                             examples=mode.examples)
        written.append(atomic_write_text(out / f"{mode.id}.md", text))
    return written


_APPLIES = frozenset({"horizontal", "vertical", "crop_level", "facing", "gaze", "people"})
"""Geometric modes apply only when the description states the target they check (rule `applies_when`)."""
