"""Preference pairs out: read the `pairs.jsonl` of generate / mine / group runs and write them in the layouts
trainers read (Pick-a-Pic parquet, JSONL + images, DiffSynth CSV, kohya w/ l/ folders, Flow-Factory V2
preference records, Flow-Factory prompts). docs/guides/consumers.md names the trainer that reads each.

Every input folder holds `pairs.jsonl`, one row per pair (paths relative to that folder):
`{"id", "prompt", "chosen", "rejected", "label"?, "source"?, "rules_fired"?, "chosen_round"?,
"rejected_round"?, "chosen_content"?, "rejected_content"?, "provenance"?}`. `label` is the probability that the
chosen image is preferred (1.0 for a hard pair; a NaSPO probability for group samples).

Both sides of a pair carry the CHOSEN image's pose (COCO-17 keypoints and the OpenPose rendering the pose
ControlNet reads), measured with the vision tools, so DPO conditions policy and reference on the same pose.
"""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from portraitcraft.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from portraitcraft.data import is_inside
from portraitcraft.errors import InputError
from portraitcraft.tools.images import load_image

PairFormat = Literal["pickapic", "jsonl", "diffsynth", "kohya", "flowfactory", "flowfactory-prompts"]
FORMATS: tuple[str, ...] = ("pickapic", "jsonl", "diffsynth", "kohya", "flowfactory", "flowfactory-prompts")
PAIRS_FILE = "pairs.jsonl"
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp"})
PARQUET_NAME = "pairs.parquet"
MARKER = ".portraitcraft-export.json"
"""Written into every export folder (hidden: dataset loaders skip it); `replace=True` only replaces a folder
holding it, so a mistyped `--out` never deletes a folder that is not an earlier export."""


class PairsError(InputError, ValueError):
    """An input folder or an export that cannot be read or written (named in the message)."""


class PairRow(BaseModel):
    """One pair as a run folder records it (paths relative to the folder)."""

    model_config = ConfigDict(extra="ignore")

    id: str
    prompt: str = Field(min_length=1)
    chosen: str
    rejected: str
    label: float = Field(default=1.0, ge=0.0, le=1.0)
    source: str = "generate"
    rules_fired: list[str] = Field(default_factory=list)
    chosen_round: int | None = None
    rejected_round: int | None = None
    chosen_content: float | None = None
    rejected_content: float | None = None
    negative_prompt: str = ""
    provenance: dict[str, Any] = Field(default_factory=dict)


@dataclass
class Pair:
    """A pair with its images resolved to files and, once measured, the chosen image's pose."""

    row: PairRow
    chosen: Path
    rejected: Path
    origin: Path
    keypoints: dict[str, list[float]] | None = None
    pose_png: bytes | None = None
    features: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExportReport:
    """What an export read, dropped and wrote."""

    read: int = 0
    written: int = 0
    skipped: list[str] = field(default_factory=list)
    near_identical: int = 0
    content_margin: int = 0
    soft_label: int = 0
    pose_missing: int = 0
    files: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    replaced: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "read": self.read, "written": self.written, "skipped": len(self.skipped), "problems": self.skipped,
            "dropped_near_identical": self.near_identical, "dropped_content_margin": self.content_margin,
            "dropped_soft_label": self.soft_label, "pose_missing": self.pose_missing, "files": self.files,
            "images": self.images, "replaced": self.replaced,
        }


