"""State and run context of the Track 1 understanding graph (graphs/understand.py).

State holds only JSON-able values (item fields, view dicts, view records, the vote, image PATHS); the
assessor, its VLM client, the vote settings and the calibration live in the runtime context, which is not
checkpointed and is passed again on resume.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from typing_extensions import TypedDict

from portraitcraft.agents.assessor import Assessor
from portraitcraft.agents.assessor_calibration import Calibration
from portraitcraft.agents.assessor_vote import VoteSettings
from portraitcraft.agents.views import View

Task = Literal["track1", "qa"]
Status = Literal["finished", "failed"]


class UnderstandItem(TypedDict, total=False):
    """One image and what it asks: `image` is the resolved file path (None when it was not found)."""

    id: str
    image_path: str
    image: str | None
    task: Task
    question: str | None
    options: dict[str, str]
    format: str


def append_records(left: list[dict[str, Any]] | None, right: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The fan-in reducer: view records append; None resets (a failed item started over)."""
    if right is None:
        return []
    return [*(left or []), *right]


class UnderstandState(TypedDict, total=False):
    """One item's thread: its views, the records the views returned (appended by the fan-in), the vote."""

    item: UnderstandItem
    views: list[dict[str, Any]]
    hints: dict[str, Any] | None
    results: Annotated[list[dict[str, Any]], append_records]
    vote: dict[str, Any] | None
    status: Status
    error: str | None


class ViewTask(TypedDict):
    """What one `Send` to `assess_view` carries."""

    item: UnderstandItem
    view: dict[str, Any]
    hints: dict[str, Any] | None


@dataclass
class UnderstandContext:
    """Run dependencies: built once per run, passed to every invoke (and again on resume).

    Attributes:
        assessor: the agent that asks the VLM about one view.
        views: the test-time views every item is shown.
        settings: the aggregation switches.
        calibration: fitted thresholds and linear relation (None = defaults).
        measure: image path -> geometry hints (viewer's frame), or None when hints are off.
    """

    assessor: Assessor
    views: list[View]
    settings: VoteSettings
    calibration: Calibration | None = None
    measure: Callable[[str], Mapping[str, Any] | None] | None = None


@dataclass
class ItemOutcome:
    """One item after the run: its final state values, and whether they came from an earlier run."""

    item: UnderstandItem
    state: dict[str, Any]
    reused: bool

    @property
    def status(self) -> str:
        return str(self.state.get("status") or "failed")


__all__ = ["ItemOutcome", "Status", "Task", "UnderstandContext", "UnderstandItem", "UnderstandState", "ViewTask",
           "append_records"]
