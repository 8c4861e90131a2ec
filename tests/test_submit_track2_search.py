"""`data submit track2` never picks up its own previous output, prefers exact names and reports ambiguity
(through the installed console script)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from console_script import run_script
from PIL import Image

from portraitcraft.data import load_track2
from portraitcraft.submission import find_submission_images


def _colour_of(path: Path, name: str) -> tuple[int, int, int]:
    with zipfile.ZipFile(path) as zf, zf.open(name) as fh, Image.open(fh) as im:
        return im.convert("RGB").getpixel((8, 8))


def test_a_rerun_submits_the_new_images_not_its_old_output(examples_dir: Path, tmp_path: Path) -> None:
    items = examples_dir / "track_2_test.json"
    specs = load_track2(items)
    for s in specs:  # the images sit at the root of --images, next to the default output folder
        Image.new("RGB", (16, 16), (200, 0, 0)).save(tmp_path / f"{Path(s.output_name).stem}.png")
    args = ["data", "submit", "track2", items, "--images", ".", "--json"]
    first = run_script(*args, cwd=tmp_path)
    assert first.code == 0, first.output
    assert (tmp_path / "track2_submission" / "submission" / specs[0].output_name).is_file()
    for s in specs:  # redraw every item in blue and submit again
        Image.new("RGB", (16, 16), (0, 0, 200)).save(tmp_path / f"{Path(s.output_name).stem}.png")
    second = run_script(*args, cwd=tmp_path)
    assert second.code == 0, second.output
    zip_path = tmp_path / "track2_submission" / "submission.zip"
    for s in specs:
        r, _, b = _colour_of(zip_path, s.output_name)
        assert b > 150 and r < 60, (s.output_name, r, b)


def test_exact_name_wins_and_ties_are_reported(examples_dir: Path, tmp_path: Path) -> None:
    items = examples_dir / "track_2_test.json"
    specs = load_track2(items)
    images = tmp_path / "images"
    (images / "a").mkdir(parents=True)
    (images / "b").mkdir()
    exact, other = specs[0], specs[1]
    Image.new("RGB", (16, 16), "green").save(images / "a" / exact.output_name)          # exact (.jpg)
    Image.new("RGB", (16, 16), "red").save(images / "b" / f"{Path(exact.output_name).stem}.png")
    Image.new("RGB", (16, 16)).save(images / "a" / f"{Path(other.output_name).stem}.png")  # two stems tie
    Image.new("RGB", (16, 16)).save(images / "b" / f"{Path(other.output_name).stem}.webp")
    (images / "b" / f"{Path(specs[2].output_name).stem}.json").write_text("{}")             # not an image
    matches = find_submission_images(images, specs)
    assert matches.found == {exact.id: images / "a" / exact.output_name}
    assert sorted(matches.ambiguous[other.id]) == sorted([images / "a" / f"{Path(other.output_name).stem}.png",
                                                          images / "b" / f"{Path(other.output_name).stem}.webp"])
    run = run_script("data", "submit", "track2", items, "--images", images, "--out", tmp_path / "out")
    assert run.code == 2 and f"{other.image_path}: 2 candidates" in run.stderr, run.output
    ok = run_script("data", "submit", "track2", items, "--images", images, "--out", tmp_path / "out",
                    "--allow-missing", "--json")
    assert ok.code == 0, ok.output
    report = json.loads(ok.stdout)
    assert report["n_images"] == 1 and len(report["ambiguous"]) == 1


def test_an_unreadable_image_is_named_not_a_crash(examples_dir: Path, tmp_path: Path) -> None:
    items = examples_dir / "track_2_test.json"
    specs = load_track2(items)
    for s in specs:
        Image.new("RGB", (16, 16)).save(tmp_path / f"{Path(s.output_name).stem}.png")
    (tmp_path / f"{Path(specs[3].output_name).stem}.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    run = run_script("data", "submit", "track2", items, "--images", tmp_path, "--out", tmp_path / "out")
    assert run.code == 2 and "cannot be read" in run.stderr and specs[3].image_path in run.stderr, run.output
    assert "Traceback" not in run.output