def read_pairs(folders: Sequence[str | Path], report: ExportReport) -> list[Pair]:
    """Every readable pair of every folder; a bad row or a missing image is a named problem, the rest go on."""
    pairs: list[Pair] = []
    for folder in folders:
        root = Path(folder)
        source = root / PAIRS_FILE
        if not source.is_file():
            raise PairsError(f"{root}: no {PAIRS_FILE} (not a generate, mine or group run folder)")
        for number, line in enumerate(source.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            report.read += 1
            where = f"{source}:{number}"
            try:
                row = PairRow.model_validate_json(line)
            except ValidationError as exc:
                first = exc.errors()[0]
                report.skipped.append(f"{where}: {'.'.join(map(str, first['loc'])) or 'row'}: {first['msg']}")
                continue
            chosen, rejected = _file_in_run(root, row.chosen), _file_in_run(root, row.rejected)
            missing = [name for name, p in (("chosen", chosen), ("rejected", rejected)) if p is None]
            if missing:
                report.skipped.append(f"{where} ({row.id}): {', '.join(missing)} image missing or outside {root}")
                continue
            pairs.append(Pair(row=row, chosen=chosen, rejected=rejected, origin=root))  # type: ignore[arg-type]
    return pairs


def _file_in_run(root: Path, relative: str) -> Path | None:
    """`root / relative` when it is a file inside `root` (no escape through `..`, absolute paths or links)."""
    path = (root / relative).resolve()
    return path if path.is_file() and is_inside(path, root.resolve()) else None


def thumbnail_difference(a: Path, b: Path, size: int = 64) -> float:
    """Mean absolute difference (0-1) of two images resized to `size` x `size`: ~0 for the same picture."""
    arrays = [np.asarray(load_image(p).resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)
              for p in (a, b)]
    return float(np.abs(arrays[0] - arrays[1]).mean() / 255.0)


def filter_pairs(pairs: list[Pair], report: ExportReport, *, min_difference: float,
                 content_margin: float | None, hard_labels: bool = False) -> list[Pair]:
    """Drop near-identical pairs, pairs whose chosen content score fell below the rejected one's by more than
    `content_margin` (only where both were judged) and, with `hard_labels`, pairs whose label is not 0 or 1
    (what the original DiffusionDPO code does; diffusers' script would read any label_0 != 0 as a hard win)."""
    kept: list[Pair] = []
    for pair in pairs:
        row = pair.row
        if hard_labels and row.label not in (0.0, 1.0):
            report.soft_label += 1
            continue
        if (content_margin is not None and row.chosen_content is not None and row.rejected_content is not None
                and row.rejected_content - row.chosen_content > content_margin):
            report.content_margin += 1
            continue
        if thumbnail_difference(pair.chosen, pair.rejected) < min_difference:
            report.near_identical += 1
            continue
        kept.append(pair)
    return kept


PoseFn = Callable[[Image.Image], tuple[dict[str, list[float]] | None, bytes | None, dict[str, Any]]]


def vision_pose(image: Image.Image) -> tuple[dict[str, list[float]] | None, bytes | None, dict[str, Any]]:
    """The main subject's COCO-17 keypoints (pixels of this image), its OpenPose rendering as PNG bytes, and the
    geometric features, measured with the real vision models (portraitcraft.tools.vision)."""
    from portraitcraft.tools.pose_render import COCO17_NAMES, render_pose
    from portraitcraft.tools.vision import analyze

    analysis = analyze(image)
    features = analysis.subject.model_dump(mode="json") if analysis.subject is not None else {}
    if not analysis.persons:
        return None, None, features
    person = max(analysis.persons, key=lambda p: (p.box[2] - p.box[0]) * (p.box[3] - p.box[1]))
    w, h = image.size
    points = {name: [x * w, y * h, s] for name, (x, y, s) in person.keypoints.items()}
    array = np.array([points.get(name, [0.0, 0.0, 0.0]) for name in COCO17_NAMES], dtype=np.float32)
    buffer = io.BytesIO()
    render_pose(array, w, h).save(buffer, format="PNG")
    return points, buffer.getvalue(), features


def attach_pose(pairs: list[Pair], report: ExportReport, pose_fn: PoseFn | None) -> None:
    """Measure the chosen image of every pair (both sides get this pose); features of both go to provenance."""
    if pose_fn is None:
        return
    for pair in pairs:
        pair.keypoints, pair.pose_png, chosen_features = pose_fn(load_image(pair.chosen))
        _, _, rejected_features = pose_fn(load_image(pair.rejected))
        pair.features = {"chosen": chosen_features, "rejected": rejected_features}
        if pair.keypoints is None:
            report.pose_missing += 1


def _provenance(pair: Pair) -> dict[str, Any]:
    row = pair.row
    return {
        **row.provenance, "origin": str(pair.origin), "chosen_round": row.chosen_round,
        "rejected_round": row.rejected_round, "chosen_content": row.chosen_content,
        "rejected_content": row.rejected_content, "features": pair.features,
    }


def _names(pair: Pair, index: int) -> tuple[str, str]:
    """File names of a pair's images in a shared folder: `000007_w.png` (chosen), `000007_l.png` (rejected)."""
    stem = f"{index:06d}"
    return f"{stem}_w{pair.chosen.suffix.lower() or '.png'}", f"{stem}_l{pair.rejected.suffix.lower() or '.png'}"


def write_pickapic(pairs: list[Pair], out: Path) -> list[Path]:
    """Pick-a-Pic parquet: caption, jpg_0 (chosen bytes), jpg_1 (rejected), label_0/label_1, pose, provenance."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns: dict[str, list[Any]] = {name: [] for name in (
        "caption", "jpg_0", "jpg_1", "label_0", "label_1", "pose_keypoints", "pose_image", "source", "item_id",
        "rules_fired", "provenance")}
    for pair in pairs:
        columns["caption"].append(pair.row.prompt)
        columns["jpg_0"].append(pair.chosen.read_bytes())
        columns["jpg_1"].append(pair.rejected.read_bytes())
        columns["label_0"].append(float(pair.row.label))
        columns["label_1"].append(1.0 - float(pair.row.label))
        columns["pose_keypoints"].append(json.dumps(pair.keypoints) if pair.keypoints is not None else None)
        columns["pose_image"].append(pair.pose_png)
        columns["source"].append(pair.row.source)
        columns["item_id"].append(pair.row.id)
        columns["rules_fired"].append(json.dumps(pair.row.rules_fired))
        columns["provenance"].append(json.dumps(_provenance(pair), default=str))
    schema = pa.schema([
        ("caption", pa.string()), ("jpg_0", pa.binary()), ("jpg_1", pa.binary()), ("label_0", pa.float64()),
        ("label_1", pa.float64()), ("pose_keypoints", pa.string()), ("pose_image", pa.binary()),
        ("source", pa.string()), ("item_id", pa.string()), ("rules_fired", pa.string()), ("provenance", pa.string()),
    ])
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns, schema=schema), buffer)
    return [atomic_write_bytes(out / PARQUET_NAME, buffer.getvalue())]


def _copy_images(pairs: list[Pair], out: Path) -> list[tuple[str, str]]:
    """Copy every pair's images into `out/images/` (and poses into `out/poses/`); relative paths back."""
    names: list[tuple[str, str]] = []
    for index, pair in enumerate(pairs):
        chosen_name, rejected_name = _names(pair, index)
        for src, name in ((pair.chosen, chosen_name), (pair.rejected, rejected_name)):
            atomic_write_bytes(out / "images" / name, src.read_bytes())
        if pair.pose_png is not None:
            atomic_write_bytes(out / "poses" / f"{index:06d}.png", pair.pose_png)
        names.append((f"images/{chosen_name}", f"images/{rejected_name}"))
    return names


def write_jsonl(pairs: list[Pair], out: Path) -> list[Path]:
    """`pairs.jsonl` next to `images/`: relative paths, the label, pose and provenance."""
    names = _copy_images(pairs, out)
    lines = []
    for index, (pair, (chosen, rejected)) in enumerate(zip(pairs, names, strict=True)):
        lines.append(json.dumps({
            "id": pair.row.id, "prompt": pair.row.prompt, "chosen": chosen, "rejected": rejected,
            "label": pair.row.label, "source": pair.row.source, "rules_fired": pair.row.rules_fired,
            "pose_keypoints": pair.keypoints, "pose_image": f"poses/{index:06d}.png" if pair.pose_png else None,
            "provenance": _provenance(pair),
        }, ensure_ascii=False, default=str))
    return [atomic_write_text(out / PAIRS_FILE, "\n".join(lines) + ("\n" if lines else ""))]


def write_diffsynth(pairs: list[Pair], out: Path) -> list[Path]:
    """DiffSynth-Studio's preference CSV: `prompt,image,lose_image` with paths relative to the CSV."""
    names = _copy_images(pairs, out)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["prompt", "image", "lose_image"])
    for pair, (chosen, rejected) in zip(pairs, names, strict=True):
        writer.writerow([pair.row.prompt, chosen, rejected])
    return [atomic_write_text(out / "metadata.csv", buffer.getvalue())]


