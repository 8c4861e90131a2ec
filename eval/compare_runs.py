"""Reading generate run folders for `portraitcraft compare`: one `RunData` per folder, items keyed by item key.

A run folder holds results.jsonl (the last row per item id counts: a resumed run appends), manifest.json and
summary.json. Items are paired across runs by `portraitcraft.ids.item_key` of their image_path (the kernel's
one join key), so runs over the same Track 2 file pair up whatever ids they were given. A folder that is not a
run raises `InputError` naming it; a malformed line is a problem of that run, never a crash.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from portraitcraft import bounded
from portraitcraft.data import MalformedLine, read_records
from portraitcraft.errors import DataError, InputError
from portraitcraft.eval.score_tables import read_score_csv
from portraitcraft.ids import item_key

COST_KEYS: tuple[str, ...] = ("generations", "edits", "reframes", "gpu_seconds", "vlm_calls", "vlm_seconds")
"""The cost counters every generate row carries (results.jsonl `cost`); others found in rows are added."""


@dataclass
class RunItem:
    """One item's outcome in one run (its last results row)."""

    key: str
    id: str
    status: str
    passed: bool = False
    rounds: int = 0
    cost: dict[str, float] = field(default_factory=dict)
    final_image: Path | None = None
    targets: dict[str, Any] | None = None
    open_findings: list[dict[str, Any]] = field(default_factory=list)
    """Findings detected on the final image by the run's own critic."""
    checked_rules: list[str] = field(default_factory=list)
    """Every rule the run's critic checked on the final image (detected or not)."""
    judge: dict[str, float] | None = None
    error: str | None = None

    @property
    def done(self) -> bool:
        return self.status == "done"


@dataclass
class RunData:
    """A run folder's items, manifest and the problems met while reading it."""

    name: str
    root: Path
    items: dict[str, RunItem]
    manifest: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)
    judge_source: str | None = None
    """"run" (the judge ranked the run's rounds), a scores file's path, or None (not judged)."""

    @property
    def done(self) -> list[RunItem]:
        return [i for i in self.items.values() if i.done]


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _item(row: dict[str, Any], root: Path) -> RunItem:
    raw_path = row.get("image_path")
    key = item_key(raw_path) if isinstance(raw_path, str) and raw_path else str(row["id"])
    status = str(row.get("status") or "unknown")
    item = RunItem(key=key, id=str(row["id"]), status=status, error=row.get("error") or None)
    if status != "done":
        return item
    item.passed = bool(row.get("passed"))
    item.rounds = int(_number(row.get("rounds")) or 0)
    item.cost = {k: v for k, raw in (row.get("cost") or {}).items() if (v := _number(raw)) is not None}
    history = [h for h in row.get("history") or [] if isinstance(h, dict)]
    final_round = row.get("final_round")
    final = history[final_round] if isinstance(final_round, int) and 0 <= final_round < len(history) else None
    image = row.get("final_image") or (final or {}).get("image")
    item.final_image = root / image if isinstance(image, str) and image else None
    item.targets = row.get("targets") if isinstance(row.get("targets"), dict) else None
    if final is not None:
        findings = [f for f in final.get("findings") or [] if isinstance(f, dict) and "rule" in f]
        item.checked_rules = sorted({str(f["rule"]) for f in findings})
        item.open_findings = [f for f in findings if f.get("detected")]
        score = _number(final.get("judge_score"))
        if score is not None:
            item.judge = {"score": score}
    return item


def load_run(path: str | Path, name: str | None = None) -> RunData:
    """Read a generate run folder.

    Args:
        path (str | Path): the run folder (holding results.jsonl).
        name (str, optional): the run's label (defaults to the folder name).

    Raises:
        InputError: not a folder, no results.jsonl, or no results row in it.

    Example:
        >>> run = load_run("runs/compare-demo/loop")  # doctest: +SKIP
        >>> sorted(run.items)  # doctest: +SKIP
        ['astronaut.png', 'camera.png', 'grace_hopper.png']
    """
    root = Path(path)
    label = name or root.name or str(root)
    if not root.is_dir():
        raise InputError(f"{root}: not a run folder (no such folder)")
    results = root / "results.jsonl"
    if not results.is_file():
        raise InputError(f"{root}: not a run folder (no results.jsonl)")
    try:
        records = read_records(results)
    except DataError as exc:
        raise InputError(f"{root}: not a readable run ({exc})") from None
    run = RunData(name=label, root=root, items={})
    latest: dict[str, dict[str, Any]] = {}
    for index, rec in enumerate(records):
        if isinstance(rec, MalformedLine):
            run.problems.append(f"results.jsonl: {rec.message}")
        elif not isinstance(rec, dict) or "id" not in rec:
            run.problems.append(f"results.jsonl row {index + 1}: not a results row (no id)")
        else:
            latest[str(rec["id"])] = rec
    if not latest:
        raise InputError(f"{root}: not a run folder (results.jsonl holds no results row)")
    for row in latest.values():
        item = _item(row, root)
        if item.key in run.items:
            run.problems.append(f"items {run.items[item.key].id!r} and {item.id!r} share the image {item.key!r}; "
                                f"kept {item.id!r}")
        run.items[item.key] = item
    if any(i.judge for i in run.items.values()):
        run.judge_source = "run"
    run.manifest = _read_json(root / "manifest.json", run)
    return run


