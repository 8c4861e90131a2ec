"""Official submission writers: the Track 1 zip and the Track 2 image folder + flat zip.

The Track 1 writer never emits `NOT_RES` and never drops an item (both lose points in the official
baseline): a missing prediction is an error listing the ids, unless `allow_missing` fills it with
`portraitcraft.predictions.FALLBACK` and reports how many. Items join on `portraitcraft.ids.item_key`.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from portraitcraft.atomic import IMAGE_FORMATS, atomic_open, check_output_folder, save_image_atomic
from portraitcraft.bounded import check_regular, decode_text, loads_json
from portraitcraft.data import NAME_MAX_BYTES, TRACK1_MEMBER, is_inside
from portraitcraft.errors import DataError, InputError
from portraitcraft.ids import item_key
from portraitcraft.predictions import FALLBACK, PartialPrediction, fill_predictions
from portraitcraft.schemas import (
    ANSWER_LETTERS,
    ATTRIBUTES,
    LEVEL_CODES,
    Track1Prediction,
    Track1TestItem,
    Track2Spec,
)

log = logging.getLogger(__name__)

TRACK1_KEYS = ("image_path", "criteria", "total_score", "question", "options", "answer")

@dataclass
class SubmissionReport:
    path: Path
    n_items: int
    n_fallback: int = 0
    fallback_ids: list[str] = field(default_factory=list)
    n_extra: int = 0
    filled_fields: dict[str, list[str]] = field(default_factory=dict)
    """image_path -> the fields filled (`criteria.<attr>`, `total_score`, `answer`, or `all`)."""


def track1_records(
    template: Sequence[Track1TestItem],
    predictions: Iterable[Track1Prediction],
    *,
    allow_missing: bool = False,
    partial: Mapping[str, PartialPrediction] | None = None,
) -> tuple[list[dict[str, Any]], SubmissionReport]:
    """The submission records in template order (see `write_track1_submission`)."""
    by_key: dict[str, Track1Prediction] = {}
    for pred in predictions:
        by_key.setdefault(item_key(pred.image_path), pred)
    items = [(item_key(t.image_path), t.image_path) for t in template]
    missing = [path for key, path in items if key not in by_key]
    if missing and not allow_missing:
        shown = ", ".join(missing[:20]) + (f" ... (+{len(missing) - 20} more)" if len(missing) > 20 else "")
        raise InputError(
            f"{len(missing)} of {len(template)} test items have no prediction: {shown}. "
            "Predict them, or pass --allow-missing to fill them with the documented fallback."
        )
    filled = fill_predictions(items, by_key, partial)
    records = []
    for item, (key, _) in zip(template, items, strict=True):
        pred = filled.by_key[key]
        records.append(
            {
                "image_path": item.image_path,
                "criteria": {a: {"level": pred.levels[a].code} for a in ATTRIBUTES},
                "total_score": round(min(100.0, max(0.0, pred.total_score))),
                "question": item.question,
                "options": dict(item.options),
                "answer": pred.answer,
            }
        )
    n_extra = len(set(by_key) - {key for key, _ in items})
    report = SubmissionReport(Path(), len(records), len(missing), missing, n_extra, filled.filled_fields)
    if missing:
        log.warning("filled %d item(s): %d field by field, %d whole with the fallback", len(missing),
                    len(missing) - len(filled.filled), len(filled.filled))
    return records, report


def write_track1_submission(
    template: Sequence[Track1TestItem],
    predictions: Iterable[Track1Prediction],
    out_zip: str | Path,
    *,
    allow_missing: bool = False,
    partial: Mapping[str, PartialPrediction] | None = None,
) -> SubmissionReport:
    """Write the official Track 1 zip: one file `track_1_test.json` at its root, template order.

    Args:
        template (list[Track1TestItem]): the test items, in the official order (questions/options copied).
        predictions (iterable of Track1Prediction): joined to the template by image basename.
        out_zip (str | Path): the zip to write (atomically).
        allow_missing (bool, optional, defaults to False): fill items without a usable prediction: a record
            with some unusable fields is repaired field by field (`partial`), an item without one gets FALLBACK.
        partial (mapping, optional): item key -> the usable fields of a record that failed validation
            (`Track1Predictions.partial`).

    Raises:
        InputError: items lack predictions and allow_missing is False (lists the ids).

    Example:
        >>> report = write_track1_submission(template, preds, "submission.zip")  # doctest: +SKIP
    """
    records, report = track1_records(template, predictions, allow_missing=allow_missing, partial=partial)
    _check_track1_records(records)
    payload = json.dumps(records, ensure_ascii=False, indent=1).encode("utf-8")
    out = Path(out_zip)
    with atomic_open(out) as fh, zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(TRACK1_MEMBER, payload)
    report.path = out
    return report


def _check_track1_records(records: Sequence[dict[str, Any]]) -> None:
    """Last line of defence: the exact shape the organisers' scorer expects."""
    for i, rec in enumerate(records):
        where = f"item {i} ({rec.get('image_path')})"
        if tuple(rec) != TRACK1_KEYS:
            raise DataError(f"{where}: keys {list(rec)} are not {list(TRACK1_KEYS)}")
        if list(rec["criteria"]) != list(ATTRIBUTES):
            raise DataError(f"{where}: criteria are not the 13 attributes in order")
        for name, crit in rec["criteria"].items():
            if crit.get("level") not in LEVEL_CODES:
                raise DataError(f"{where}: criteria.{name}.level {crit.get('level')!r} is not A/B/C")
        if type(rec["total_score"]) is not int:
            raise DataError(f"{where}: total_score must be an int")
        if rec["answer"] not in ANSWER_LETTERS:
            raise DataError(f"{where}: answer {rec['answer']!r} is not one of A-D")


