"""State and run context of the mining graph (one small graph run per sampled training item)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from typing_extensions import TypedDict


class MineState(TypedDict, total=False):
    """JSON-able values only: ids, image paths, feature dumps, discrepancy dicts."""

    id: str
    description: str
    real: str
    generated: str
    real_features: dict[str, Any] | None
    generated_features: dict[str, Any] | None
    discrepancies: list[dict[str, Any]]
    vlm_error: str | None


@dataclass
class MineContext:
    """Run dependencies, built once per run: the vision analyser and the miner's VLM client (None = offline)."""

    analyze: Any
    vlm: Any | None = None
    max_items: int = 8
