"""PortraitCraft files in: the four official JSON arrays, JSONL of the same objects, ad-hoc descriptions.

Readers never stop at the first bad item: `parse_items` returns the good items and one `ItemProblem` per
bad one (`item <index> (<image_path>): <field>: <problem>`), so a run can go on without them.
Writers live in `portraitcraft.submission`.
"""

from __future__ import annotations

import json
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath, PureWindowsPath
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from portraitcraft import bounded
from portraitcraft.bounded import check_regular
from portraitcraft.errors import DataError
from portraitcraft.ids import earlier_duplicate, item_key
from portraitcraft.schemas import (
    ATTRIBUTES,
    ItemProblem,
    Level,
    Track1TestItem,
    Track1TrainItem,
    Track2Spec,
)

Kind = Literal["track1_train", "track1_test", "track2", "descriptions"]
KINDS: tuple[Kind, ...] = ("track1_train", "track1_test", "track2", "descriptions")
SHARD_DIRS: tuple[str, ...] = tuple(f"images_{i:02d}" for i in range(11))
TRACK2_FIELDS = {"image_path": "image_path", "content_description": "content", "composition_analysis": "composition"}


@dataclass
class Parsed:
    """The outcome of parsing a file: its kind, the valid items (with their indices) and the problems."""

    kind: Kind
    items: list[Any] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    problems: list[ItemProblem] = field(default_factory=list)
    n_records: int = 0


def read_records(path: str | Path) -> list[Any]:
    """Read a JSON array, JSONL, a zip holding one JSON file, or a text file of one description per line.

    Reads are bounded (`portraitcraft.bounded`): regular files only, at most `limits.max_input_mb`.

    Raises:
        DataError: the file is missing, not a regular file, too large, not valid JSON/JSONL (or nested too
            deeply), or not an array of objects/strings; the message names the file.
    """
    p = Path(path)
    if p.suffix.lower() == ".zip":
        check_regular(p, what="zip file")
        return _read_zip(p)
    text = bounded.read_text(p, what="data file")
    return parse_text(text, str(p))


def parse_text(text: str, name: str) -> list[Any]:
    """Parse the text of a data file (see `read_records`)."""
    if not text.strip():
        raise DataError(f"{name}: file is empty")
    suffix = PurePath(name).suffix.lower()
    if suffix == ".txt":
        return [line.strip() for line in text.splitlines() if line.strip()]
    if suffix == ".jsonl" or (suffix != ".json" and text.lstrip()[:1] == "{"):
        return _parse_jsonl(text, name)
    data = bounded.loads_json(text, name)
    if not isinstance(data, list):
        raise DataError(f"{name}: expected a JSON array of items, got a JSON {type(data).__name__}")
    return data


@dataclass(frozen=True)
class MalformedLine:
    """A JSONL line that is not valid JSON: kept in place so it becomes one item's problem, not the file's."""

    lineno: int
    message: str


def _parse_jsonl(text: str, name: str) -> list[Any]:
    out: list[Any] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as exc:
            out.append(MalformedLine(lineno, f"malformed JSON on line {lineno}: {exc.msg}"))
        except RecursionError:
            out.append(MalformedLine(lineno, f"JSON on line {lineno} is nested too deeply to read"))
    if out and all(isinstance(r, MalformedLine) for r in out):
        raise DataError(f"{name}: no line is valid JSON ({out[0].message})")
    return out


def read_zip_member(p: Path, pick: Callable[[list[str]], str]) -> tuple[str, bytes]:
    """One member of a zip, chosen by `pick` from the member names; bounded like every input read."""
    limit = bounded.max_input_bytes()
    try:
        with zipfile.ZipFile(p) as zf:
            name = pick(zf.namelist())
            size = zf.getinfo(name).file_size
            if size > limit:
                raise DataError(f"{p}!{name}: {size / 1024 / 1024:.1f} MB uncompressed is over the "
                                f"{limit / 1024 / 1024:.1f} MB input limit (limits.max_input_mb)")
            with zf.open(name) as fh:
                data = fh.read(limit + 1)
    except (zipfile.BadZipFile, EOFError):
        raise DataError(f"{p}: not a valid zip file") from None
    except (OSError, zipfile.LargeZipFile, NotImplementedError) as exc:
        raise DataError(f"{p}: cannot read the zip ({exc})") from None
    if len(data) > limit:
        raise DataError(f"{p}!{name}: over the input limit (limits.max_input_mb)")
    return name, data


TRACK1_MEMBER = "track_1_test.json"
"""The one file a Track 1 submission zip holds, at its root (the only zip PortraitCraft defines)."""


