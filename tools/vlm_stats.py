"""Per-client accounting of VLM traffic: requests, HTTP attempts, retries, tokens and latency."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class EndpointStats:
    """Counters for one `VLMClient`.

    Attributes:
        requests: chat-completion requests sent (cache hits excluded; a request may take several attempts).
        attempts: HTTP attempts, retries included.
        retries: attempts that were retries after a transient fault.
        failures: requests that ended in an error (transport exhausted or refused).
        prompt_tokens, completion_tokens: as reported by the server's `usage`.
        latencies: seconds per successful request, retries and backoff included.
        cache_hits: requests answered from the on-disk cache.
        reasks: answers asked again after a parse/validation failure or truncation.
        answer_failures: answers still unusable after their re-ask (each became a VLMAnswerError).
        n_fallbacks: requests for K samples that had to be split into several n=1 requests.
    """

    requests: int = 0
    attempts: int = 0
    retries: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latencies: list[float] = field(default_factory=list)
    cache_hits: int = 0
    reasks: int = 0
    answer_failures: int = 0
    n_fallbacks: int = 0

    def summary(self) -> dict[str, Any]:
        """Counts plus latency percentiles in seconds (None when nothing was timed).

        Example:
            >>> EndpointStats(requests=2, latencies=[0.1, 0.3]).summary()["latency_p50_s"]
            0.2
        """
        lat = np.asarray(self.latencies, dtype=float)
        pct = {f"latency_p{p}_s": (round(float(np.percentile(lat, p)), 6) if lat.size else None)
               for p in (50, 90, 99)}
        return {
            "requests": self.requests,
            "attempts": self.attempts,
            "retries": self.retries,
            "failures": self.failures,
            "cache_hits": self.cache_hits,
            "reasks": self.reasks,
            "answer_failures": self.answer_failures,
            "n_fallbacks": self.n_fallbacks,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            **pct,
            "latency_mean_s": round(float(lat.mean()), 6) if lat.size else None,
            "latency_max_s": round(float(lat.max()), 6) if lat.size else None,
        }
