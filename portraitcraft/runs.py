"""The run folder: `runs/<name>/` with a manifest, an append-only results.jsonl and atomically written files.

Crash safety: every file is written through `portraitcraft.atomic` (temp file in the same folder, fsync,
`os.replace`); each results row is ONE `os.write` of a complete line on an O_APPEND descriptor, and opening
a results file trims a torn tail (a line without its newline) left by a writer killed mid-write, so readers
only ever see complete rows.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from portraitcraft.atomic import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    check_output_folder,
    save_image_atomic,
)
from portraitcraft.config import PortraitcraftConfig, mask_secrets
from portraitcraft.errors import InputError, PortraitcraftError
from portraitcraft.ids import safe_id

ID_MARKER = ".id"
"""In each item folder: the raw id that owns it (UTF-8)."""

TRACKED_PACKAGES = (
    "portraitcraft", "pydantic", "langgraph", "openai", "numpy", "scipy", "pillow",
    "torch", "diffusers", "transformers", "peft", "accelerate", "rtmlib", "onnxruntime",
)  # fmt: skip


def package_versions(names: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str | None]:
    """Installed versions (None when absent), for manifests and `doctor`."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


class ResultsLog:
    """An append-only JSONL file of complete rows, safe against a writer killed mid-line."""

    def __init__(self, path: str | Path, *, create: bool = False):
        """Open the log; `create` makes the (empty) file at once, so readers find it even with no row."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.repaired_bytes = self._trim_torn_tail()
        if create:
            os.close(os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666))

    def _trim_torn_tail(self) -> int:
        if not self.path.exists():
            return 0
        size = self.path.stat().st_size
        if size == 0:
            return 0
        with open(self.path, "rb+") as fh:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) == b"\n":
                return 0
            # Find the last newline and cut everything after it.
            pos, block = size, 4096
            while pos > 0:
                start = max(0, pos - block)
                fh.seek(start)
                chunk = fh.read(pos - start)
                idx = chunk.rfind(b"\n")
                if idx >= 0:
                    keep = start + idx + 1
                    fh.truncate(keep)
                    return size - keep
                pos = start
            fh.truncate(0)
            return size

    def append(self, row: dict[str, Any]) -> None:
        """Append one row as a single complete line (one write call on an O_APPEND descriptor)."""
        line = (json.dumps(row, ensure_ascii=False, default=str) + "\n").encode("utf-8")
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                written = os.write(fd, line)
                while written < len(line):  # a short write on a full disk: finish or fail loudly
                    written += os.write(fd, line[written:])
                os.fsync(fd)
            finally:
                os.close(fd)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8") as fh:
            for line in fh:
                if line.endswith("\n") and line.strip():
                    yield json.loads(line)

    def rows(self) -> list[dict[str, Any]]:
        return list(self)

    def done_ids(self, status: str | None = "finished") -> set[str]:
        """Item ids with a row (of the given status, or any status when None)."""
        return {r["id"] for r in self if "id" in r and (status is None or r.get("status") == status)}


def failed_row(item_id: str, error: PortraitcraftError, **fields: Any) -> dict[str, Any]:
    """The results row of an item that failed in an expected way (bad input, a refused image, an endpoint
    that gave up): `status` "failed" and the error's one-line message."""
    return {"id": item_id, "status": "failed", **fields, "error": str(error), "error_type": type(error).__name__}


LOCK_NAME = ".lock"
"""In a run folder: the lock file (an `flock` held while a process writes the folder; it holds that pid)."""


class RunFolderBusy(InputError):
    """Another live process holds the run folder's lock (exit 2)."""


class RunLock:
    """An exclusive `fcntl.flock` on `<run folder>/.lock`, held by this process until `release()` or exit.

    The kernel drops an flock when its holder dies (SIGKILL included), so a lock file left by a killed
    process is stale by construction and the next `lock_run_folder` takes it over; two processes racing for
    it cannot both win (flock is atomic), unlike a check-the-pid-then-write scheme.
    """

    def __init__(self, path: Path, fd: int, previous_pid: int | None):
        self.path, self.fd, self.previous_pid = path, fd, previous_pid

    def release(self) -> None:
        """Drop the lock (the file stays: it is harmless without the flock)."""
        if self.fd >= 0:
            _HELD.pop(os.path.realpath(self.path), None)
            os.close(self.fd)  # closing the last descriptor releases the flock
            self.fd = -1


