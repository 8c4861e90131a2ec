"""The one atomic file writer: bytes, text, JSON, images (PNG metadata kept) and streamed files such as zips.

Every write goes to a temp file IN THE TARGET'S FOLDER (created first, so `os.replace` never crosses a
filesystem), is flushed and fsynced, then `os.replace`d over the target; the folder entry is fsynced too
where the platform allows. The file gets the mode a plain `open()` would give: the overwritten file's
mode, else 0o666 under the umask. On any error (a failed encode, a full disk, Ctrl-C) the temp file is removed and
the previous target, if any, is left untouched.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from portraitcraft.errors import InputError

TEMP_PREFIX = ".tmp-"
"""Temp files start with this (hidden, and easy to recognise as leftovers of a killed process)."""

IMAGE_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".png": "PNG"}
JPEG_QUALITY = 95


def current_umask() -> int:
    """The process umask, read without changing it where the platform shows it (/proc), else set and reset."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # pragma: no cover - no /proc: the classic set-and-restore
    os.umask(mask)  # pragma: no cover
    return mask  # pragma: no cover


def output_mode(target: Path) -> int:
    """The mode a plain `open(target, "w")` would leave: the existing file's mode when it is overwritten,
    else 0o666 under the umask (mkstemp alone would give 0o600)."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except OSError:
        return 0o666 & ~current_umask()


def _first_existing(path: Path) -> Path:
    for parent in path.parents:
        if parent.exists():
            return parent
    return Path(".")  # pragma: no cover - a relative path whose parents are all missing


def check_output_file(path: str | Path, what: str = "--out") -> Path:
    """Refuse, before any work, an output file that cannot be written: an existing folder, or a parent
    that is a file (one line naming the path, exit 2; never a raw IsADirectoryError after the work).

    Example:
        >>> check_output_file("runs/scores.csv")  # doctest: +SKIP
    """
    target = Path(path)
    if target.is_dir():
        raise InputError(f"{what} {target}: is a folder, expected a file name")
    if target.exists() and not target.is_file():
        raise InputError(f"{what} {target}: is not a regular file (a device, pipe or socket)")
    blocker = _first_existing(target)
    if not blocker.is_dir():
        raise InputError(f"{what} {target}: {blocker} is a file, so it cannot hold {target.name}")
    return target


def check_output_folder(folder: str | Path, what: str = "--out") -> Path:
    """Create an output folder (and its parents), or refuse in one line: a file in the way, no permission
    (exit 2, never a raw FileExistsError / NotADirectoryError)."""
    target = Path(folder)
    if target.exists() and not target.is_dir():
        raise InputError(f"{what} {target}: is a file, expected a folder")
    blocker = _first_existing(target)
    if not blocker.is_dir():
        raise InputError(f"{what} {target}: {blocker} is a file, so the folder cannot be created")
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{what} {target}: cannot create it ({exc.strerror or exc})") from None
    return target


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory descriptors
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on folders
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | Path) -> Iterator[IO[bytes]]:
    """A binary file handle whose content replaces `path` only when the block ends without an error.

    Example:
        >>> import zipfile
        >>> with atomic_open("out/sub.zip") as fh, zipfile.ZipFile(fh, "w") as zf:  # doctest: +SKIP
        ...     zf.writestr("a.json", "[]")
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f"{TEMP_PREFIX}{target.name[:40]}.", suffix=".tmp")
    try:
        os.fchmod(fd, output_mode(target))
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically (see the module docstring)."""
    with atomic_open(path) as fh:
        fh.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 text atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, data: Any) -> Path:
    """Write indented JSON (UTF-8, non-ASCII kept) atomically."""
    return atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def atomic_write_jsonl(path: str | Path, rows: Iterable[Any]) -> Path:
    """Write JSON lines (one compact row per line, UTF-8, non-ASCII kept) atomically: the one JSONL writer of
    whole files (an append log is `portraitcraft.runs.ResultsLog`)."""
    return atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows))


def image_format(path: str | Path) -> str:
    """The Pillow format a file name asks for: JPEG for .jpg/.jpeg, WEBP for .webp, PNG otherwise."""
    return IMAGE_FORMATS.get(Path(path).suffix.lower(), "PNG")


def save_image_atomic(image: Any, path: str | Path, *, pnginfo: Any = None, fmt: str | None = None) -> Path:
    """Save a PIL image atomically; the format follows the suffix unless `fmt` is given.

    Args:
        image (PIL.Image.Image): the image.
        path (str | Path): the target file.
        pnginfo (PIL.PngImagePlugin.PngInfo, optional): text chunks to write (PNG only).
        fmt (str, optional): a Pillow format name overriding the suffix.
    """
    fmt = fmt or image_format(path)
    kwargs: dict[str, Any] = {}
    if fmt == "PNG" and pnginfo is not None:
        kwargs["pnginfo"] = pnginfo
    if fmt == "JPEG":
        kwargs["quality"] = JPEG_QUALITY
        if getattr(image, "mode", "RGB") not in ("RGB", "L", "CMYK"):
            image = image.convert("RGB")
    with atomic_open(path) as fh:
        image.save(fh, format=fmt, **kwargs)
    return Path(path)


__all__ = [
    "TEMP_PREFIX",
    "atomic_open",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_jsonl",
    "atomic_write_text",
    "check_output_file",
    "check_output_folder",
    "current_umask",
    "image_format",
    "output_mode",
    "save_image_atomic",
]
