"""Item identity: the item key that joins files, the raw item id, and the one place an id becomes a name.

- `item_key(image_path)`: how every reader and writer joins items across files (predictions to ground
  truth, images to specs, CSV rows to items): the basename, with Windows separators normalised, so
  `images_03\\x.jpg`, `images_03/x.jpg` and `x.jpg` are one item everywhere.
- An item id is the RAW string (a Track 2 spec's default is its key's stem). It is the identity: the results
  row id, the graph thread_id, and the source of the item's folder name. It is never rewritten.
- `safe_id(raw)`: the file-safe name, computed exactly once, where a path is built. It is idempotent
  (a safe name maps to itself), so applying it twice cannot give a second folder.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import PurePosixPath

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_EDGE = "._-"
MAX_ID_CHARS = 80
"""The readable stem of a sanitised id is at most this long; a hashed name adds 13 characters."""
MAX_SAFE_CHARS = MAX_ID_CHARS + 13


def item_key(image_path: str) -> str:
    """The join key of an item: the basename of its image path, `\\` and `/` both separators.

    Example:
        >>> item_key("images_03\\\\x.jpg"), item_key("images_03/x.jpg"), item_key("x.jpg")
        ('x.jpg', 'x.jpg', 'x.jpg')
    """
    text = str(image_path).replace("\\", "/")
    if "/" not in text:
        return "" if text == "." else text
    parts = [part for part in text.split("/") if part not in ("", ".")]  # as PurePosixPath(text).name, faster
    return parts[-1] if parts else ""


def earlier_duplicate(seen: dict[str, int], image_path: str, index: int) -> int | None:
    """The index of an earlier item with the same key (a duplicate), else None after recording this one."""
    key = item_key(image_path)
    if key in seen:
        return seen[key]
    seen[key] = index
    return None


def default_item_id(image_path: str) -> str:
    """The raw id of an item that names none: the stem of its key (`images_01/a b.jpg` -> `a b`)."""
    key = item_key(image_path)
    return PurePosixPath(key).stem or key or str(image_path)


def is_safe_id(name: str) -> bool:
    """True when `name` is already a file-safe name that `safe_id` keeps as it is."""
    return (
        0 < len(name) <= MAX_SAFE_CHARS
        and _UNSAFE.search(name) is None
        and name[0] not in _EDGE
        and name[-1] not in _EDGE
    )


def safe_id(raw: str) -> str:
    """The file-safe name of a raw id: kept when already safe, else a readable stem plus a hash of the raw id.

    Safe names use [A-Za-z0-9._-], do not start or end with `.`, `_` or `-` (so never `.` or `..`) and are
    at most 93 characters; no name can point outside its folder. Idempotent: `safe_id(safe_id(x)) ==
    safe_id(x)`. Two raw ids share a name only when one IS the other's hashed name; `RunFolder` refuses
    that case when it builds the folder.

    Example:
        >>> safe_id("unsplash_people_00001_0a1b2c3d4e5f.jpg")
        'unsplash_people_00001_0a1b2c3d4e5f.jpg'
        >>> name = safe_id("../x"); name.startswith("x-"), safe_id(name) == name
        (True, True)
    """
    if is_safe_id(raw):
        return raw
    stem = _UNSAFE.sub("_", raw).lstrip(_EDGE)[:MAX_ID_CHARS].rstrip(_EDGE)
    digest = hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{stem}-{digest}" if stem else f"id-{digest}"


__all__ = ["MAX_ID_CHARS", "default_item_id", "earlier_duplicate", "is_safe_id", "item_key", "safe_id"]
