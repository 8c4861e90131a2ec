"""The one atomic writer: temp file always in the target's folder, cleaned up on any error, fsynced; and the
submission and image writers that use it (the cross-device and failed-save cases of issue 9)."""

from __future__ import annotations

import errno
import json
import os
import zipfile
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from portraitcraft import atomic
from portraitcraft.atomic import atomic_open, atomic_write_bytes, atomic_write_json, save_image_atomic
from portraitcraft.data import load_track1_test, load_track2
from portraitcraft.schemas import ATTRIBUTES, Track1Prediction
from portraitcraft.submission import write_track1_submission, write_track2_submission


@pytest.fixture()
def cross_device(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[tuple[str, str]]:
    """`os.replace` across folders fails like a rename across filesystems; $TMPDIR is another folder."""
    other = tmp_path / "other-filesystem"
    other.mkdir()
    monkeypatch.setenv("TMPDIR", str(other))
    monkeypatch.setattr("tempfile.tempdir", str(other))
    real_replace = os.replace
    calls: list[tuple[str, str]] = []

    def replace(src: str | os.PathLike, dst: str | os.PathLike) -> None:
        calls.append((str(src), str(dst)))
        if Path(src).resolve().parent != Path(dst).resolve().parent:
            raise OSError(errno.EXDEV, "Invalid cross-device link", str(src))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    return calls


def _all_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_track1_zip_into_a_new_folder_on_another_filesystem(examples_dir: Path, tmp_path: Path,
                                                           cross_device: list) -> None:
    template = load_track1_test(examples_dir / "track_1_test.json")
    preds = [Track1Prediction(image_path=t.image_path, levels=dict.fromkeys(ATTRIBUTES, "B"), total_score=50,
                              answer="B") for t in template]
    out = tmp_path / "new" / "deeper" / "track_1_submission.zip"
    write_track1_submission(template, preds, out)
    with zipfile.ZipFile(out) as zf:
        assert zf.namelist() == ["track_1_test.json"]
    assert cross_device and all(Path(src).parent == out.parent for src, _ in cross_device)
    assert _all_files(tmp_path / "new") == ["deeper/track_1_submission.zip"]
    assert not list((tmp_path / "other-filesystem").iterdir())


@pytest.mark.parametrize("write", [
    lambda p: atomic_write_bytes(p, b"x"),
    lambda p: atomic_write_json(p, {"a": 1}),
    lambda p: save_image_atomic(Image.new("RGB", (4, 4)), p.with_suffix(".png")),
])
def test_every_writer_creates_the_folder_and_writes_there(tmp_path: Path, cross_device: list, write) -> None:
    target = tmp_path / "a" / "b" / "f.json"
    written = write(target)
    assert written.is_file() and len(cross_device) == 1
    assert Path(cross_device[0][0]).parent == target.parent


def test_failed_image_save_leaves_no_temp_file_in_submission(examples_dir: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    specs = load_track2(examples_dir / "track_2_test.json")
    src = tmp_path / "src.png"
    Image.new("RGB", (8, 8), "red").save(src)
    real_save = Image.Image.save
    calls = {"n": 0}

    def flaky_save(self: Image.Image, fp, format=None, **kw) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            fp.write(b"partial bytes")
            raise OSError("No space left on device")
        real_save(self, fp, format=format, **kw)

    monkeypatch.setattr(Image.Image, "save", flaky_save)
    with pytest.raises(OSError, match="No space"):
        write_track2_submission(specs, {s.id: src for s in specs}, tmp_path / "out")
    leftovers = [p.name for p in (tmp_path / "out").rglob("*") if p.name.startswith(".")]
    assert leftovers == []
    assert len(list((tmp_path / "out" / "submission").iterdir())) == 1  # the first image, complete


def test_error_inside_the_block_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    atomic_write_json(target, {"v": 1})
    with pytest.raises(KeyboardInterrupt), atomic_open(target) as fh:
        fh.write(b'{"v": 2, "half')
        raise KeyboardInterrupt
    assert json.loads(target.read_text()) == {"v": 1}
    assert os.listdir(tmp_path) == ["x.json"]


def test_writes_are_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
    atomic_write_bytes(tmp_path / "a.bin", b"abc")
    assert len(synced) >= 1
    before = len(synced)
    save_image_atomic(Image.new("RGB", (4, 4)), tmp_path / "a.jpg")
    assert len(synced) > before


def test_png_metadata_and_format_follow_the_target(tmp_path: Path) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_itxt("portraitcraft", '{"seed": 3}')
    png = save_image_atomic(Image.new("RGBA", (4, 4)), tmp_path / "a.png", pnginfo=info)
    jpg = save_image_atomic(Image.new("RGBA", (4, 4)), tmp_path / "a.jpg", pnginfo=info)
    with Image.open(png) as im:
        assert im.format == "PNG" and im.info["portraitcraft"] == '{"seed": 3}'
    with Image.open(jpg) as im:
        assert im.format == "JPEG" and im.mode == "RGB"
    assert atomic.image_format("X.JPEG") == "JPEG" and atomic.image_format("x.bmp") == "PNG"
