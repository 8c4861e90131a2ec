"""Score CSVs keyed by image: human ratings (`image_path,score`, several raters per image) and judge outputs.

Rows are joined on the image basename; several rows for one image (several raters) are averaged per
column. Empty cells are skipped (a failed judge row has no scores); non-numeric or out-of-range cells are
problems naming the row, never a crash.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from portraitcraft import bounded
from portraitcraft.errors import DataError
from portraitcraft.ids import item_key

SCORE_COLUMNS: tuple[str, ...] = ("score", "content", "composition", "auto", "human", "final")


@dataclass
class ScoreTable:
    """Per-image mean of each score column, with the number of values behind each mean."""

    path: str
    columns: list[str]
    means: dict[str, dict[str, float]] = field(default_factory=dict)
    """column -> image basename -> mean value."""
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    n_rows: int = 0

    def column(self, name: str) -> dict[str, float]:
        return self.means.get(name, {})


def read_score_csv(
    path: str | Path, columns: Sequence[str] = SCORE_COLUMNS, *, score_range: tuple[float, float] = (0, 100)
) -> ScoreTable:
    """Read the `columns` present in a CSV that has an `image_path` column.

    Args:
        path (str | Path): the CSV file (UTF-8, header row).
        columns (sequence of str, optional): the score columns to read when present.
        score_range (tuple, optional, defaults to (0, 100)): values outside it are problems.

    Raises:
        DataError: the file is missing, has no header, no `image_path` column or none of `columns`.

    Example:
        >>> table = read_score_csv("human.csv", ["score"])  # doctest: +SKIP
        >>> table.column("score")["img_001.jpg"]  # doctest: +SKIP
        77.5
    """
    p = Path(path)
    text = bounded.read_text(p, what="CSV file")
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = [h.strip() for h in (reader.fieldnames or [])]
        rows = list(reader)
    except csv.Error as exc:
        raise DataError(f"{p}: not a readable CSV ({exc})") from None
    if "image_path" not in header:
        raise DataError(f"{p}: needs an image_path column (found: {', '.join(header) or 'no header'})")
    present = [c for c in columns if c in header]
    if not present:
        raise DataError(f"{p}: needs at least one of the columns {', '.join(columns)} (found: {', '.join(header)})")
    sums: dict[str, dict[str, list[float]]] = {c: defaultdict(list) for c in present}
    table = ScoreTable(str(p), present, n_rows=len(rows))
    low, high = score_range
    for lineno, raw in enumerate(rows, start=2):
        row = {(k or "").strip(): (v or "").strip() if isinstance(v, str) else "" for k, v in raw.items()}
        name = item_key(row.get("image_path", ""))
        if not name:
            table.problems.append(f"{p.name} line {lineno}: empty image_path")
            continue
        for col in present:
            cell = row.get(col, "")
            if cell == "":
                continue
            try:
                value = float(cell)
            except ValueError:
                table.problems.append(f"{p.name} line {lineno} ({name}): {col} {cell!r} is not a number")
                continue
            if not math.isfinite(value) or not low <= value <= high:
                table.problems.append(f"{p.name} line {lineno} ({name}): {col} {cell} is outside {low:g}-{high:g}")
                continue
            sums[col][name].append(value)
    for col in present:
        table.means[col] = {k: sum(v) / len(v) for k, v in sums[col].items()}
        table.counts[col] = {k: len(v) for k, v in sums[col].items()}
    return table
