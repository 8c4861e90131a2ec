"""`<run>/report.html`: a static page of a generate run (jinja2, no network, images referenced relatively so
the folder can be moved). `portraitcraft report RUN` renders it again."""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2

from portraitcraft.atomic import atomic_write_text
from portraitcraft.docs_links import docs_link
from portraitcraft.errors import InputError
from portraitcraft.runs import ResultsLog

TEMPLATES = Path(__file__).resolve().parent / "templates"
DOCS_SECTION = ("guides/generate", "the-run-report")  # docs/guides/generate.md explains this page


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    from portraitcraft.graphs.generate_run import summarize

    return summarize(rows, [r["id"] for r in rows], None, 0.0)


def report_data(run_root: Path) -> dict[str, Any]:
    """What the report shows, from results.jsonl (the last row per id) and summary.json when present."""
    log = run_root / "results.jsonl"
    if not log.is_file():
        raise InputError(f"{run_root}: no results.jsonl (not a generate run folder)")
    latest: dict[str, dict[str, Any]] = {}
    for row in ResultsLog(log):
        if "id" in row:
            latest[row["id"]] = row
    rows = list(latest.values())
    summary = _summary(rows)
    saved = run_root / "summary.json"
    if saved.is_file():
        with contextlib.suppress(OSError, json.JSONDecodeError):
            previous = json.loads(saved.read_text(encoding="utf-8"))
            summary["gpu_utilisation"] = previous.get("gpu_utilisation")
            summary["gpu"] = previous.get("gpu")
            if "vlm_tokens" in previous.get("cost_per_final_image", {}):
                summary["cost_per_final_image"]["vlm_tokens"] = previous["cost_per_final_image"]["vlm_tokens"]
    per_rule: dict[tuple[str, str], list[int]] = {}
    disagreements: list[dict[str, Any]] = []
    for row in rows:
        for h in row.get("history") or []:
            for f in h.get("findings") or []:
                counts = per_rule.setdefault((f["rule"], f["source"]), [0, 0])
                counts[0] += int(bool(f.get("detected")))
                counts[1] += 1
            disagreements += [{**d, "id": row["id"], "round": h.get("round")} for d in h.get("disagreements") or []]
    histogram = sorted(Counter(r.get("rounds", 0) for r in rows if r.get("status") == "done").items())
    return {
        "title": run_root.name, "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "n_rows": len(rows),
        "docs": docs_link(*DOCS_SECTION),
        "rows": rows, "summary": summary, "histogram": histogram, "disagreements": disagreements,
        "per_rule": [{"rule": k[0], "source": k[1], "detected": v[0], "checked": v[1]}
                     for k, v in sorted(per_rule.items(), key=lambda kv: (-kv[1][0], kv[0]))],
    }


def write_report(run_root: str | Path) -> Path:
    """Render `<run_root>/report.html` and return its path."""
    root = Path(run_root)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.ChainableUndefined, trim_blocks=True, lstrip_blocks=True)
    html = env.get_template("report.html.j2").render(**report_data(root))
    return atomic_write_text(root / "report.html", html)


__all__ = ["report_data", "write_report"]
