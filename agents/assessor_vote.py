"""Aggregation of the assessor's views into one Track 1 prediction (or one Q-Bench-style answer).

Every step is switchable (`VoteSettings`, from `[assessor]`) and reported in the vote's `steps`:

- overall: the mean or trimmed mean of all sampled overall scores (continuous space), or the mean of the
  views' logprob expected scores (Q-Align style; falls back to the sampled mean where no view has one);
- levels: a majority vote over every sample's level (scores are cut first), or the 0-10 sub-scores averaged
  over all samples and then cut with per-attribute thresholds (calibrated, else the default 5 / 7);
- the VQA answer: a majority vote, optionally from un-mirrored views only (falling back to all views when
  those gave no valid answer);
- consistency (optional, `linear_prior` > 0): overall <- (1 - w) * overall + w * (a * sum(sub-scores) + b).

Input records are those of `portraitcraft.agents.assessor.Assessor` (JSON); the vote is JSON too.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from scipy import stats

from portraitcraft.agents.assessor_calibration import DEFAULT_LINEAR, DEFAULT_THRESHOLDS, Calibration
from portraitcraft.config import AssessorConfig
from portraitcraft.errors import PortraitcraftError
from portraitcraft.schemas import ATTRIBUTES, Level, level_from_score


class VoteError(PortraitcraftError):
    """No usable sample among an item's views (the message says what the views returned)."""


@dataclass(frozen=True)
class VoteSettings:
    """The aggregation switches (see the module docstring)."""

    overall: Literal["mean", "trimmed_mean", "logprob"] = "mean"
    trim: float = 0.2
    level_mode: Literal["vote", "thresholds"] = "thresholds"
    vqa_unflipped_only: bool = True
    linear_prior: float = 0.0

    @classmethod
    def from_config(cls, cfg: AssessorConfig) -> VoteSettings:
        return cls(cfg.overall, cfg.trim, cfg.level_mode, cfg.vqa_unflipped_only, cfg.linear_prior)


def _as_score(value: Any) -> float:
    """A sample's attribute value as a 0-10 number (a level counts as its midpoint)."""
    if isinstance(value, int | float):
        return float(value)
    return Level.from_code(str(value)).midpoint


def _as_level(value: Any, thresholds: tuple[float, float]) -> Level:
    if isinstance(value, int | float):
        return level_from_score(float(value), thresholds)
    return Level.from_code(str(value))


