"""Routing reads only checkpointed state: an item interrupted mid-loop and resumed in a NEW process context
(nothing in memory) takes exactly the path the uninterrupted item took; `rounds` grows one step at a time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from generate_fixtures import ScriptedDrawer, figure_analysis, figure_geometry

from portraitcraft.agents.planner import Planner
from portraitcraft.config import load_config
from portraitcraft.graphs.generate_run import build_context, run_items
from portraitcraft.graphs.generate_state import merge_rounds
from portraitcraft.runs import RunFolder
from portraitcraft.schemas import CompositionTargets, Track2Spec

LEFT = CompositionTargets(horizontal="left", phrases={"horizontal": "on the left third"})
SPEC = Track2Spec(image_path="b.png", content="a woman", composition="on the left third")
PATH_KEYS = ("round", "made_by", "action", "instruction", "reason", "seed", "passed", "findings")


class SeededDrawer(ScriptedDrawer):
    """Like a real model, the same seed draws the same picture in any process: the draft's seed puts the figure
    on the right, any other seed on the left."""

    def __init__(self, draft_seed: int) -> None:
        super().__init__(edits=[None])
        self.draft_seed = draft_seed

    async def generate(self, prompt: str, width: int, height: int, seed: int, **kw: Any) -> Any:
        self.drafts = [0.8 if seed == self.draft_seed else 0.2]
        return await super().generate(prompt, width, height, seed, **kw)


class Killed(Exception):
    """Not a PortraitcraftError: the batch driver stops the whole run, as a kill would."""


def cfg_for(tmp_path: Path) -> Any:
    return load_config(overrides={"critic": {"enabled": False, "geometry": True}, "planner": {"long_side": 96},
                                  "loop": {"max_rounds": 3}, "run": {"cache_dir": str(tmp_path / "cache")}})


async def run_once(tmp_path: Path, name: str, analyze: Any) -> RunFolder:
    cfg = cfg_for(tmp_path)
    folder = RunFolder.create(tmp_path / "runs", name, config=cfg, resume=True)
    # a drifting edit: the draft's figure is on the right, the edit repaints the background and leaves it there
    drawer = SeededDrawer(Planner.from_config(cfg).plan(SPEC).seed)
    ctx = build_context(cfg, folder, drawer=drawer, analyze=analyze, geometry=figure_geometry, reframe=False,
                        targets_of=lambda s, p: LEFT)
    await run_items(ctx, [SPEC])
    return folder


def path_of(folder: RunFolder) -> list[dict[str, Any]]:
    (row,) = folder.results.rows()
    return [{k: h.get(k) for k in PATH_KEYS} for h in row["history"]]


async def test_a_resumed_item_takes_the_uninterrupted_path(tmp_path: Path) -> None:
    reference = path_of(await run_once(tmp_path, "straight", figure_analysis))
    assert [(h["made_by"], h["action"]) for h in reference] == [
        ("draft", "edit"), ("edit", "regenerate"), ("regenerate", None)]
    assert "drift guard" in reference[1]["reason"]  # the guard needs round 0's person mask

    calls = {"n": 0}

    def dies_on_second_critique(image: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:  # the critique of the edited round: the process "dies" after the edit checkpoint
            raise Killed("killed mid-loop")
        return figure_analysis(image)

    with pytest.raises(Killed):
        await run_once(tmp_path, "resumed", dies_on_second_critique)
    folder = RunFolder.create(tmp_path / "runs", "resumed", config=cfg_for(tmp_path), resume=True)
    assert folder.results.rows() == []  # nothing finished yet
    assert (folder.root / "items" / "b" / "round_0.mask.png").is_file()  # what the guard will read
    resumed = await run_once(tmp_path, "resumed", figure_analysis)  # a fresh context: nothing in memory
    assert path_of(resumed) == reference


def test_rounds_reducer_patches_and_appends_one_step_at_a_time() -> None:
    rounds = merge_rounds([], [{"round": 0, "image": "r0.png"}])
    rounds = merge_rounds(rounds, [{"round": 0, "passed": False, "mask": None}])
    rounds = merge_rounds(rounds, [{"round": 0, "action": "edit"}, {"round": 1, "image": "r1.png"}])
    assert rounds == [{"round": 0, "image": "r0.png", "passed": False, "mask": None, "action": "edit"},
                      {"round": 1, "image": "r1.png"}]
    with pytest.raises(ValueError, match="round 3 cannot follow 2 rounds"):
        merge_rounds(rounds, [{"round": 3}])


def test_rounds_from_an_older_run_without_masks_are_measured_again(tmp_path: Path) -> None:
    """A checkpoint written before masks were recorded (no `mask` key) still gets the drift guard's mask: the
    image is measured again; a round measured with no person (`mask` None) is not."""
    from types import SimpleNamespace

    from generate_fixtures import figure_analysis_image, paint

    from portraitcraft.graphs.generate_steps import mask_of

    run = RunFolder(tmp_path / "old")
    (run.root / "items" / "a").mkdir(parents=True)
    paint(96, 96, 0.8).save(run.root / "items" / "a" / "round_0.png")
    calls: list[Any] = []

    def analyze(image: Any) -> Any:
        calls.append(image)
        return figure_analysis_image(image)

    ctx = SimpleNamespace(run=run, critic=SimpleNamespace(analyze=analyze))
    old = {"rounds": [{"round": 0, "image": "items/a/round_0.png", "passed": False}]}
    mask = mask_of(old, ctx)("items/a/round_0.png")  # type: ignore[arg-type]
    assert len(calls) == 1 and mask is not None and mask[:, 77].any() and not mask[:, 10].any()
    measured_empty = {"rounds": [{"round": 0, "image": "items/a/round_0.png", "mask": None}]}
    assert mask_of(measured_empty, ctx)("items/a/round_0.png") is None and len(calls) == 1  # type: ignore[arg-type]
