"""The editor: one merged instruction (severity order, duplicates and contradictions resolved), the action."""

from __future__ import annotations

from portraitcraft.agents.editor import Editor, best_round, merge_instructions
from portraitcraft.config import LoopConfig
from portraitcraft.schemas import CompositionTargets, Finding

AXES = {"placement": "horizontal", "facing": "facing"}


def f(rule: str, source: str = "vlm", severity: int = 3, instruction: str = "", **kw: object) -> Finding:
    return Finding(rule=rule, detected=kw.pop("detected", True), source=source, severity=severity,  # type: ignore[arg-type]
                   instruction=instruction or f"fix {rule}", **kw)  # type: ignore[arg-type]


def test_merge_orders_by_severity_and_resolves_conflicts() -> None:
    findings = [
        f("lighting", severity=2, instruction="Light her from the left"),
        f("placement", severity=5, instruction="Move her to the right third"),          # VLM: wrong side
        f("horizontal", "geometry", severity=5, instruction="Move her to the left third"),
        f("anatomy", severity=5, instruction="Fix the left hand", confidence=0.9),
        f("text-artifacts", severity=3, instruction="fix the left hand."),               # same text
        f("exposure", "heuristic", severity=2, detected=False),
        f("sharpness", "heuristic", severity=2, confidence=0.2),                         # under threshold
    ]
    text, used, dropped = merge_instructions(findings, 0.5, {**AXES, "horizontal": "horizontal"})
    assert [u.rule for u in used] == ["horizontal", "anatomy", "lighting"]
    assert text == "Move her to the left third; Fix the left hand; Light her from the left."
    assert {d["rule"] for d in dropped} == {"placement", "text-artifacts"}
    assert any("contradicts" in d["why"] for d in dropped if d["rule"] == "placement")


def round_(findings: list[Finding], action: str | None = None, **kw: object) -> dict[str, object]:
    return {"image": "x.png", "findings": [x.model_dump() for x in findings], "action": action, **kw}


def test_actions() -> None:
    editor = Editor(LoopConfig(max_edits=1), 0.5, rule_axes=AXES, reframeable=frozenset({"horizontal"}))
    t = CompositionTargets(horizontal="left", phrases={"horizontal": "on the left third"})
    crop = [round_([f("horizontal", "geometry", instruction="move left")])]
    plan = editor.decide(crop, t, prompt="a woman")
    assert plan.action == "reframe" and plan.reframe == {"horizontal": "left", "vertical": None, "orientation": None,
                                                         "mirror": False}
    mixed = [round_([f("horizontal", "geometry"), f("anatomy")])]
    assert editor.decide(mixed, t, prompt="a woman").action == "edit"
    after_reframe = [round_([f("anatomy")], "reframe"), round_([f("horizontal", "geometry")], made_by="reframe")]
    assert editor.decide(after_reframe, t, prompt="p").action != "reframe"
    twice = [round_([f("anatomy")], "edit"), round_([f("anatomy")])]
    plan = editor.decide(twice, t, prompt="a woman")
    assert plan.action == "regenerate" and plan.prompt == "fix anatomy. a woman"
    no_editor = Editor(LoopConfig(), 0.5, can_edit=False, can_reframe=False)
    assert no_editor.decide(crop, t, prompt="a woman").prompt == "on the left third. a woman"


def test_best_round_is_never_just_the_last() -> None:
    rounds = [round_([f("anatomy")]), round_([f("anatomy"), f("lighting")]), round_([f("anatomy")])]
    assert best_round(rounds, 0.5) == 0
    rounds[2]["passed"] = True
    rounds[2]["findings"] = []
    assert best_round(rounds, 0.5) == 2
    judged = [round_([f("anatomy")], judge_score=40.0), round_([f("anatomy")], judge_score=70.0)]
    assert best_round(judged, 0.5) == 1


def test_a_mirror_fixes_an_opposite_facing_unless_it_breaks_another_side() -> None:
    editor = Editor(LoopConfig(), 0.5, reframeable=frozenset({"horizontal", "orientation"}))
    t = CompositionTargets(horizontal="center", facing="left", orientation="portrait")
    wrong_way = f("facing", "geometry", expected="left", measured="right", confidence=0.8)
    plan = editor.decide([round_([wrong_way, f("horizontal", "geometry", expected="center", measured="left")])],
                         t, prompt="p")
    assert plan.action == "reframe" and plan.reframe["mirror"] is True and "mirror" in plan.reason
    gaze_ok = f("gaze", "geometry", detected=False, expected="right", measured="right")
    assert editor.decide([round_([wrong_way, gaze_ok])], t, prompt="p").action == "edit"  # would break the gaze
    to_camera = f("facing", "geometry", expected="camera", measured="right")
    assert editor.decide([round_([to_camera])], t, prompt="p").action == "edit"  # a mirror cannot do that
    off = Editor(LoopConfig(mirror=False), 0.5, reframeable=frozenset({"horizontal"}))
    assert off.decide([round_([wrong_way])], t, prompt="p").action == "edit"
    crop_only = editor.decide([round_([f("horizontal", "geometry", expected="center", measured="left")])], t,
                              prompt="p")
    assert crop_only.reframe["mirror"] is False


def test_the_reframe_goal_never_steers_by_an_unenforced_target() -> None:
    """An implied placement (shown, not enforced) must not travel into a crop made for another finding."""
    from portraitcraft.schemas import TargetEvidence

    editor = Editor(LoopConfig(), 0.5, reframeable=frozenset({"horizontal", "vertical"}))
    implied = TargetEvidence(value="left", confidence=0.5, enforced=False, source="implied by negative space")
    t = CompositionTargets(horizontal="left", vertical="upper", evidence={"horizontal": implied})
    plan = editor.decide([round_([f("vertical", "geometry", expected="upper", measured="lower")])], t, prompt="p")
    assert plan.action == "reframe" and plan.reframe["vertical"] == "upper" and plan.reframe["horizontal"] is None
    enforced = CompositionTargets(horizontal="left", vertical="upper")
    plan = editor.decide([round_([f("vertical", "geometry", expected="upper", measured="lower")])], enforced,
                         prompt="p")
    assert plan.reframe["horizontal"] == "left"