def _valid(records: Sequence[Mapping[str, Any]]) -> list[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    """(view record, sample) for every sample without an error."""
    return [(rec, s) for rec in records for s in rec.get("samples", []) if "error" not in s]


def _problems(records: Sequence[Mapping[str, Any]]) -> str:
    seen: list[str] = []
    for rec in records:
        for problem in [rec.get("error"), *(s.get("error") for s in rec.get("samples", []))]:
            if problem and problem not in seen:
                seen.append(problem)
    return "; ".join(seen[:3]) or "no samples"


def majority(votes: Sequence[Hashable]) -> tuple[Hashable, dict[str, int]]:
    """The most frequent vote (ties: the one seen first) and the counts.

    Example:
        >>> majority(["B", "C", "C", "B", "A"])
        ('B', {'B': 2, 'C': 2, 'A': 1})
    """
    if not votes:
        raise ValueError("no votes")
    counts = Counter(votes)
    top = max(counts.values())
    winner = next(v for v in votes if counts[v] == top)
    return winner, {str(k): c for k, c in counts.items()}


def _level_vote(values: Sequence[Any], thresholds: tuple[float, float]) -> tuple[Level, dict[str, int]]:
    """Majority level; a tie goes to the tied level whose midpoint is nearest the mean score."""
    levels = [_as_level(v, thresholds) for v in values]
    counts = Counter(levels)
    top = max(counts.values())
    tied = [lv for lv in Level if counts.get(lv) == top]
    mean = sum(_as_score(v) for v in values) / len(values)
    winner = min(tied, key=lambda lv: (abs(lv.midpoint - mean), lv != Level.MEDIUM))
    return winner, {lv.value: counts.get(lv, 0) for lv in Level}


def _overall(records: Sequence[Mapping[str, Any]], samples: Sequence[Mapping[str, Any]],
             settings: VoteSettings) -> tuple[float, dict[str, Any]]:
    values = [float(s["overall"]) for s in samples]
    if settings.overall == "logprob":
        expected = [float(r["overall_expected"]) for r in records if r.get("overall_expected") is not None]
        if expected:
            return sum(expected) / len(expected), {"method": "logprob", "views": len(expected)}
        step = {"method": "mean", "fallback_from": "logprob", "values": len(values)}
        return sum(values) / len(values), step
    if settings.overall == "trimmed_mean":
        return float(stats.trim_mean(values, settings.trim)), {"method": "trimmed_mean", "trim": settings.trim,
                                                               "values": len(values)}
    return sum(values) / len(values), {"method": "mean", "values": len(values)}


def vote_track1(records: Sequence[Mapping[str, Any]], settings: VoteSettings,
                calibration: Calibration | None = None) -> dict[str, Any]:
    """One Track 1 prediction from an item's view records.

    Returns:
        {"total_score": float 0-100, "levels": {attr: "A"|"B"|"C"}, "attribute_means": {attr: 0-10},
        "sum_scores", "answer": letter | None, "answer_votes", "level_votes", "n_views", "n_views_ok",
        "n_samples", "n_valid", "steps": {...what each step did}}.

    Raises:
        VoteError: no view returned a valid sample.

    Example:
        >>> rec = {"view": {"flip": False}, "samples": [
        ...     {"overall": 60, "criteria": dict.fromkeys(ATTRIBUTES, 6.5), "answer": "B"}]}
        >>> vote = vote_track1([rec], VoteSettings())
        >>> vote["total_score"], vote["levels"]["Sharpness"], vote["answer"]
        (60.0, 'B', 'B')
    """
    pairs = _valid(records)
    if not pairs:
        raise VoteError(f"no valid sample in {len(records)} view(s): {_problems(records)}")
    samples = [s for _, s in pairs]
    steps: dict[str, Any] = {}
    total, steps["overall"] = _overall(records, samples, settings)

    means = {a: sum(_as_score(s["criteria"][a]) for s in samples) / len(samples) for a in ATTRIBUTES}
    levels: dict[str, str] = {}
    level_votes: dict[str, dict[str, int]] = {}
    for attr in ATTRIBUTES:
        cut = calibration.thresholds_for(attr) if calibration else DEFAULT_THRESHOLDS
        if settings.level_mode == "thresholds":
            levels[attr] = level_from_score(means[attr], cut).code
        else:
            winner, level_votes[attr] = _level_vote([s["criteria"][attr] for s in samples], cut)
            levels[attr] = winner.code
    steps["levels"] = {"method": settings.level_mode,
                       "thresholds": "calibrated" if calibration and calibration.thresholds else "default"}

    sum_scores = sum(means.values())
    if settings.linear_prior > 0:
        a, b = calibration.linear if calibration else DEFAULT_LINEAR
        target = a * sum_scores + b
        before = total
        total = (1 - settings.linear_prior) * total + settings.linear_prior * target
        steps["consistency"] = {"weight": settings.linear_prior, "linear": [a, b], "target": target,
                                "before": before}
    total = min(100.0, max(0.0, total))

    answer, answer_votes, source = None, {}, None
    answered = [(rec, s) for rec, s in pairs if s.get("answer") is not None]
    if answered:
        eligible = answered
        source = "all"
        if settings.vqa_unflipped_only:
            unflipped = [(rec, s) for rec, s in answered if not rec["view"].get("flip")]
            if unflipped:
                eligible, source = unflipped, "unflipped"
            else:
                source = "all (no unflipped answer)"
        answer, answer_votes = majority([s["answer"] for _, s in eligible])
    steps["answer"] = {"views": source}
    return {
        "total_score": total, "levels": levels, "attribute_means": means, "sum_scores": sum_scores,
        "answer": answer, "answer_votes": answer_votes, "level_votes": level_votes,
        "n_views": len(records), "n_views_ok": sum(1 for r in records if not r.get("error")),
        "n_samples": sum(len(r.get("samples", [])) for r in records), "n_valid": len(samples), "steps": steps,
    }


def normalise_text(text: str) -> str:
    """Lower case, single spaces, no trailing punctuation: how open-ended votes are grouped."""
    return re.sub(r"\s+", " ", text.strip().lower()).rstrip(".!? ")


def vote_qa(records: Sequence[Mapping[str, Any]], fmt: str, settings: VoteSettings) -> dict[str, Any]:
    """One Q-Bench-style answer from an item's view records (the modal answer; sets vote as whole sets).

    Raises:
        VoteError: no view returned a valid sample.
    """
    pairs = _valid(records)
    if not pairs:
        raise VoteError(f"no valid sample in {len(records)} view(s): {_problems(records)}")
    source = "all"
    if settings.vqa_unflipped_only:
        unflipped = [(r, s) for r, s in pairs if not r["view"].get("flip")]
        if unflipped:
            pairs, source = unflipped, "unflipped"
    answers = [s["answer"] for _, s in pairs]
    if fmt == "multiple":
        keyed = [tuple(sorted(a)) for a in answers]
        winner, counts = majority(keyed)
        answer: Any = list(winner)  # type: ignore[arg-type]
    elif fmt == "open":
        keyed = [normalise_text(a) for a in answers]
        winner, counts = majority(keyed)
        answer = answers[keyed.index(winner)]
    else:
        answer, counts = majority(answers)
    return {"answer": answer, "votes": counts, "n_valid": len(answers), "steps": {"answer": {"views": source}},
            "n_views": len(records)}


__all__ = ["VoteError", "VoteSettings", "majority", "normalise_text", "vote_qa", "vote_track1"]
