"""`compare.html`: a static page of a comparison (jinja2, no network, images linked relatively to `--out`).

Sections: what differs between the runs' manifests, the summary table, the paired comparison table, a chart of
pass rate (with its 95% interval) against cost per passed image (one point per run), the per-rule rates, and
per item a row with each run's final image, rounds and open findings, filterable to the items where the runs
disagree. How to read it: docs/guides/compare.md.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2

from portraitcraft.atomic import atomic_write_text
from portraitcraft.docs_links import docs_link
from portraitcraft.eval.compare import Comparison

TEMPLATES = Path(__file__).resolve().parent / "templates"
DOCS_SECTION = ("guides/compare", "")
"""The user guide that explains the page (portraitcraft.docs_links: the page path, clickable when a site is known)."""
CHART = {"width": 560, "height": 280, "left": 56, "right": 200, "top": 16, "bottom": 44}


def _rel(path: Path | None, out_dir: Path) -> str | None:
    if path is None:
        return None
    try:
        return Path(os.path.relpath(path.resolve(), out_dir.resolve())).as_posix()
    except ValueError:  # another drive (Windows): an absolute file URI is still static and offline
        return path.resolve().as_uri()


def chart_cost_key(result: Comparison) -> tuple[str, str]:
    """The chart's x axis: GPU seconds per passed image when any run spent GPU time, else image operations
    (generations + edits + reframes) per passed image."""
    if any((s["cost_per_final_image"] or {}).get("gpu_seconds") for s in result.run_stats):
        return "gpu_seconds", "GPU seconds per passed image"
    return "image_ops", "image operations (generations + edits + reframes) per passed image"


def chart_points(result: Comparison) -> dict[str, Any]:
    """One point per run: x = cost per passed image, y = pass rate with its bootstrap interval (SVG units)."""
    key, label = chart_cost_key(result)
    c = CHART
    plot_w, plot_h = c["width"] - c["left"] - c["right"], c["height"] - c["top"] - c["bottom"]
    raw = []
    for s in result.run_stats:
        per = s["cost_per_passed_image"] or {}
        if key == "image_ops":
            parts = [per.get(k) for k in ("generations", "edits", "reframes")]
            x = None if any(p is None for p in parts) else sum(parts)  # type: ignore[arg-type]
        else:
            x = per.get(key)
        raw.append((s, x))
    xs = [x for _, x in raw if x is not None]
    x_max = max(xs) * 1.15 if xs and max(xs) > 0 else 1.0
    points: list[dict[str, Any]] = []
    for s, x in raw:
        y = s["pass_rate"] or 0.0
        lo, hi = s["pass_rate_ci95"] or (y, y)
        px = c["left"] + (plot_w * x / x_max if x is not None else plot_w + 30)
        points.append({"name": s["name"], "x": x, "px": round(px, 1), "py": round(c["top"] + plot_h * (1 - y), 1),
                       "plo": round(c["top"] + plot_h * (1 - lo), 1), "phi": round(c["top"] + plot_h * (1 - hi), 1),
                       "pass_rate": y, "none_passed": x is None})
        same = sum(1 for q in points[:-1] if (q["px"], q["py"]) == (points[-1]["px"], points[-1]["py"]))
        points[-1]["label_y"] = round(points[-1]["py"] - 6 + 13 * same, 1)  # coinciding runs: labels stacked
    ticks = [{"v": round(x_max * f / 1.15, 3), "px": round(c["left"] + plot_w * f / 1.15, 1)} for f in (0, 0.5, 1.0)]
    return {"points": points, "label": label, "ticks": ticks, **c, "plot_w": plot_w, "plot_h": plot_h,
            "y_ticks": [{"v": v, "py": round(c["top"] + plot_h * (1 - v), 1)} for v in (0.0, 0.5, 1.0)]}


def item_rows(result: Comparison, out_dir: Path) -> list[dict[str, Any]]:
    """Per item (in the baseline's order, then any others): each run's cell, and whether the runs disagree."""
    keys: list[str] = []
    for run in result.runs:
        keys += [k for k in run.items if k not in keys]
    rows = []
    for key in keys:
        cells, outcomes = [], set()
        for run in result.runs:
            item = run.items.get(key)
            check = result.checks.get((run.name, key))
            if item is None:
                cells.append({"status": "missing"})
                outcomes.add("missing")
                continue
            outcomes.add(("passed" if item.passed else "not passed") if item.done else item.status)
            cells.append({
                "status": item.status, "passed": item.passed, "rounds": item.rounds, "error": item.error,
                "image": _rel(item.final_image, out_dir) if item.done else None,
                "findings": [f"{f.get('rule')} ({f.get('source', '?')})" for f in item.open_findings],
                "met": None if check is None or check.share is None else round(check.share, 3),
                "unmet": sorted(r for r, ok in (check.met.items() if check else []) if not ok),
            })
        ids = sorted({run.items[key].id for run in result.runs if key in run.items})
        rows.append({"key": key, "ids": ids, "cells": cells, "disagree": len(outcomes) > 1})
    return rows


def page_data(result: Comparison, out_dir: Path) -> dict[str, Any]:
    """Everything the template shows."""
    rows = item_rows(result, out_dir)
    return {
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "runs": result.run_stats, "names": [r.name for r in result.runs], "comparisons": result.comparisons,
        "unpaired": result.unpaired, "problems": result.problems, "notes": result.notes,
        "diff": result.manifest_diff, "chart": chart_points(result), "rows": rows,
        "n_disagree": sum(r["disagree"] for r in rows), "boot": result.boot, "seed": result.seed,
        "rules": sorted({r for s in result.run_stats for r in s["rules"]}),
        "target_rules": sorted({r for s in result.run_stats for r in s["met_targets"]["by_rule"]}),
        "docs": docs_link(*DOCS_SECTION),
    }


def write_page(result: Comparison, out_dir: str | Path) -> Path:
    """Render `<out_dir>/compare.html` (atomically) and return its path.

    Example:
        >>> write_page(compare(["runs/a", "runs/b"]), "runs/a-vs-b")  # doctest: +SKIP
        PosixPath('runs/a-vs-b/compare.html')
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    html = env.get_template("compare.html.j2").render(**page_data(result, out))
    return atomic_write_text(out / "compare.html", html)


__all__ = ["DOCS_SECTION", "chart_points", "item_rows", "page_data", "write_page"]