def _read_json(path: Path, run: RunData) -> dict[str, Any] | None:
    if not path.is_file():
        run.problems.append(f"{path.name}: missing (config and versions cannot be compared)")
        return None
    try:
        data = json.loads(bounded.read_text(path, what="manifest"))
    except (DataError, ValueError) as exc:
        run.problems.append(f"{path.name}: not readable ({exc})")
        return None
    return data if isinstance(data, dict) else None


def attach_scores(run: RunData, path: str | Path) -> None:
    """Use an `eval track2 --out` CSV (image_path, content, composition[, auto]) as the run's judge scores.

    Rows are joined by item key; the file's problems (bad cells, unknown images) become the run's problems.

    Raises:
        DataError: the file is missing or has no usable columns (names the file).
    """
    from portraitcraft.eval.track2 import auto_score  # here: it pulls the judge's client stack

    table = read_score_csv(path, ("content", "composition", "auto"))
    content, composition, auto = table.column("content"), table.column("composition"), table.column("auto")
    run.problems += [f"scores {Path(path).name}: {p}" for p in table.problems]
    unknown = sorted((set(content) | set(composition) | set(auto)) - set(run.items))
    if unknown:
        run.problems.append(f"scores {Path(path).name}: {len(unknown)} image(s) not in the run: "
                            + ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else ""))
    for key, item in run.items.items():
        item.judge = None
        c, k, a = content.get(key), composition.get(key), auto.get(key)
        if a is None and c is not None and k is not None:
            a = auto_score(c, k)
        if c is None and k is None and a is None:
            continue
        item.judge = {name: v for name, v in (("content", c), ("composition", k), ("auto", a)) if v is not None}
    run.judge_source = str(path)


def judge_value(item: RunItem) -> float | None:
    """The item's judge score for paired comparisons: AutoScore from a scores file, else the run's judge score."""
    if item.judge is None:
        return None
    return item.judge.get("auto", item.judge.get("score"))


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted keys of nested dicts (`{"loop": {"max_rounds": 2}}` -> `{"loop.max_rounds": 2}`)."""
    if not isinstance(data, dict):
        return {prefix: data} if prefix else {}
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out |= flatten(value, name)
        else:
            out[name] = value
    return out


def manifest_differences(runs: list[RunData]) -> dict[str, list[dict[str, Any]]]:
    """What differs between the runs' manifests: config keys, package versions, Python, and the command.

    Returns `{"config": [...], "versions": [...], "command": [...]}`, each entry `{"key", "values": {run: v}}`.
    """
    sections: dict[str, dict[str, dict[str, Any]]] = {"config": {}, "versions": {}, "command": {}}
    for run in runs:
        m = run.manifest or {}
        sections["config"][run.name] = flatten(m.get("config") or {})
        sections["versions"][run.name] = {**flatten(m.get("packages") or {}), "python": m.get("python")}
        sections["command"][run.name] = {"command": " ".join(str(a) for a in m.get("command") or [])}
    out: dict[str, list[dict[str, Any]]] = {}
    for section, per_run in sections.items():
        keys = sorted({k for values in per_run.values() for k in values})
        rows = []
        for key in keys:
            values = {name: per_run[name].get(key) for name in per_run}
            if len({json.dumps(v, sort_keys=True, default=str) for v in values.values()}) > 1:
                rows.append({"key": key, "values": values})
        out[section] = rows
    return out


__all__ = [
    "COST_KEYS",
    "RunData",
    "RunItem",
    "attach_scores",
    "flatten",
    "judge_value",
    "load_run",
    "manifest_differences",
]
