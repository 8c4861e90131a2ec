"""Training data: Track 2 SFT items, preference pairs (pickapic parquet or JSONL), aspect-ratio buckets.

Readers never raise on a bad row: each problem (missing image, undecodable bytes, no caption, a bad label)
is recorded with its row number and item id, the row is skipped and counted, and the rest goes on. Images
are decoded later (`prepare`), where an undecodable one is reported the same way.

SFT prompts are written by the planner (its prompt builder, from [Content]/[Composition]), so a LoRA sees the
same prompt text at training and at inference. Pair rows carry their prompt in `caption` (or `prompt`).
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from portraitcraft.bounded import check_regular, parse_text, read_bytes, read_text
from portraitcraft.config import PlannerConfig, PortraitcraftConfig
from portraitcraft.data import file_inside, unsafe_image_path
from portraitcraft.train import TrainError


class TrainInputError(TrainError):
    """A training input (pairs file or export folder, train file, images folder) cannot be used: bad input,
    exit 2."""

    exit_code = 2


@dataclass(frozen=True)
class RowProblem:
    """One skipped row: where it is and what is wrong with it."""

    row: int
    item: str
    problem: str

    def __str__(self) -> str:
        return f"row {self.row} ({self.item}): {self.problem}"


@dataclass
class TrainItem:
    """One training sample before encoding: SFT has one image, DPO two (chosen first).

    `p_chosen` is the preference probability of the chosen image (1 for a hard pair, a NaSPO probability
    otherwise); `pose` is the control image (encoded bytes) or keypoints to render, for pose-conditioned DPO.
    """

    id: str
    row: int
    prompt: str
    images: list[bytes]
    p_chosen: float = 1.0
    pose_image: bytes | None = None
    pose_keypoints: Any = None


@dataclass
class ItemSet:
    """Readable items plus the problems of the rows that were skipped."""

    items: list[TrainItem]
    problems: list[RowProblem] = field(default_factory=list)
    total: int = 0

    @property
    def skipped(self) -> int:
        """Rows skipped (a row with several problems counts once)."""
        return len({p.row for p in self.problems})


def read_sft_items(train_file: str | Path, images_dir: str | Path, cfg: PortraitcraftConfig) -> ItemSet:
    """Track 2 training items: each image with the prompt the planner writes for its description at inference
    (`Planner.from_config(cfg).plan(spec).prompt`: trigger word, spatial statements first, token budget).

    Args:
        train_file (str | Path): track_2_train.json (JSON array or JSONL of image_path/content/composition).
        images_dir (str | Path): the images folder (root, then images_00..images_10, as `data validate`).
        cfg (PortraitcraftConfig): the `[planner]` section and the generator's token budget.

    Example:
        >>> items = read_sft_items("track_2_train.json", "images/", load_config())  # doctest: +SKIP
    """
    from portraitcraft.agents.planner import Planner
    from portraitcraft.data import detect_kind, parse_items, read_records, resolve_image

    if not Path(images_dir).is_dir():
        raise TrainInputError(f"--images {images_dir}: not a folder")
    records = read_records(train_file)
    kind = detect_kind(records)
    if kind != "track2":
        raise TrainInputError(f"{train_file}: expected Track 2 items (image_path, content, composition), found {kind}")
    parsed = parse_items(records, kind)
    out = ItemSet(items=[], total=len(records))
    out.problems.extend(RowProblem(p.index, p.image_path or "?", f"{p.field}: {p.problem}") for p in parsed.problems)
    planner = Planner.from_config(cfg)
    for spec, row in zip(parsed.items, parsed.indices, strict=True):
        if not spec.content.strip():
            out.problems.append(RowProblem(row, spec.id, "no caption (empty content)"))
            continue
        path = resolve_image(images_dir, spec.image_path)
        if path is None:
            out.problems.append(RowProblem(row, spec.id, f"image {spec.image_path!r} not found under {images_dir}"))
            continue
        prompt = planner.plan(spec).prompt
        out.items.append(TrainItem(id=spec.id, row=row, prompt=prompt, images=[path.read_bytes()]))
    return out


PAIRS_IN_FOLDER = ("pairs.parquet", "pairs.jsonl")
"""What `pairs export --format pickapic|jsonl` writes: a trainer given the export folder reads the first found."""


def pairs_file(path: str | Path) -> Path:
    """The pairs file itself, or the one inside an export folder (`pairs.parquet`, else `pairs.jsonl`).

    Raises:
        TrainInputError: nothing there, or a folder with neither file.
    """
    p = Path(path)
    if p.is_dir():
        for name in PAIRS_IN_FOLDER:
            if (p / name).is_file():
                return p / name
        raise TrainInputError(f"pairs folder {p} holds neither {' nor '.join(PAIRS_IN_FOLDER)} (export it with "
                             "`pairs export --format pickapic` or `--format jsonl`)")
    check_regular(p, what="pairs file", error=TrainInputError)
    if p.suffix not in (".parquet", ".jsonl", ".json"):
        raise TrainInputError(f"pairs file {p}: expected .parquet (pickapic) or .jsonl, got {p.suffix or 'no suffix'}")
    return p


def _parquet_rows(path: Path) -> list[Any]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise TrainError("reading parquet pairs needs pyarrow (pip install 'portraitcraft[train]')") from None
    data = read_bytes(path, what="pairs file", error=TrainInputError)
    import pyarrow as pa

    try:
        return pq.read_table(pa.BufferReader(data)).to_pylist()
    except Exception as exc:  # pyarrow raises many types for a file that is not parquet
        raise TrainInputError(f"pairs file {path} is not a readable parquet file ({type(exc).__name__}: "
                             f"{exc})") from None


def _json_rows(path: Path) -> list[Any]:
    """Rows of a JSON array or JSON lines; a malformed line becomes a `_BadRow` (skipped and counted), never
    the end of the read."""
    text = read_text(path, what="pairs file", error=TrainInputError)
    if path.suffix == ".json" and text.lstrip().startswith("["):
        rows = parse_text(json.loads, text, str(path), error=TrainInputError)
        if not isinstance(rows, list):  # pragma: no cover - starts with "[" so json gives a list
            raise TrainInputError(f"pairs file {path}: expected a JSON array")
        return rows
    rows: list[Any] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(parse_text(json.loads, line, f"line {number}", error=ValueError))
        except ValueError as exc:
            rows.append(_BadRow(str(exc)))
    return rows


@dataclass(frozen=True)
class _BadRow:
    problem: str


def _load_rows(path: Path) -> list[Any]:
    """The rows of a pairs file (bounded read: regular files only, the input size cap)."""
    rows = _parquet_rows(path) if path.suffix == ".parquet" else _json_rows(path)
    if not rows:
        raise TrainInputError(f"pairs file {path} holds no pairs (it is empty)")
    return rows


def _image_bytes(value: Any, base: Path, what: str) -> bytes:
    """Encoded image bytes from a column value: bytes, {"bytes": ...}, or a path relative to the pairs file,
    contained in its folder (absolute paths, `..` and links pointing out are refused, as `pairs export`
    refuses them)."""
    if isinstance(value, dict):
        value = value.get("bytes") or value.get("path")
    if isinstance(value, bytes | bytearray | memoryview):
        if not value:
            raise ValueError(f"{what}: empty image bytes")
        return bytes(value)
    if isinstance(value, str) and value:
        unsafe = unsafe_image_path(value)
        if unsafe is not None:
            raise ValueError(f"{what}: image path {value!r} {unsafe.split(';')[0]}; paths are relative to the "
                             "pairs file's folder")
        path = file_inside(base, value)
        if path is None:
            if (base / value).exists():
                raise ValueError(f"{what}: image file {value!r} resolves outside {base} (a symbolic link): refused")
            raise ValueError(f"{what}: image file {value!r} not found")
        try:
            return read_bytes(path, what="image", error=ValueError)
        except ValueError as exc:
            raise ValueError(f"{what}: {exc}") from None
    raise ValueError(f"{what}: missing image")


def _label(row: dict[str, Any]) -> float:
    """P(first image preferred) from label_0 / label_1 (normalised), else `label` (the JSONL export's
    probability that `chosen` is preferred), else 1.0."""
    l0, l1 = row.get("label_0"), row.get("label_1")
    if l0 is None and l1 is None:
        l0 = row.get("label")
        if l0 is None:
            return 1.0
    l0 = 1.0 - float(l1) if l0 is None else float(l0)
    l1 = 1.0 - l0 if l1 is None else float(l1)
    if not (math.isfinite(l0) and math.isfinite(l1)) or l0 < 0 or l1 < 0 or l0 + l1 <= 0:
        raise ValueError(f"labels label_0={l0!r}, label_1={l1!r} are not preference probabilities")
    return l0 / (l0 + l1)


def read_pairs(path: str | Path) -> ItemSet:
    """Preference pairs from an export folder (its pairs.parquet or pairs.jsonl), the pickapic parquet
    (`caption`, `jpg_0`, `jpg_1`, `label_0`, `label_1`, `pose_image`, `pose_keypoints`, `item_id`) or a JSONL
    of the same keys, or the generate run's
    `pairs.jsonl` (`prompt`, `chosen`, `rejected` image paths relative to the file). The chosen image is the
    one with the larger label; `p_chosen` its probability.

    Example:
        >>> pairs = read_pairs("runs/t2/pairs.parquet")  # doctest: +SKIP
        >>> pairs.total, pairs.skipped  # doctest: +SKIP
    """
    path = pairs_file(path)
    table = _load_rows(path)
    out = ItemSet(items=[], total=len(table))
    for i, row in enumerate(table):
        if isinstance(row, _BadRow) or not isinstance(row, dict):
            out.problems.append(RowProblem(i, f"row{i}", row.problem if isinstance(row, _BadRow)
                                           else f"expected a JSON object, got {type(row).__name__}"))
            continue
        item_id = str(row.get("item_id") or row.get("id") or f"row{i}")
        try:
            prompt = row.get("caption") or row.get("prompt")
            if not isinstance(prompt, str) or not prompt.strip():
                raise ValueError("no caption")
            first_key, second_key = ("jpg_0", "jpg_1") if "jpg_0" in row else ("chosen", "rejected")
            first = _image_bytes(row.get(first_key), path.parent, first_key)
            second = _image_bytes(row.get(second_key), path.parent, second_key)
            p_first = _label(row)
            pose_image = row.get("pose_image")
            pose_image = _image_bytes(pose_image, path.parent, "pose_image") if pose_image else None
            keypoints = row.get("pose_keypoints")
            if isinstance(keypoints, str):
                keypoints = json.loads(keypoints) if keypoints.strip() else None
        except (ValueError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
            out.problems.append(RowProblem(i, item_id, str(exc)))
            continue
        images = [first, second] if p_first >= 0.5 else [second, first]
        out.items.append(TrainItem(id=item_id, row=i, prompt=prompt.strip(), images=images,
                                   p_chosen=max(p_first, 1.0 - p_first), pose_image=pose_image,
                                   pose_keypoints=keypoints))
    return out


# --- aspect-ratio buckets -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Buckets:
    """Training canvases: the planner's canvas classes at the training long side, rounded to `multiple`.

    Example:
        >>> b = Buckets.from_planner(PlannerConfig(aspect_ratios=[2 / 3, 3 / 2]), long_side=64, multiple=16)
        >>> b.sizes
        ((48, 64), (64, 64), (64, 48))
        >>> b.nearest(300, 480)
        (48, 64)
    """

    sizes: tuple[tuple[int, int], ...]

    @classmethod
    def from_planner(cls, planner: PlannerConfig, *, long_side: int, multiple: int) -> Buckets:
        from portraitcraft.agents.planner.canvas_policy import canvas_classes, canvas_size

        sizes = [canvas_size(a, long_side, multiple) for a in canvas_classes(planner.aspect_ratios)]
        return cls(tuple(dict.fromkeys(sizes)))

    def nearest(self, width: int, height: int) -> tuple[int, int]:
        """The bucket whose aspect ratio is nearest (in log ratio) to width / height."""
        target = math.log(width / height)
        return min(self.sizes, key=lambda s: abs(math.log(s[0] / s[1]) - target))


def fit_to(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Resize `image` to cover `size` (keeping its aspect ratio), then centre-crop to exactly `size`."""
    w, h = size
    scale = max(w / image.width, h / image.height)
    rw, rh = max(w, round(image.width * scale)), max(h, round(image.height * scale))
    resized = image.resize((rw, rh), Image.Resampling.BICUBIC)
    left, top = (rw - w) // 2, (rh - h) // 2
    return resized.crop((left, top, left + w, top + h))


