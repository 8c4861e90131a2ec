"""Image paths never escape `--images`: property tests with hostile names (absolute, `..`, symlinks, NUL,
very long, Unicode look-alikes) against a canary file outside the folder that must never be opened."""

from __future__ import annotations

import builtins
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from console_script import run_script
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from portraitcraft.data import find_image, resolve_image, unsafe_image_path, validate_file
from portraitcraft.schemas import ATTRIBUTES


class Canary:
    """Records every attempt to open the canary file, through any of the ways the code opens files."""

    def __init__(self, path: Path) -> None:
        self.path = path.resolve()
        self.opened: list[str] = []

    def check(self, target: object) -> None:
        if isinstance(target, str | bytes | os.PathLike):
            try:
                real = Path(os.fsdecode(target)).resolve()
            except (OSError, ValueError, RuntimeError):
                return
            if real == self.path:
                self.opened.append(os.fsdecode(target))


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    base = tmp_path_factory.mktemp("contain")
    outside = base / "private"
    outside.mkdir()
    canary = outside / "canary.png"
    Image.new("RGB", (4, 4), "red").save(canary)
    root = base / "images"
    (root / "images_00").mkdir(parents=True)
    Image.new("RGB", (4, 4), "blue").save(root / "inside.png")
    Image.new("RGB", (4, 4), "blue").save(root / "images_00" / "shard.png")
    (root / "link.png").symlink_to(canary)                       # a symlink leaving the folder
    (root / "images_01").symlink_to(outside, target_is_directory=True)  # a shard folder that is a link
    (root / "loop.png").symlink_to(root / "loop.png")
    yield root, canary


@pytest.fixture()
def watched(tree: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> Canary:
    canary = Canary(tree[1])
    real_open, real_os_open, real_pil_open = builtins.open, os.open, Image.open

    def open_(file, *a, **k):
        canary.check(file)
        return real_open(file, *a, **k)

    def os_open(path, *a, **k):
        canary.check(path)
        return real_os_open(path, *a, **k)

    def pil_open(fp, *a, **k):
        canary.check(fp)
        return real_pil_open(fp, *a, **k)

    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(io, "open", open_)
    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(Image, "open", pil_open)
    return canary


def hostile_names(canary: Path) -> st.SearchStrategy[str]:
    fixed = [
        str(canary), "/" + canary.name, f"../private/{canary.name}", f"images_00/../../private/{canary.name}",
        f"..\\private\\{canary.name}", f"C:\\private\\{canary.name}", f"\\\\server\\share\\{canary.name}",
        "link.png", "images_01/canary.png", "canary.png", "loop.png", "..", ".", "", "/", "a\x00b.png",
        "x" * 300 + ".png", "é" * 200 + ".png",
        "\uff0e\uff0e\uff0fprivate\uff0fcanary.png",     # fullwidth ．．／ look-alikes
        "..\u2215private\u2215canary.png",                 # division slash
        "images_0\uff10/shard.png",                         # fullwidth digit
        "/etc/passwd", "../../../../../../etc/passwd",
    ]
    parts = st.sampled_from(["..", ".", "private", "images_00", "images_01", canary.name, "link.png", "", "\x00",
                             "\uff0e\uff0e", "\u2215", "x" * 120])
    joined = st.builds(lambda xs, sep, lead: lead + sep.join(xs), st.lists(parts, min_size=1, max_size=6),
                       st.sampled_from(["/", "\\"]), st.sampled_from(["", "/", "\\", str(canary.parent) + "/"]))
    return st.one_of(st.sampled_from(fixed), joined, st.text(max_size=300))


def test_hostile_names_never_reach_outside(tree: tuple[Path, Path], watched: Canary) -> None:
    root, canary = tree
    real_root = root.resolve()

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(hostile_names(canary))
    def check(name: str) -> None:
        found = resolve_image(root, name)
        if found is not None:
            assert found.is_relative_to(real_root), (name, found)
            assert found.is_file() and not found.is_symlink()

    check()
    assert watched.opened == []


def test_inside_names_still_resolve(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    assert resolve_image(root, "/anything/inside.png") == (root / "inside.png").resolve()
    assert resolve_image(root, "images_07\\shard.png") == (root / "images_00" / "shard.png").resolve()
    link = find_image(root, "link.png")
    assert link.path is None and "link.png" in str(link.problem) and "outside" in str(link.problem)
    shard_link = find_image(root, "canary.png")
    assert shard_link.path is None and "images_01/canary.png" in str(shard_link.problem)


def _item(image_path: str) -> dict:
    return {"image_path": image_path, "criteria": {a: {"score": 6.0, "reason": "r"} for a in ATTRIBUTES},
            "total_score": 50}


def test_validate_names_each_refused_item_and_never_opens_the_canary(tree: tuple[Path, Path], watched: Canary,
                                                                     tmp_path: Path) -> None:
    root, canary = tree
    Image.new("RGB", (4, 4)).save(canary.parent / "other.png")
    items = [_item(str(canary)), _item("../private/other.png"), _item("link.png"), _item("inside.png")]
    data = tmp_path / "train.json"
    data.write_text(json.dumps(items))
    report = validate_file(data, root)
    assert watched.opened == []
    problems = [str(p) for p in report.problems]
    assert report.images_checked == 4 and report.images_missing == 3 and len(problems) == 3
    assert any("item 2 (link.png)" in p and "outside" in p for p in problems)
    plain = validate_file(data)  # without --images: absolute and `..` paths are problems
    assert [p.index for p in plain.problems] == [0, 1]
    assert "absolute" in plain.problems[0].problem and "'..'" in plain.problems[1].problem


@pytest.mark.parametrize(("path", "bad"), [("/etc/passwd", True), ("..\\x.jpg", True), ("C:\\x.jpg", True),
                                           ("images_03/x.jpg", False), ("x..y.jpg", False)])
def test_unsafe_image_path(path: str, bad: bool) -> None:
    assert (unsafe_image_path(path) is not None) is bad


def test_cli_validate_does_not_read_outside_images(tree: tuple[Path, Path], tmp_path: Path) -> None:
    root, canary = tree
    data = tmp_path / "train.json"
    data.write_text(json.dumps([_item(str(canary)), _item("inside.png")]))
    run = run_script("data", "validate", data, "--images", root, "--json")
    assert run.code == 2, run.output
    report = json.loads(run.stdout)
    assert report["images_missing"] == 1 and report["images_checked"] == 2
    [problem] = report["problems"]
    assert problem.startswith(f"item 0 ({canary})") and "resolves outside" in problem