def read_track1_submission(path: str | Path) -> list[dict[str, Any]]:
    """Read a Track 1 submission zip, checking its root holds exactly `track_1_test.json` (bounded read)."""
    from portraitcraft.data import read_zip_member

    p = Path(path)
    check_regular(p, what="zip file")

    def pick(names: list[str]) -> str:
        if names != [TRACK1_MEMBER]:
            raise DataError(f"{p}: the zip root must hold exactly {TRACK1_MEMBER}, found {names}")
        return TRACK1_MEMBER

    name, raw = read_zip_member(p, pick)
    data = loads_json(decode_text(raw, f"{p}!{name}"), f"{p}!{name}")
    if not isinstance(data, list):
        raise DataError(f"{p}: {TRACK1_MEMBER} is not a JSON array")
    return data


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


@dataclass
class ImageMatches:
    """Each item's image file (`found`, by item id), the items with several equally good files
    (`ambiguous`, id -> candidates) and how many files were looked at."""

    found: dict[str, Path] = field(default_factory=dict)
    ambiguous: dict[str, list[Path]] = field(default_factory=dict)
    n_files: int = 0
    refused: list[str] = field(default_factory=list)
    """Image files left out because they resolve outside the folder (symbolic links pointing out)."""


def find_submission_images(
    images_dir: str | Path, specs: Sequence[Track2Spec], *, exclude: Sequence[str | Path] = ()
) -> ImageMatches:
    """Find one image per item under `images_dir` (any depth), never inside an `exclude`d folder.

    An exact file name match (the item's `output_name`) wins over a same-stem file with another image
    extension (re-encoded on submit). Two or more files at the best rank are ambiguous: reported, not
    guessed. Symbolic links to folders are not followed; a file whose real path leaves the folder (a link
    to /etc/passwd) is refused and listed in `refused`; hidden files and folders are skipped.
    """
    root = Path(images_dir)
    real_root = Path(os.path.realpath(root))
    skip = {Path(os.path.realpath(e)) for e in exclude} - {real_root}
    by_name: dict[str, list[Path]] = {}
    by_stem: dict[str, list[Path]] = {}
    out = ImageMatches()
    for folder, dirs, files in os.walk(root, followlinks=False):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and Path(os.path.realpath(here / d)) not in skip)
        for name in sorted(files):
            path = here / name
            if name.startswith(".") or path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
                continue
            if not is_inside(Path(os.path.realpath(path)), real_root):
                out.refused.append(f"{path}: resolves outside {root} (a symbolic link); not used")
                continue
            out.n_files += 1
            by_name.setdefault(name, []).append(path)
            by_stem.setdefault(path.stem, []).append(path)
    for spec in specs:
        exact = by_name.get(spec.output_name, [])
        hits = exact or by_stem.get(Path(spec.output_name).stem, [])
        if len(hits) == 1:
            out.found[spec.id] = hits[0]
        elif hits:
            out.ambiguous[spec.id] = hits
    return out