def _read_zip(p: Path) -> list[Any]:
    def pick(names: list[str]) -> str:
        files = [n for n in names if not n.endswith("/")]
        if files != [TRACK1_MEMBER]:
            shown = ", ".join(repr(n) for n in files[:10]) or "no file"
            raise DataError(f"{p}: a PortraitCraft zip holds exactly one file, {TRACK1_MEMBER}, at its root; "
                            f"found {shown}")
        return TRACK1_MEMBER

    name, data = read_zip_member(p, pick)
    return parse_text(bounded.decode_text(data, f"{p}!{name}"), f"{p}!{name}")


def detect_kind(records: Sequence[Any]) -> Kind:
    """Guess the file kind from its records (the majority vote of the recognisable ones)."""
    votes: Counter[Kind] = Counter()
    for rec in records:
        if isinstance(rec, str):
            votes["descriptions"] += 1
        elif isinstance(rec, dict):
            if "content_description" in rec or "composition_analysis" in rec:
                votes["track2"] += 1
            elif "question" in rec or "options" in rec or "answer" in rec:
                votes["track1_test"] += 1
            elif "criteria" in rec:
                crit = rec["criteria"]
                first = next(iter(crit.values()), None) if isinstance(crit, dict) and crit else None
                is_test = isinstance(first, dict) and "level" in first
                votes["track1_test" if is_test else "track1_train"] += 1
    if not votes:
        raise DataError("cannot tell the file kind: no item looks like a PortraitCraft item or a description")
    return votes.most_common(1)[0][0]


def _image_path_of(rec: Any) -> str:
    if isinstance(rec, dict) and isinstance(rec.get("image_path"), str):
        return rec["image_path"]
    return ""


def problems_from_validation(exc: ValidationError, index: int, image_path: str) -> list[ItemProblem]:
    """One `ItemProblem` per pydantic error, worded for the user (field path, problem, offending value)."""
    out = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "item"
        msg = err["msg"].removeprefix("Value error, ")
        kind = err["type"]
        if kind == "missing":
            msg = "missing field"
        elif kind == "extra_forbidden":
            msg = "unknown field"
        elif kind in {"string_type", "float_type", "float_parsing", "int_type", "dict_type", "model_type"}:
            msg = f"{msg} (got {type(err['input']).__name__} {err['input']!r:.60})"
        out.append(ItemProblem(index, image_path, loc, msg))
    return out


def _track2_record(rec: Any) -> dict[str, Any]:
    if not isinstance(rec, dict):
        return rec
    out: dict[str, Any] = {}
    for key, value in rec.items():
        out[TRACK2_FIELDS.get(key, key)] = value
    return out


def _model_for(kind: Kind) -> type[BaseModel]:
    return {"track1_train": Track1TrainItem, "track1_test": Track1TestItem, "track2": Track2Spec}.get(
        kind, Track2Spec
    )


def parse_items(records: Sequence[Any], kind: Kind | None = None) -> Parsed:
    """Validate records as `kind` (detected when None), collecting every problem; duplicates are problems."""
    kind = kind or detect_kind(records)
    parsed = Parsed(kind=kind, n_records=len(records))
    model = _model_for(kind)
    seen: dict[str, int] = {}
    ids: dict[str, int] = {}
    for index, rec in enumerate(records):
        image_path = _image_path_of(rec)
        if isinstance(rec, MalformedLine):
            parsed.problems.append(ItemProblem(index, "", "item", rec.message))
            continue
        if kind == "descriptions":
            if not isinstance(rec, str) or not rec.strip():
                parsed.problems.append(ItemProblem(index, "", "item", "expected a non-empty description string"))
                continue
            item: Any = Track2Spec(image_path=f"prompt_{index:05d}.png", content=rec.strip(), composition="")
        else:
            if not isinstance(rec, dict):
                parsed.problems.append(
                    ItemProblem(index, "", "item", f"expected a JSON object, got {type(rec).__name__}")
                )
                continue
            try:
                item = model.model_validate(_track2_record(rec) if kind == "track2" else rec)
            except ValidationError as exc:
                parsed.problems.extend(problems_from_validation(exc, index, image_path))
                continue
        if isinstance(item, Track2Spec) and item.id in ids:  # two items may not share an id (a folder, a thread)
            parsed.problems.append(ItemProblem(index, item.image_path, "id",
                                               f"id {item.id!r} is also item {ids[item.id]}'s id"))
            continue
        earlier = earlier_duplicate(seen, item.image_path, index)
        if earlier is not None:
            parsed.problems.append(ItemProblem(index, item.image_path, "image_path", f"duplicate of item {earlier}"))
            continue
        if isinstance(item, Track2Spec):
            ids[item.id] = index
        parsed.items.append(item)
        parsed.indices.append(index)
    return parsed