def one_line(text: str) -> str:
    """The whole text on one line (every run of whitespace, newlines included, becomes one space).

    Example:
        >>> one_line("Generate an image.\\n\\n[Content]\\nA man.\\n[Composition]\\nLeft third.")
        'Generate an image. [Content] A man. [Composition] Left third.'
    """
    return " ".join(text.split())


def write_kohya(pairs: list[Pair], out: Path) -> list[Path]:
    """sd-scripts' preference layout: `w/NAME` (chosen) and `l/NAME` (rejected), same names, `.caption` beside.

    The caption is the WHOLE prompt on one line: sd-scripts' `read_caption` keeps only a caption file's first
    line, so a multi-line prompt would train on its first sentence alone.
    """
    written = []
    for index, pair in enumerate(pairs):
        name = f"{index:06d}"
        for src, folder in ((pair.chosen, "w"), (pair.rejected, "l")):
            written.append(atomic_write_bytes(out / folder / f"{name}{src.suffix.lower() or '.png'}", src.read_bytes()))
            written.append(atomic_write_text(out / folder / f"{name}.caption", one_line(pair.row.prompt) + "\n"))
    return written


def _image_ref(path: str) -> dict[str, str]:
    return {"type": "image", "path": path}


def write_flowfactory(pairs: list[Pair], out: Path) -> list[Path]:
    """Flow-Factory's offline-DPO manifest: `train.jsonl` of strict V2 preference records next to `images/`.

    Each row: `{"schema_version": 2, "input": {"prompt", "negative_prompt"?, "media": []}, "supervision":
    {"type": "preference", "chosen": {"media": [{"type": "image", "path"}]}, "rejected": {...}}, "metadata":
    {...}}`, paths relative to the folder (Flow-Factory resolves them against `dataset_dir`). A pair whose label
    is below 0.5 (the rejected image preferred) is written with its sides swapped.
    """
    names = _copy_images(pairs, out)
    lines = []
    for index, (pair, (chosen, rejected)) in enumerate(zip(pairs, names, strict=True)):
        row = pair.row
        if row.label < 0.5:
            chosen, rejected = rejected, chosen
        model_input: dict[str, Any] = {"prompt": row.prompt, "media": []}
        if row.negative_prompt:
            model_input["negative_prompt"] = row.negative_prompt
        metadata = {
            "id": row.id, "label": max(row.label, 1.0 - row.label), "source": row.source,
            "rules_fired": row.rules_fired, "pose_keypoints": pair.keypoints,
            "pose_image": f"poses/{index:06d}.png" if pair.pose_png else None,
            "provenance": json.loads(json.dumps(_provenance(pair), default=str)),
        }
        lines.append(json.dumps({
            "schema_version": 2, "input": model_input,
            "supervision": {"type": "preference", "chosen": {"media": [_image_ref(chosen)]},
                            "rejected": {"media": [_image_ref(rejected)]}},
            "metadata": metadata,
        }, ensure_ascii=False, allow_nan=False))
    return [atomic_write_text(out / "train.jsonl", "".join(line + "\n" for line in lines))]


