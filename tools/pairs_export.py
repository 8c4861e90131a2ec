"""Preference pairs out: read the `pairs.jsonl` of generate / mine / group runs and write them in the layouts
trainers read (Pick-a-Pic parquet, JSONL + images, DiffSynth CSV, kohya w/ l/ folders, Flow-Factory prompts).

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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from portraitcraft.atomic import atomic_write_bytes, atomic_write_text
from portraitcraft.data import is_inside
from portraitcraft.errors import InputError
from portraitcraft.tools.images import load_image

PairFormat = Literal["pickapic", "jsonl", "diffsynth", "kohya", "flowfactory"]
FORMATS: tuple[str, ...] = ("pickapic", "jsonl", "diffsynth", "kohya", "flowfactory")
PAIRS_FILE = "pairs.jsonl"
PARQUET_NAME = "pairs.parquet"


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
    pose_missing: int = 0
    files: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "read": self.read, "written": self.written, "skipped": len(self.skipped), "problems": self.skipped,
            "dropped_near_identical": self.near_identical, "dropped_content_margin": self.content_margin,
            "pose_missing": self.pose_missing, "files": self.files,
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
                 content_margin: float | None) -> list[Pair]:
    """Drop near-identical pairs, and pairs whose chosen content score fell below the rejected one's by more
    than `content_margin` (only where both were judged)."""
    kept: list[Pair] = []
    for pair in pairs:
        row = pair.row
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


def write_kohya(pairs: list[Pair], out: Path) -> list[Path]:
    """sd-scripts' preference layout: `w/NAME` (chosen) and `l/NAME` (rejected), same names, `.caption` beside."""
    written = []
    for index, pair in enumerate(pairs):
        name = f"{index:06d}"
        for src, folder in ((pair.chosen, "w"), (pair.rejected, "l")):
            atomic_write_bytes(out / folder / f"{name}{src.suffix.lower() or '.png'}", src.read_bytes())
            written.append(atomic_write_text(out / folder / f"{name}.caption", pair.row.prompt))
    return written


def write_flowfactory(pairs: list[Pair], out: Path) -> list[Path]:
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
    "flowfactory": write_flowfactory,
}


def export_pairs(folders: Iterable[str | Path], out: str | Path, *, fmt: str = "pickapic",
                 min_difference: float = 0.01, content_margin: float | None = 5.0,
                 pose_fn: PoseFn | None = vision_pose) -> ExportReport:
    """Read, filter, measure pose and write the pairs of `folders` to `out` in `fmt`.

    Args:
        folders: run folders, each with a `pairs.jsonl`.
        out (`str | Path`): the export folder (created).
        fmt (`str`, defaults to "pickapic"): one of `FORMATS`.
        min_difference (`float`, defaults to 0.01): pairs whose thumbnails differ less (mean abs, 0-1) are dropped.
        content_margin (`float | None`, defaults to 5.0): drop a pair whose judged content score of the chosen
            image is below the rejected one's by more than this (points of 0-100); None keeps every pair.
        pose_fn (optional): measures the chosen image's pose; None skips pose (the columns stay null).
    """
    if fmt not in WRITERS:
        raise PairsError(f"unknown pairs format {fmt!r}; choose one of {', '.join(FORMATS)}")
    report = ExportReport()
    pairs = read_pairs(list(folders), report)
    pairs = filter_pairs(pairs, report, min_difference=min_difference, content_margin=content_margin)
    attach_pose(pairs, report, pose_fn)
    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    report.files = [str(p) for p in WRITERS[fmt](pairs, target)]
    report.written = len(pairs)
    return report