def load(path: str | Path, kind: Kind | None = None, *, strict: bool = True) -> Parsed:
    """Read and validate a file. With strict=True, any bad item raises DataError listing every problem."""
    parsed = parse_items(read_records(path), kind)
    if strict and parsed.problems:
        raise DataError(f"{path}: {len(parsed.problems)} problem(s):\n" + "\n".join(map(str, parsed.problems)))
    return parsed


def load_track1_train(path: str | Path, *, strict: bool = True) -> list[Track1TrainItem]:
    return load(path, "track1_train", strict=strict).items


def load_track1_test(path: str | Path, *, strict: bool = True) -> list[Track1TestItem]:
    return load(path, "track1_test", strict=strict).items


def load_track2(path: str | Path, *, strict: bool = True) -> list[Track2Spec]:
    """Track 2 items; a JSON array/JSONL/text file of plain strings gives ad-hoc specs."""
    records = read_records(path)
    kind = detect_kind(records)
    if kind not in ("track2", "descriptions"):
        raise DataError(f"{path}: expected Track 2 items or descriptions, found a {kind} file")
    parsed = parse_items(records, kind)
    if strict and parsed.problems:
        raise DataError(f"{path}: {len(parsed.problems)} problem(s):\n" + "\n".join(map(str, parsed.problems)))
    return parsed.items


NAME_MAX_BYTES = 255
"""The longest file name (in UTF-8 bytes) most filesystems allow; a longer name cannot be an image here."""


@dataclass(frozen=True)
class ImageLookup:
    """Where an item's image is (`path`, resolved, inside the folder) or why it is not (`problem`)."""

    path: Path | None
    problem: str | None = None


def is_inside(path: Path, root: Path) -> bool:
    """True when the resolved `path` is `root` or below it (both already resolved)."""
    return path == root or path.is_relative_to(root)


def file_inside(root: str | Path, relative: str) -> Path | None:
    """`root / relative`, resolved, when it is a regular file inside `root` (no escape through `..`, an
    absolute path or a symbolic link pointing out), else None. The one containment check for paths that
    data files give relative to their folder (pairs files, run folders).

    Example:
        >>> file_inside("runs/t2", "items/a/round_0.png")  # doctest: +SKIP
        PosixPath('/home/me/runs/t2/items/a/round_0.png')
    """
    base = Path(root)
    try:
        real_root = base.resolve(strict=True)
        path = (base / relative).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):  # missing, a link loop, a name the OS refuses
        return None
    return path if is_inside(path, real_root) and path.is_file() else None


def find_image(images_dir: str | Path, image_path: str) -> ImageLookup:
    """Find an item's image INSIDE `images_dir`: its basename in the root, then in images_00..images_10.

    Nothing outside the folder is ever returned: only the basename (`item_key`) is looked up, and a candidate
    whose real path leaves the folder (a symlink, or a shard folder that is a link) is refused. The
    returned path is the resolved real path, a regular file.
    """
    root = Path(images_dir)
    try:
        real_root = root.resolve(strict=True)
    except (OSError, RuntimeError):
        return ImageLookup(None, f"images folder {root} does not exist")
    name = item_key(image_path)
    if name in ("", ".", "..") or "\x00" in name:
        return ImageLookup(None, f"image_path {image_path!r} has no usable file name")
    if len(name.encode("utf-8", "surrogatepass")) > NAME_MAX_BYTES:
        return ImageLookup(None, f"image file name is longer than {NAME_MAX_BYTES} bytes")
    refused: list[str] = []
    not_files: list[str] = []
    for folder in (root, *(root / shard for shard in SHARD_DIRS)):
        candidate = folder / name
        try:
            if not candidate.exists():
                continue
            real = candidate.resolve(strict=True)
        except (OSError, RuntimeError, ValueError):  # a link loop, a name the OS refuses
            continue
        if not is_inside(real, real_root):
            refused.append(str(candidate.relative_to(root)))
            continue
        if real.is_file():
            return ImageLookup(real)
        not_files.append(str(candidate.relative_to(root)))
    if refused:
        return ImageLookup(None, f"refused {', '.join(refused)}: it resolves outside {root} (a symbolic link)")
    if not_files:
        return ImageLookup(None, f"{', '.join(not_files)} under {root} is not a regular file (a folder, device, "
                                 "pipe or socket)")
    return ImageLookup(None, f"image not found under {root}")


def resolve_image(images_dir: str | Path | None, image_path: str) -> Path | None:
    """The item's image inside `images_dir` (see `find_image`), or None when there is none to use."""
    if images_dir is None:
        return None
    return find_image(images_dir, image_path).path