def write_flowfactory_prompts(pairs: list[Pair], out: Path) -> list[Path]:
    """Flow-Factory's online-RL prompt file `train.jsonl`: `prompt`, `negative_prompt` (one row per item)."""
    seen: set[str] = set()
    lines = []
    for pair in pairs:
        if pair.row.id in seen:
            continue
        seen.add(pair.row.id)
        lines.append(json.dumps({"prompt": pair.row.prompt, "negative_prompt": pair.row.negative_prompt},
                                ensure_ascii=False))
    return [atomic_write_text(out / "train.jsonl", "\n".join(lines) + ("\n" if lines else ""))]


WRITERS: dict[str, Callable[[list[Pair], Path], list[Path]]] = {
    "pickapic": write_pickapic, "jsonl": write_jsonl, "diffsynth": write_diffsynth, "kohya": write_kohya,
    "flowfactory": write_flowfactory, "flowfactory-prompts": write_flowfactory_prompts,
}


def check_out(target: Path, *, replace: bool) -> bool:
    """Refuse an `--out` that would mix with other files; True when it holds an earlier export to replace.

    A missing or empty folder is fine; a non-empty one is refused unless `replace` is set AND it holds the
    marker of an earlier export (then the new export replaces it whole, never file by file).
    """
    if target.is_symlink():
        raise PairsError(f"--out {target}: is a symbolic link; give the folder itself")
    if not target.exists():
        return False
    if not target.is_dir():
        raise PairsError(f"--out {target}: exists and is not a folder")
    if not any(target.iterdir()):
        return False
    if not replace:
        raise PairsError(f"--out {target}: the folder is not empty (an export never mixes with older files); "
                         "choose a new or empty folder, or pass --replace to replace an earlier export whole")
    if not (target / MARKER).is_file():
        raise PairsError(f"--out {target}: not empty and not an earlier pairs export (no {MARKER}); "
                         "--replace only replaces a folder that `pairs export` wrote")
    return True


