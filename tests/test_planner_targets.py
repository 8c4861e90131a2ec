"""Composition targets from descriptions: 30 realistic descriptions, frame and negation properties, the data file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portraitcraft.agents.planner import targets as targets_module
from portraitcraft.agents.planner.plan_keywords import PlannerDataError
from portraitcraft.agents.planner.targets import KEYS, extract, extract_targets

DATA = Path(__file__).parent / "data" / "target_descriptions.json"
ITEMS = json.loads(DATA.read_text(encoding="utf-8"))["items"]
IDS = [item["id"] for item in ITEMS]


def text_of(item: dict) -> str:
    return item["content_description"] + " " + item["composition_analysis"]


def test_the_descriptions_are_realistic() -> None:
    """At least 30, each 1,000-2,500 characters with several statements, hedges and both frames in the set."""
    assert len(ITEMS) >= 30 and len(set(IDS)) == len(IDS)
    for item in ITEMS:
        assert 1000 <= len(text_of(item)) <= 2500, item["id"]
        assert sum(v is not None for v in item["expected"].values()) >= 2, item["id"]
    texts = [text_of(i).lower() for i in ITEMS]
    assert sum(any(h in t for h in ("slightly", "appears", "seems", "roughly", "perhaps")) for t in texts) >= 10
    assert sum(any(p in t for p in ("to her ", "to his ")) for t in texts) >= 5  # the subject's frame
    assert sum("viewer's" in t or "camera left" in t or "frame left" in t for t in texts) >= 4  # the viewer's
    assert sum(i["expected"] != i["expected_loose"] for i in ITEMS) >= 2


@pytest.mark.parametrize("convention", ["strict", "loose"])
@pytest.mark.parametrize("item", ITEMS, ids=IDS)
def test_targets_of_realistic_descriptions(item: dict, convention: str) -> None:
    got = extract_targets(item["content_description"], item["composition_analysis"], convention=convention)
    expected = item["expected" if convention == "strict" else "expected_loose"]
    assert got.model_dump(exclude={"phrases", "evidence"}) == expected
    text = item["content_description"] + "\n\n" + item["composition_analysis"]
    for key in KEYS:
        value = getattr(got, key)
        assert (key in got.phrases) == (value is not None), key
        if value is not None:
            for part in got.phrases[key].split("; "):
                assert part in text, (key, part)  # the words it came from, verbatim


# ------------------------------------------------------------------------------------------------ properties

SUBJECTS = [("She", "her"), ("He", "his"), ("The woman", "her"), ("The man", "his")]
FILLERS = [
    "",
    "Soft light falls from the left, modelling the face.",
    "The palette is warm and muted, with ochre and grey.",
    "A window on the right lets in pale morning light.",
    "The background is softly blurred with a shallow depth of field.",
]
SIDES = ["left", "right"]
OTHER = {"left": "right", "right": "left"}

subject = st.sampled_from(SUBJECTS)
side = st.sampled_from(SIDES)
filler = st.sampled_from(FILLERS)


def compose(*sentences: str) -> str:
    return " ".join(s for s in sentences if s)


@settings(max_examples=60, deadline=None)
@given(subject, side, filler, filler,
       st.sampled_from(["is looking to the viewer's {side}", "gazes toward frame {side}", "looks toward camera {side}",
                        "looks off to the {side} of the frame", "glances to the {side}"]))
def test_viewer_frame_gaze_is_read_as_said_in_both_conventions(subj, s, before, after, template) -> None:
    text = compose(before, f"{subj[0]} {template.format(side=s)}.", after)
    for convention in ("strict", "loose"):
        assert extract_targets(text, "", convention=convention).gaze == s, (convention, text)


@settings(max_examples=60, deadline=None)
@given(subject, side, filler, filler, st.sampled_from(["looks to {poss} {side}", "is gazing toward {poss} {side}",
                                                       "glances over {poss} {side} shoulder"]))
def test_subject_frame_gaze_follows_the_convention(subj, s, before, after, template) -> None:
    text = compose(before, f"{subj[0]} faces the camera and {template.format(poss=subj[1], side=s)}.", after)
    assert extract_targets(text, "", convention="strict").gaze == OTHER[s], text
    assert extract_targets(text, "", convention="loose").gaze == s, text
    extraction = extract(text, "", convention="strict")
    assert "gaze" in extraction.frame_dependent()


@settings(max_examples=40, deadline=None)
@given(subject, side, st.sampled_from(["the viewer's", "frame", "camera"]))
def test_a_parenthetical_frame_overrides_the_subject_frame(subj, s, viewer) -> None:
    text = f"{subj[0]} is looking to {subj[1]} {OTHER[s]} ({viewer} {s})."
    for convention in ("strict", "loose"):
        assert extract_targets(text, "", convention=convention).gaze == s, text


@settings(max_examples=30, deadline=None)
@given(subject, side)
def test_back_to_the_camera_keeps_the_subject_side(subj, s) -> None:
    text = f"{subj[0]} stands with {subj[1]} back to the camera and looks to {subj[1]} {s}."
    assert extract_targets(text, "", convention="strict").gaze == s
    assert extract_targets(text, "", convention="loose").gaze == s


@settings(max_examples=40, deadline=None)
@given(subject, side, filler, st.sampled_from(["hand rests on a railing", "arm is raised", "hand holds a cup",
                                               "foot is planted on a step", "cheek catches the light"]))
def test_subject_frame_body_parts_are_not_placements(subj, s, after, part) -> None:
    text = compose(f"{subj[1].capitalize()} {s} {part}.", after)
    got = extract_targets(text, "")
    assert got.horizontal is None and got.gaze is None and got.facing is None, text


@settings(max_examples=60, deadline=None)
@given(subject, side, filler, st.sampled_from([
    ("is not centered in the frame", "horizontal"),
    ("is placed, not centered,", "horizontal"),
    ("is not looking at the camera", "gaze"),
    ("avoids eye contact with the viewer", "gaze"),
    ("never faces the camera", "facing"),
    ("is not shown full-body", "crop_level"),
]))
def test_negated_statements_set_nothing(subj, s, after, case) -> None:
    phrase, key = case
    got = extract_targets(compose(f"{subj[0]} {phrase}.", after), "")
    assert getattr(got, key) is None, (phrase, got)


@settings(max_examples=40, deadline=None)
@given(subject, side, filler)
def test_negative_space_sides_and_their_negation(subj, s, after) -> None:
    said = extract_targets(compose(f"{subj[0]} stands in a field.", f"Negative space on the {s} gives room.", after),
                           "")
    assert said.horizontal == OTHER[s]  # the subject is on the other side
    denied = extract_targets(compose(f"{subj[0]} stands in a field.", f"There is no negative space on the {s}.",
                                     after), "")
    assert denied.horizontal is None


@settings(max_examples=40, deadline=None)
@given(subject, side, st.sampled_from(["slightly", "roughly", "perhaps", "appears to be"]))
def test_hedged_statements_still_count(subj, s, hedge) -> None:
    got = extract_targets(f"{subj[0]} is {hedge} placed on the {s} third of the frame.", "")
    assert got.horizontal == s
    hedged = [x for x in extract(f"{subj[0]} is {hedge} placed on the {s} third.", "").statements
              if x.key == "horizontal"]
    assert hedged and all(x.hedged for x in hedged)


def test_but_and_instead_end_a_negation() -> None:
    got = extract_targets("The man is not centered but placed on the right third of the frame.", "")
    assert got.horizontal == "right"
    got = extract_targets("Instead of facing the camera, she is turned toward the left of the frame.", "")
    assert got.facing == "left"


def test_objects_beside_the_subject_are_not_placements() -> None:
    got = extract_targets("A woman sits at a table. A window on the left lights the room; a lamp stands on the "
                          "right side of the frame. The horizon sits in the lower third.", "")
    assert got.horizontal is None and got.vertical is None and got.people == 1


def test_people_counts() -> None:
    assert extract_targets("Two young women laugh on a bench.", "").people == 2
    assert extract_targets("A couple dances in the kitchen.", "").people == 2
    assert extract_targets("A group of four friends hikes up a hill.", "").people == 4
    assert extract_targets("A woman holds the hand of a child on a pier.", "").people == 2
    assert extract_targets("A man walks through a crowd of commuters.", "").people is None
    assert extract_targets("A man stands alone on a pier; no other people are in sight.", "").people == 1
    assert extract_targets("An empty road at dusk.", "").people is None


def test_orientation_words_and_ratios() -> None:
    assert extract_targets("", "A vertical format suits the standing figure.").orientation == "portrait"
    assert extract_targets("", "The 16:9 frame shows the whole valley.").orientation == "landscape"
    assert extract_targets("", "A square crop keeps it tight.").orientation == "square"
    assert extract_targets("", "The portrait of a woman.").orientation is None  # the genre, not the format


def test_empty_text_gives_empty_targets() -> None:
    got = extract_targets("", "")
    assert got.model_dump(exclude={"phrases", "evidence"}) == dict.fromkeys(KEYS) and got.phrases == {}


def test_unknown_convention_is_an_error() -> None:
    with pytest.raises(ValueError, match="convention"):
        extract_targets("x", "", convention="sideways")  # type: ignore[arg-type]


def test_a_malformed_rule_names_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    good = targets_module.load_planner_data(targets_module.TARGETS_FILE)
    broken = {**good, "rules": [*good["rules"], {"key": "gaze", "value": "left", "pattern": "(unclosed"}]}
    monkeypatch.setattr(targets_module, "load_planner_data", lambda name: broken)
    targets_module.lexicon.cache_clear()
    try:
        with pytest.raises(PlannerDataError, match=rf"rule {len(good['rules'])} \(gaze\): bad pattern"):
            targets_module.lexicon()
        broken["rules"][-1] = {"key": "elbow", "value": "x", "pattern": "x"}
        targets_module.lexicon.cache_clear()
        with pytest.raises(PlannerDataError, match="unknown key 'elbow'"):
            targets_module.lexicon()
    finally:
        monkeypatch.undo()
        targets_module.lexicon.cache_clear()


@settings(max_examples=40, deadline=None)
@given(subject, side, filler, st.sampled_from(["is turned to {poss} {side}", "turns toward {poss} {side}",
                                               "has {poss} body angled to {poss} {side}"]))
def test_subject_frame_facing_follows_the_convention(subj, s, after, template) -> None:
    text = compose(f"{subj[0]} {template.format(poss=subj[1], side=s)}.", after)
    assert extract_targets(text, "", convention="strict").facing == OTHER[s], text
    assert extract_targets(text, "", convention="loose").facing == s, text