def decode_image(data: bytes, what: str) -> Image.Image:
    """Decode encoded image bytes to RGB; ValueError naming `what` when they are not a readable image."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return im.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(f"{what}: undecodable image bytes ({type(exc).__name__}: {exc})") from None


def keypoint_array(keypoints: Any) -> np.ndarray:
    """COCO-17 keypoints as an array: the pairs export's {name: [x, y, score]} dict (tools.pairs_export), or
    rows (17, 2|3) / (people, 17, 2|3). ValueError when they are neither."""
    from portraitcraft.tools.pose_render import COCO17_NAMES

    if isinstance(keypoints, dict):
        keypoints = [keypoints.get(name) or [0.0, 0.0, 0.0] for name in COCO17_NAMES]
    try:
        return np.asarray(keypoints, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("pose_keypoints: expected COCO-17 keypoints (a {name: [x, y, score]} map or rows)") from None


def pose_control(item: TrainItem, chosen: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The pair's control image at `size`: `pose_image` fitted like the images, else its keypoints (pixels
    of the chosen image, or normalised 0..1) rendered on the chosen image's canvas then fitted, else a black
    canvas (no pose: what a pose ControlNet sees for an empty skeleton)."""
    from portraitcraft.tools.pose_render import render_pose

    if item.pose_image is not None:
        return fit_to(decode_image(item.pose_image, "pose_image"), size)
    if item.pose_keypoints:
        points = keypoint_array(item.pose_keypoints)
        if points.size and np.nanmax(points[..., :2]) <= 1.5:
            points = points.copy()
            points[..., 0] *= chosen.width
            points[..., 1] *= chosen.height
        try:
            return fit_to(render_pose(points, chosen.width, chosen.height), size)
        except Exception as exc:  # InputError from a malformed skeleton
            raise ValueError(f"pose_keypoints: {exc}") from None
    return Image.new("RGB", size, (0, 0, 0))


def to_pixels(images: Sequence[Image.Image]) -> np.ndarray:
    """(N, 3, H, W) float32 in [-1, 1], the VAE's input range."""
    arr = np.stack([np.asarray(im.convert("RGB"), dtype=np.float32) for im in images])
    return (arr.transpose(0, 3, 1, 2) / 127.5 - 1.0).astype(np.float32)