def _swap_in(staging: Path, target: Path) -> None:
    """Put the finished `staging` folder at `target` (replacing an earlier export whole)."""
    if target.exists() and any(target.iterdir()):
        old = target.with_name(f".{target.name}.old-{os.getpid()}-{secrets.token_hex(3)}")
        os.rename(target, old)
        try:
            os.rename(staging, target)
        except BaseException:
            os.rename(old, target)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, target)  # a missing or empty target folder


def export_pairs(folders: Iterable[str | Path], out: str | Path, *, fmt: str = "pickapic",
                 min_difference: float = 0.01, content_margin: float | None = 5.0, hard_labels: bool = False,
                 replace: bool = False, pose_fn: PoseFn | None = vision_pose) -> ExportReport:
    """Read, filter, measure pose and write the pairs of `folders` to `out` in `fmt`.

    The export is written into a hidden sibling folder and moved into place when complete: `out` holds
    exactly this export (never files of an earlier one) or is left as it was. No pair to write: `out` is not
    touched and the report says `written: 0`.

    Args:
        folders: run folders, each with a `pairs.jsonl`.
        out (`str | Path`): the export folder: new or empty (or an earlier export, with `replace`).
        fmt (`str`, defaults to "pickapic"): one of `FORMATS`.
        min_difference (`float`, defaults to 0.01): pairs whose thumbnails differ less (mean abs, 0-1) are dropped.
        content_margin (`float | None`, defaults to 5.0): drop a pair whose judged content score of the chosen
            image is below the rejected one's by more than this (points of 0-100); None keeps every pair.
        hard_labels (`bool`, defaults to False): drop pairs whose label is not exactly 0 or 1 (group soft labels).
        replace (`bool`, defaults to False): replace an earlier export in `out` whole.
        pose_fn (optional): measures the chosen image's pose; None skips pose (the columns stay null).
    """
    if fmt not in WRITERS:
        raise PairsError(f"unknown pairs format {fmt!r}; choose one of {', '.join(FORMATS)}")
    target, runs = Path(out), [Path(f) for f in folders]
    report = ExportReport(replaced=check_out(target, replace=replace))
    pairs = read_pairs(runs, report)
    pairs = filter_pairs(pairs, report, min_difference=min_difference, content_margin=content_margin,
                         hard_labels=hard_labels)
    attach_pose(pairs, report, pose_fn)
    if not pairs:
        report.replaced = False
        return report
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name[:40]}.export-", dir=target.parent))
    try:
        written = WRITERS[fmt](pairs, staging)
        atomic_write_json(staging / MARKER, {"format": fmt, "written": len(pairs), "runs": [str(f) for f in runs]})
        images = sorted(p.relative_to(staging) for p in staging.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        _swap_in(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    report.files = [str(target / p.relative_to(staging)) for p in written if p.suffix.lower() not in IMAGE_SUFFIXES]
    report.images = [str(target / p) for p in images]
    report.written = len(pairs)
    return report
