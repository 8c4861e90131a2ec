"""Property tests: no id escapes its folder; sanitising is idempotent; two different ids share a name only
when one is the other's hashed name, and a run folder refuses that case; ids round-trip unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portraitcraft.errors import InputError
from portraitcraft.ids import MAX_ID_CHARS, safe_id
from portraitcraft.runs import RunFolder
from portraitcraft.schemas import Track2Spec

ids = st.one_of(
    st.text(min_size=0, max_size=400),
    st.sampled_from(["..", ".", "../x", "/abs/path", "a/../../b", "x\x00y", "CON", " ", "-", "a" * 1000]),
    st.builds(lambda a, b: f"{a}-{safe_id(b).rsplit('-', 1)[-1]}", st.text(max_size=10), st.text(max_size=10)),
)


@given(ids)
@settings(max_examples=400)
def test_no_escape(raw: str) -> None:
    name = safe_id(raw)
    assert name and "/" not in name and "\\" not in name and "\x00" not in name
    assert not name.startswith(".") and name not in {".", ".."}
    assert len(name) <= MAX_ID_CHARS + 13
    root = Path("/runs/demo/items")
    assert (root / name).resolve().parent == root


@given(ids)
@settings(max_examples=400)
def test_idempotent(raw: str) -> None:
    once = safe_id(raw)
    assert safe_id(once) == once


@given(ids, ids)
@settings(max_examples=400)
def test_no_collision(a: str, b: str) -> None:
    if a != b and safe_id(a) == safe_id(b):  # only when one raw id IS the other's sanitised name
        assert safe_id(a) in (a, b)


def test_a_raw_id_equal_to_another_items_hashed_name_is_refused(tmp_path: Path) -> None:
    hashed = safe_id("../x")
    assert hashed != "../x" and safe_id(hashed) == hashed
    run = RunFolder(tmp_path / "run")
    folder = run.item_dir("../x")
    assert run.item_dir("../x") == folder and RunFolder(tmp_path / "run").item_dir("../x") == folder
    with pytest.raises(InputError, match=r"already belongs to item '\.\./x'"):
        RunFolder(tmp_path / "run").item_dir(hashed)


def test_one_id_one_folder_and_a_round_trip_keeps_the_id(tmp_path: Path) -> None:
    spec = Track2Spec(image_path="images_01/a b.jpg", content="c", composition="k")
    assert spec.id == "a b"
    assert Track2Spec.model_validate(spec.model_dump()).id == spec.id
    assert Track2Spec.model_validate_json(spec.model_dump_json()).id == spec.id
    folder = RunFolder(tmp_path / "run").item_dir(spec.id)
    assert folder.name == safe_id(spec.id) == safe_id(safe_id(spec.id))
    # the folder's own name, used as an id again, lands in the same place (no second hash)
    assert RunFolder(tmp_path / "run").item_dir(spec.id) == folder
    named = Track2Spec(image_path="x.jpg", content="c", composition="k", id="user/42")
    assert Track2Spec.model_validate(named.model_dump()).id == "user/42"
    assert Track2Spec(image_path="images_03\\y.png", content="c", composition="k").id == "y"


def test_readable_ids_are_kept() -> None:
    assert safe_id("unsplash_people_00888_877bfef7968d.jpg") == "unsplash_people_00888_877bfef7968d.jpg"


def test_two_items_sharing_an_id_are_a_problem() -> None:
    from portraitcraft.data import parse_items

    records = [{"image_path": "x.jpg", "content_description": "c", "composition_analysis": "k"},
               {"image_path": "images_01/x.png", "content_description": "c", "composition_analysis": "k"},
               {"image_path": "images_02\\x.jpg", "content_description": "c", "composition_analysis": "k"}]
    parsed = parse_items(records, "track2")
    assert [s.id for s in parsed.items] == ["x"]
    assert [str(p) for p in parsed.problems] == ["item 1 (images_01/x.png): id: id 'x' is also item 0's id",
                                                 "item 2 (images_02\\x.jpg): id: id 'x' is also item 0's id"]


@given(st.text(alphabet="ab./\\\x00é", max_size=20))
@settings(max_examples=300)
def test_item_key_is_the_posix_basename_with_backslashes_as_separators(raw: str) -> None:
    from pathlib import PurePosixPath

    from portraitcraft.ids import item_key

    assert item_key(raw) == PurePosixPath(raw.replace("\\", "/")).name