def submission_name_problem(name: str) -> str | None:
    """Why an item's submission file name (its image_path basename, unicode allowed) cannot be written as
    is, else None: no name, a hidden name, an extension that names no writable image format, or more bytes
    than a file name may hold. The file is never renamed: the organisers match it by this name."""
    if name in ("", ".", "..") or "\x00" in name:
        return f"image_path basename {name!r} is not a file name"
    if name.startswith("."):
        return f"image_path basename {name!r} starts with '.' (a hidden file, and no name before the extension)"
    if Path(name).suffix.lower() not in IMAGE_FORMATS:
        return (f"image_path basename {name!r} does not end in an image extension "
                f"({', '.join(sorted(IMAGE_FORMATS))}): the submission format would be unknown")
    if len(name.encode("utf-8", "surrogatepass")) > NAME_MAX_BYTES:
        return f"image_path basename is longer than {NAME_MAX_BYTES} bytes: no file system can hold it"
    return None


@dataclass
class Track2Submission:
    folder: Path
    zip_path: Path
    n_images: int
    missing: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    """`image_path: problem` for items whose image could not be read (left out, like missing ones)."""


def write_track2_submission(
    specs: Sequence[Track2Spec],
    images: Mapping[str, str | Path],
    out_dir: str | Path,
    *,
    allow_missing: bool = False,
) -> Track2Submission:
    """Copy one image per item into `out_dir/submission/` named by its `image_path`, and zip it flat.

    Args:
        specs (list[Track2Spec]): the test items.
        images (mapping): item id (Track2Spec.id) -> the final image file of that item.
        out_dir (str | Path): where `submission/` and `submission.zip` are written.
        allow_missing (bool, optional, defaults to False): skip items with no (readable) image, reported,
            instead of raising.

    The image is re-encoded to the format its `image_path` names (.jpg -> JPEG quality 95, .png -> PNG).
    Raises:
        InputError: items have no image, or an unreadable one, and allow_missing is False (all listed).
    """
    from PIL import Image

    out = Path(out_dir)
    folder = check_output_folder(out / "submission")
    missing = [s.image_path for s in specs if s.id not in images or not Path(images[s.id]).is_file()]
    if missing and not allow_missing:
        raise InputError(f"{len(missing)} item(s) have no final image: {', '.join(missing[:20])}")
    unreadable: list[str] = []
    written: list[Path] = []
    for spec in specs:  # one image in memory at a time
        if spec.image_path in missing:
            continue
        problem = submission_name_problem(spec.output_name)
        if problem is not None:
            unreadable.append(f"{spec.image_path}: {problem}")
            continue
        try:
            with Image.open(images[spec.id]) as im:
                rgb = im.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            unreadable.append(f"{spec.image_path}: {images[spec.id]} is not a readable image ({exc})")
            continue
        target = folder / spec.output_name
        try:
            save_image_atomic(rgb, target, fmt=IMAGE_FORMATS[target.suffix.lower()])
        except OSError as exc:  # a name this file system cannot hold is this item's failure; a full disk is not
            if exc.errno not in (errno.ENAMETOOLONG, errno.EILSEQ, errno.EINVAL):
                raise
            unreadable.append(f"{spec.image_path}: cannot write {target.name!r} ({exc.strerror or exc})")
            continue
        written.append(target)
    if unreadable and not allow_missing:
        raise InputError(f"{len(unreadable)} item image(s) cannot be read (no zip written):\n" + "\n".join(unreadable))
    zip_path = out / "submission.zip"
    with atomic_open(zip_path) as fh, zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED) as zf:
        for path in written:
            zf.write(path, arcname=path.name)
    return Track2Submission(folder, zip_path, len(written), missing, unreadable)


__all__ = [
    "FALLBACK",
    "IMAGE_SUFFIXES",
    "TRACK1_MEMBER",
    "ImageMatches",
    "SubmissionReport",
    "Track2Submission",
    "find_submission_images",
    "read_track1_submission",
    "submission_name_problem",
    "track1_records",
    "write_track1_submission",
    "write_track2_submission",
]
