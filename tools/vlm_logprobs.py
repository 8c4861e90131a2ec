"""Probability distributions over a closed set of choices, from top_logprobs or from sampled votes.

The logprob reading follows Q-Align / PortraitRL: take the token where the answer is decided, read the
probability of each option's token there, renormalise over the options, and (for numeric levels) take the
expected value S = sum_i m_i * p_i, normalised as (S - min M) / (max M - min M).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

log = logging.getLogger(__name__)
_warned_ambiguous: set[tuple[str, ...]] = set()


@dataclass
class ChoiceDistribution:
    """Probabilities over a closed set of options, summing to 1.

    Attributes:
        probs: option -> probability (every option present, possibly 0).
        source: "logprobs" (read from the model's token probabilities) or "samples" (vote frequencies).
        samples: the number of valid votes behind a "samples" estimate (0 for logprobs).

    Example:
        >>> d = ChoiceDistribution({"1": 0.25, "5": 0.75}, "logprobs")
        >>> d.expected({"1": 1.0, "5": 5.0})
        4.0
    """

    probs: dict[str, float]
    source: Literal["logprobs", "samples"]
    samples: int = 0

    def expected(self, values: Mapping[str, float]) -> float:
        """The expected value sum_i values[i] * probs[i]; every option with probability must have a value."""
        missing = [c for c, p in self.probs.items() if p > 0 and c not in values]
        if missing:
            raise ValueError(f"no numeric value given for option(s) {missing}")
        return float(sum(p * float(values[c]) for c, p in self.probs.items() if p > 0))

    @property
    def top(self) -> str:
        """The most probable option (the first listed on ties)."""
        return max(self.probs, key=lambda c: self.probs[c])


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token with its logprob and the server's top alternatives at that position."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...]


def _option_for(core: str, options: Sequence[str]) -> list[str]:
    """Options that a token's text (already trimmed to the answer value) could be the start of."""
    if not core:
        return []
    exact = [c for c in options if c == core]
    starts = [c for c in options if c.startswith(core)]
    if len(starts) > 1:
        key = tuple(options)
        if key not in _warned_ambiguous:
            _warned_ambiguous.add(key)
            log.warning("options %s share a first token %r: its probability goes to %s; prefer options that "
                        "differ in their first token", list(options), core, exact or starts)
        return exact or starts
    if starts:
        return starts
    # a token running past the option, e.g. 'B"' or 'B}' in JSON output
    return [c for c in options if core.startswith(c) and not core[len(c):len(c) + 1].isalnum()][:1]


def distribution_from_logprobs(
    tokens: Sequence[TokenLogprob], value_offset: int, options: Sequence[str]
) -> ChoiceDistribution | None:
    """Read the options' probabilities at the token covering character `value_offset` of the reply.

    Masked alternatives (vLLM shows -9999.0 under a structured `choice`) contribute nothing; the result is
    renormalised over the options. Returns None when the position or no option's token is found.

    Example:
        >>> toks = [TokenLogprob("B", math.log(0.6), (("A", math.log(0.3)), ("B", math.log(0.6))))]
        >>> round(distribution_from_logprobs(toks, 0, ["A", "B"]).probs["A"], 3)
        0.333
    """
    start = 0
    for tok in tokens:
        end = start + len(tok.token)
        if start <= value_offset < end:
            within = value_offset - start
            prefix = tok.token[:within]
            mass = dict.fromkeys(options, 0.0)
            alternatives = dict(tok.top)
            alternatives.setdefault(tok.token, tok.logprob)
            for text, logprob in alternatives.items():
                if not text.startswith(prefix) or logprob is None or not math.isfinite(logprob):
                    continue
                core = text[within:].lstrip().lstrip("\"'").split('"', 1)[0]
                matches = _option_for(core, options)
                for option in matches:
                    mass[option] += math.exp(logprob) / len(matches)
            total = sum(mass.values())
            if total <= 0:
                return None
            return ChoiceDistribution({c: m / total for c, m in mass.items()}, "logprobs")
        start = end
    return None


def distribution_from_samples(votes: Iterable[str], options: Sequence[str]) -> ChoiceDistribution:
    """Vote frequencies over the options (votes outside the options are ignored).

    Example:
        >>> distribution_from_samples(["yes", "yes", "no", "yes"], ["yes", "no"]).probs
        {'yes': 0.75, 'no': 0.25}
    """
    counts = Counter(v for v in votes if v in options)
    total = sum(counts.values())
    if total == 0:
        raise ValueError("no valid votes to estimate a distribution from")
    return ChoiceDistribution({c: counts[c] / total for c in options}, "samples", samples=total)
