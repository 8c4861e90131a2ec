"""Bounded reads of input files: regular files only, a size cap, and one line naming the file on failure.

Every data, prediction, CSV and config file the CLI reads goes through here, so `/dev/zero`, a FIFO, a
folder, a huge file, a zip bomb, a JSON array nested 100k deep or a binary file is one readable error
naming the file, never an endless read or a RecursionError.

The cap is `limits.max_input_mb` (default 512): set it in a config file's `[limits]` section, with
`--set limits.max_input_mb=N` on commands that take a config, or with the environment variable
`PORTRAITCRAFT_LIMITS__MAX_INPUT_MB` (which every command honours).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from portraitcraft.errors import DataError

DEFAULT_MAX_INPUT_MB = 512
ENV_MAX_INPUT_MB = "PORTRAITCRAFT_LIMITS__MAX_INPUT_MB"
_configured: dict[str, int] = {}


def set_max_input_mb(mb: int | None) -> None:
    """Apply the configured cap (commands call this with `cfg.limits.max_input_mb`)."""
    if mb is None:
        _configured.pop("mb", None)
    else:
        _configured["mb"] = int(mb)


def max_input_bytes() -> int:
    """The current cap in bytes: the environment variable, else the applied config, else the default."""
    raw = os.environ.get(ENV_MAX_INPUT_MB)
    if raw is not None and raw.strip():
        try:
            mb = int(raw)
        except ValueError:
            raise DataError(f"{ENV_MAX_INPUT_MB}={raw!r}: not a whole number of MB") from None
        if mb < 1:
            raise DataError(f"{ENV_MAX_INPUT_MB}={raw!r}: must be at least 1")
    else:
        mb = _configured.get("mb", DEFAULT_MAX_INPUT_MB)
    return mb * 1024 * 1024


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB"


def check_regular(path: str | Path, *, what: str = "file", error: type[Exception] = DataError) -> os.stat_result:
    """stat() a file that must exist and be a regular file (not a folder, device, FIFO or socket)."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise error(f"{p}: {what} does not exist") from None
    except (OSError, ValueError) as exc:
        raise error(f"{p}: cannot read the {what} ({getattr(exc, 'strerror', None) or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise error(f"{p}: is a folder, expected a {what}")
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{p}: is not a regular file (a device, pipe or socket); expected a {what}")
    return st


def read_bytes(path: str | Path, *, what: str = "file", max_bytes: int | None = None,
               error: type[Exception] = DataError) -> bytes:
    """The whole file, refusing non-regular files and anything over the cap (checked before and while reading)."""
    p = Path(path)
    limit = max_input_bytes() if max_bytes is None else max_bytes
    st = check_regular(p, what=what, error=error)
    if st.st_size > limit:
        raise error(f"{p}: {_mb(st.st_size)} is over the {_mb(limit)} input limit (limits.max_input_mb)")
    try:
        with open(p, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise error(f"{p}: cannot read the {what} ({exc.strerror or exc})") from None
    if len(data) > limit:  # grew while we read
        raise error(f"{p}: over the {_mb(limit)} input limit (limits.max_input_mb)")
    return data


def read_text(path: str | Path, *, what: str = "file", max_bytes: int | None = None,
              error: type[Exception] = DataError) -> str:
    """UTF-8 text (a BOM is dropped); a binary or non-UTF-8 file is an error naming the file and the byte."""
    data = read_bytes(path, what=what, max_bytes=max_bytes, error=error)
    return decode_text(data, str(path), what=what, error=error)


def decode_text(data: bytes, name: str, *, what: str = "file", error: type[Exception] = DataError) -> str:
    if b"\x00" in data[:8192]:
        raise error(f"{name}: is a binary file, not a text {what}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def parse_text(loads: Callable[[str], Any], text: str, name: str, *, what: str = "JSON",
               error: type[Exception] = DataError) -> Any:
    """`loads(text)` (json.loads, tomllib.loads) with malformed or too deeply nested input as one error
    naming the file."""
    try:
        return loads(text)
    except RecursionError:
        raise error(f"{name}: {what} nested too deeply to read") from None
    except ValueError as exc:  # JSONDecodeError and TOMLDecodeError
        if isinstance(exc, json.JSONDecodeError):
            raise error(f"{name}: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
        raise error(f"{name}: not valid {what}: {exc}") from None


def loads_json(text: str, name: str) -> Any:
    """json.loads that names the file on malformed or too deeply nested input (raises DataError)."""
    return parse_text(json.loads, text, name)


__all__ = [
    "DEFAULT_MAX_INPUT_MB",
    "ENV_MAX_INPUT_MB",
    "check_regular",
    "decode_text",
    "loads_json",
    "max_input_bytes",
    "parse_text",
    "read_bytes",
    "read_text",
    "set_max_input_mb",
]