def unsafe_image_path(image_path: str) -> str | None:
    """Why an image path could name a file outside an images folder (absolute, drive, `..`), else None."""
    text = image_path.replace("\\", "/")
    if text.startswith("/") or PureWindowsPath(image_path).drive or PureWindowsPath(image_path).root:
        return "is an absolute path; give the file name (optionally under images_00..images_10)"
    if ".." in text.split("/"):
        return "contains '..'; give the file name (optionally under images_00..images_10)"
    return None


def check_image(path: Path) -> str | None:
    """None when the file is a readable image, else the problem (0-byte, corrupt, truncated)."""
    from PIL import Image, UnidentifiedImageError

    try:
        if path.stat().st_size == 0:
            return "image file is empty (0 bytes)"
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            im.load()
    except UnidentifiedImageError:
        return "image file is corrupt (not a recognisable image)"
    except (OSError, SyntaxError, ValueError) as exc:
        return f"image file is corrupt or truncated ({exc})"
    except Image.DecompressionBombError as exc:  # pragma: no cover - needs a huge header
        return f"image is too large to open safely ({exc})"
    return None


@dataclass
class ValidationReport:
    """What `portraitcraft data validate` prints: kind, counts, ranges, balance, problems."""

    path: str
    kind: Kind
    n_items: int
    n_valid: int
    problems: list[ItemProblem]
    total_score_range: tuple[float, float] | None = None
    attribute_score_range: tuple[float, float] | None = None
    level_balance: dict[str, int] = field(default_factory=dict)
    n_placeholders: int = 0
    images_checked: int = 0
    images_missing: int = 0
    images_bad: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "valid": self.ok,
            "n_items": self.n_items,
            "n_valid": self.n_valid,
            "n_problems": len(self.problems),
            "problems": [str(p) for p in self.problems],
            "total_score_range": self.total_score_range,
            "attribute_score_range": self.attribute_score_range,
            "level_balance": self.level_balance,
            "n_placeholders": self.n_placeholders,
            "images_checked": self.images_checked,
            "images_missing": self.images_missing,
            "images_bad": self.images_bad,
        }


def _range(values: Iterable[float]) -> tuple[float, float] | None:
    vals = list(values)
    return (min(vals), max(vals)) if vals else None


def validate_file(path: str | Path, images_dir: str | Path | None = None) -> ValidationReport:
    """Validate a data file (and, with images_dir, each item's image); never raises for bad items.

    Raises:
        DataError: only when the file itself cannot be read as an array of items.
    """
    parsed = parse_items(read_records(path))
    report = ValidationReport(str(path), parsed.kind, parsed.n_records, len(parsed.items), list(parsed.problems))
    balance: Counter[str] = Counter()
    if parsed.kind == "track1_train":
        report.total_score_range = _range(i.total_score for i in parsed.items)
        report.attribute_score_range = _range(c.score for i in parsed.items for c in i.criteria.values())
        balance.update(lv.value for i in parsed.items for lv in i.levels.values())
    elif parsed.kind == "track1_test":
        labelled = [i for i in parsed.items if not i.is_placeholder]
        report.n_placeholders = len(parsed.items) - len(labelled)
        report.total_score_range = _range(i.total_score for i in labelled)
        balance.update(lv.value for i in labelled for lv in i.levels.values() if lv is not None)
    report.level_balance = {lv.value: balance.get(lv.value, 0) for lv in Level} if balance else {}
    if images_dir is None and parsed.kind in ("track1_train", "track1_test", "track2"):
        for index, item in zip(parsed.indices, parsed.items, strict=True):
            why = unsafe_image_path(item.image_path)
            if why:
                report.problems.append(ItemProblem(index, item.image_path, "image_path", why))
    if images_dir is not None and parsed.kind in ("track1_train", "track1_test", "track2"):
        for index, item in zip(parsed.indices, parsed.items, strict=True):
            report.images_checked += 1
            lookup = find_image(images_dir, item.image_path)
            found = lookup.path
            if found is None:
                report.images_missing += 1
                report.problems.append(ItemProblem(index, item.image_path, "image", str(lookup.problem)))
                continue
            problem = check_image(found)
            if problem:
                report.images_bad += 1
                report.problems.append(ItemProblem(index, item.image_path, "image", f"{found.name}: {problem}"))
    report.problems.sort(key=lambda p: p.index)
    return report


__all__ = [
    "ATTRIBUTES",
    "KINDS",
    "SHARD_DIRS",
    "TRACK1_MEMBER",
    "ImageLookup",
    "ItemProblem",
    "Kind",
    "MalformedLine",
    "Parsed",
    "ValidationReport",
    "check_image",
    "detect_kind",
    "file_inside",
    "find_image",
    "load",
    "load_track1_test",
    "load_track1_train",
    "load_track2",
    "parse_items",
    "parse_text",
    "problems_from_validation",
    "read_records",
    "resolve_image",
    "unsafe_image_path",
    "validate_file",
]
