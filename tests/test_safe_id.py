"""Property tests: no id escapes its folder, two different ids never map to the same file name."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from portraitcraft.schemas import MAX_ID_CHARS, safe_id

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


@given(ids, ids)
@settings(max_examples=400)
def test_no_collision(a: str, b: str) -> None:
    if a != b:
        assert safe_id(a) != safe_id(b)


def test_a_clean_id_that_looks_hashed_cannot_steal_a_hashed_name() -> None:
    hashed = safe_id("../x")
    assert hashed != "../x"
    assert safe_id(hashed) != hashed


def test_readable_ids_are_kept() -> None:
    assert safe_id("unsplash_people_00888_877bfef7968d.jpg") == "unsplash_people_00888_877bfef7968d.jpg"