_HELD: dict[str, RunLock] = {}


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def lock_run_folder(root: str | Path) -> RunLock:
    """Take the run folder's lock for this process (created with the folder), or refuse at once.

    Re-taking a folder this process already holds returns the same lock.

    Raises:
        RunFolderBusy: another live process holds it (the message names its pid).
        InputError: the folder cannot be created or is not a folder.

    Example:
        >>> lock = lock_run_folder("runs/demo")  # doctest: +SKIP
    """
    folder = Path(root)
    check_output_folder(folder, "run folder")
    path = folder / LOCK_NAME
    key = os.path.realpath(path)
    if key in _HELD:
        return _HELD[key]
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0), 0o666)
    except OSError as exc:
        raise InputError(f"run folder {folder}: cannot create its lock file {path} ({exc.strerror or exc})") from None
    try:
        import fcntl
    except ImportError:  # pragma: no cover - no flock on this platform: no lock
        lock = RunLock(path, fd, None)
        _HELD[key] = lock
        return lock
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = _read_pid(fd)
        os.close(fd)
        who = f"process {holder}" if holder else "another process"
        raise RunFolderBusy(f"run folder {folder} is in use by {who} (lock {path}); wait for it to finish or "
                            "stop it, or use another --out") from None
    previous = _read_pid(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    lock = RunLock(path, fd, previous if previous != os.getpid() else None)
    _HELD[key] = lock
    return lock


class RunFolder:
    """A run's folder: manifest.json, results.jsonl, and per-item files under safe names.

    Example:
        >>> run = RunFolder.create("runs", "demo", config=load_config())  # doctest: +SKIP
        >>> run.results.append({"id": "a", "status": "finished"})  # doctest: +SKIP
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.results = ResultsLog(self.root / "results.jsonl")
        self._claimed: dict[str, str] = {}
        self.lock: RunLock | None = None

    @classmethod
    def create(
        cls,
        out_dir: str | Path,
        name: str = "",
        *,
        config: PortraitcraftConfig | None = None,
        command: list[str] | None = None,
        resume: bool = False,
    ) -> RunFolder:
        """Create (or, with resume, reopen) `out_dir/<name>` and write its manifest."""
        name = name or datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        root = Path(out_dir) / safe_id(name)
        lock = lock_run_folder(root)  # refuses at once when another process is writing this folder
        if not resume and any(p.name != LOCK_NAME for p in root.iterdir()):
            lock.release()
            raise InputError(f"run folder {root} already exists and is not empty; pass --resume to continue it, "
                             "or choose another --out")
        run = cls(root)
        run.lock = lock
        run.write_manifest(config, command)
        return run

    def write_manifest(self, config: PortraitcraftConfig | None, command: list[str] | None = None) -> Path:
        manifest_path = self.root / "manifest.json"
        previous: dict[str, Any] = {}
        if manifest_path.exists():
            previous = json.loads(manifest_path.read_text(encoding="utf-8"))
        manifest = {
            "started": previous.get("started") or datetime.now(UTC).isoformat(),
            "resumed": ([*previous.get("resumed", []), datetime.now(UTC).isoformat()] if previous else []),
            "command": mask_secrets(list(command if command is not None else sys.argv)),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "packages": package_versions(),
            "config": config.masked() if config is not None else None,
        }
        return atomic_write_json(manifest_path, manifest)

    def item_dir(self, item_id: str) -> Path:
        """The folder of one item: `items/<safe_id(item_id)>/`, the one place the raw id becomes a name.

        The folder records the raw id it belongs to (`.id`); a different raw id that sanitises to the same
        name is refused instead of sharing the folder.

        Raises:
            InputError: another item already owns the folder name.
        """
        name = safe_id(item_id)
        path = self.root / "items" / name
        if self._claimed.get(name) == item_id:
            return path
        path.mkdir(parents=True, exist_ok=True)
        marker = path / ID_MARKER
        raw = item_id.encode("utf-8", "surrogatepass")
        try:
            owner = marker.read_bytes()
        except FileNotFoundError:
            atomic_write_bytes(marker, raw)
            owner = raw
        if owner != raw:
            other = owner.decode("utf-8", "surrogatepass")
            raise InputError(f"item {item_id!r}: its folder name {name!r} already belongs to item {other!r}; "
                             "give one of them another id")
        self._claimed[name] = item_id
        return path

    def item_file(self, item_id: str, name: str) -> Path:
        """A file in the item's folder; `name` is sanitised too (it may come from data)."""
        return self.item_dir(item_id) / safe_id(name)


__all__ = [
    "ID_MARKER",
    "LOCK_NAME",
    "ResultsLog",
    "RunFolder",
    "RunFolderBusy",
    "RunLock",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "failed_row",
    "lock_run_folder",
    "package_versions",
    "save_image_atomic",
]
