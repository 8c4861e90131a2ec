"""State and run context of the generate graph (graphs/generate.py).

State: JSON-able values only (dicts, image PATHS relative to the run folder, counters), checkpointed per item
thread. Context: everything with behaviour (config, run folder, planner, critic, editor, drawer, reframer),
built once per run and passed again on resume; never checkpointed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

from PIL import Image
from typing_extensions import TypedDict

from portraitcraft.agents.critic import Critic
from portraitcraft.agents.editor import Editor
from portraitcraft.config import PortraitcraftConfig
from portraitcraft.runs import ResultsLog, RunFolder
from portraitcraft.schemas import CompositionTargets, Track2Spec

Status = Literal["running", "finished", "failed"]
Strategy = Literal["loop", "best-of-n", "one-shot"]


class Round(TypedDict, total=False):
    """One image of an item's trajectory (a results-row `history` entry)."""

    round: int
    image: str
    """path relative to the run folder"""
    seed: int | None
    made_by: str
    """draft | init | edit | reframe | regenerate"""
    findings: list[dict[str, Any]] | None
    passed: bool | None
    disagreements: list[dict[str, Any]]
    failures: list[dict[str, Any]]
    action: str | None
    """what the editor did FROM this image (None on the last one)"""
    instruction: str
    reason: str
    reframe_error: str
    base_round: int
    """the round this image was made from (a drift-guard revert goes back to the best one)"""
    edit: dict[str, Any]
    """the editor's full decision (EditPlan.to_json())"""
    analysis: dict[str, Any] | None
    """the vision features measured at critique (`Analysis.to_json()`: persons, subject; no pixels)"""
    mask: str | None
    """the person mask measured at critique, a PNG path relative to the run folder (None: no person); what
    the drift guard reads, so a resumed item decides exactly as an uninterrupted one"""
    heuristics: dict[str, Any] | None
    judge_score: float
    reframe: dict[str, Any]
    """a reframed round's `portraitcraft:reframe` record (source, mirrored, crop_box, padding, fill, ...)"""


def merge_rounds(current: Sequence[Round] | None, update: Sequence[Round] | None) -> list[Round]:
    """The `rounds` reducer: a step sends only the rounds it changed. An entry whose `round` index exists
    patches that round (its keys win); the next index appends; anything else is a bug.

    Example:
        >>> merge_rounds([{"round": 0, "image": "a.png"}], [{"round": 0, "passed": False}, {"round": 1}])
        [{'round': 0, 'image': 'a.png', 'passed': False}, {'round': 1}]
    """
    rounds: list[Round] = list(current or [])
    for entry in update or []:
        k = entry["round"]
        if k < len(rounds):
            rounds[k] = Round(**{**rounds[k], **entry})
        elif k == len(rounds):
            rounds.append(entry)
        else:
            raise ValueError(f"round {k} cannot follow {len(rounds)} rounds")
    return rounds


class GenerateState(TypedDict, total=False):
    id: str
    spec: dict[str, Any]
    plan: dict[str, Any] | None
    targets: dict[str, Any] | None
    rounds: Annotated[list[Round], merge_rounds]
    """one entry per image, appended (or patched) one step at a time: paths and small records only"""
    cost: dict[str, float]
    verdict: str | None
    status: Status
    error: str | None
    final_round: int | None
    started: float


class DrawerLike(Protocol):
    """tools.gpu_jobs.Drawer: every GPU call of the graph goes through it (serialisable jobs on the lane)."""

    async def generate(self, prompt: str, width: int, height: int, seed: int, *, item_id: str | None = None,
                       negative_prompt: str | None = None) -> Image.Image: ...

    async def edit(self, image: Image.Image, instruction: str, *, seed: int,
                   item_id: str | None = None) -> Image.Image: ...

    def item_done(self, item_id: str) -> None: ...

    def stats(self) -> Any: ...


class PlannerLike(Protocol):
    def plan(self, spec: Track2Spec) -> Any: ...


@dataclass
class GenerateContext:
    """The run's dependencies (LangGraph runtime context).

    `reframe(image, analysis, horizontal=, vertical=, aspect=)` is agents.reframe.reframe; `targets_of(spec,
    plan)` gives the description's CompositionTargets; `on_event(kind, data)` feeds the live display.
    """

    cfg: PortraitcraftConfig
    run: RunFolder
    planner: PlannerLike
    critic: Critic
    editor: Editor
    drawer: DrawerLike
    targets_of: Callable[[Track2Spec, Any], CompositionTargets]
    reframe: Callable[..., Any] | None = None
    init_images: Path | None = None
    strategy: Strategy = "loop"
    max_rounds: int = 3
    pairs: ResultsLog | None = None
    pairs_done: set[str] = field(default_factory=set)
    on_event: Callable[[str, dict[str, Any]], None] | None = None
    judge: Any = None
    """portraitcraft.agents.judge.Judge: ranks the rounds of an item that never passed (None = findings alone)."""

    def emit(self, kind: str, **data: Any) -> None:
        if self.on_event is not None:
            self.on_event(kind, data)


def initial_state(spec: Track2Spec) -> GenerateState:
    return GenerateState(id=spec.id, spec=spec.model_dump(mode="json"), plan=None, targets=None, rounds=[],
                         cost={}, verdict=None, status="running", error=None, final_round=None, started=time.time())


__all__ = ["DrawerLike", "GenerateContext", "GenerateState", "Round", "Strategy", "initial_state", "merge_rounds"]
