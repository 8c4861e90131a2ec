"""Run folders for the compare tests, written the way `generate` writes them (results.jsonl, manifest.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PIL import Image

from portraitcraft.runs import ResultsLog


def item_row(key: str, *, passed: bool, rounds: int = 0, cost: dict[str, float] | None = None,
             targets: dict[str, Any] | None = None, open_rules: tuple[str, ...] = (), status: str = "done",
             judge_score: float | None = None) -> dict[str, Any]:
    """A generate results row; the final round holds `open_rules` detected and a checked `horizontal`."""
    stem = key.rsplit(".", 1)[0]
    if status != "done":
        return {"id": stem, "image_path": key, "status": status, "passed": False, "rounds": 0, "history": [],
                "error": f"InputError: item {stem}: the description is empty"}
    findings = [{"rule": r, "detected": True, "source": "geometry"} for r in open_rules]
    if "horizontal" not in open_rules:
        findings.append({"rule": "horizontal", "detected": False, "source": "geometry"})
    final = {"round": rounds, "image": f"items/{stem}/round_{rounds}.png", "findings": findings, "passed": passed,
             **({"judge_score": judge_score} if judge_score is not None else {})}
    return {"id": stem, "image_path": key, "status": "done", "passed": passed, "rounds": rounds,
            "final_round": rounds, "history": [{"round": k, "findings": []} for k in range(rounds)] + [final],
            "targets": targets or {}, "cost": {"generations": 1, "edits": 0, "reframes": 0, "vlm_calls": 0,
                                               "gpu_seconds": 0.0, "vlm_seconds": 0.0, **(cost or {})},
            "final_image": f"submission/{key}"}


def write_run(root: Path, rows: list[dict[str, Any]], *, config: dict[str, Any] | None = None,
              images: dict[str, Image.Image] | None = None, packages: dict[str, str] | None = None) -> Path:
    """A run folder: results.jsonl, manifest.json and, for each key in `images`, its final image."""
    root.mkdir(parents=True, exist_ok=True)
    log = ResultsLog(root / "results.jsonl")
    for row in rows:
        log.append(row)
    manifest = {"started": "2026-12-07T20:00:00+00:00", "command": ["portraitcraft", "generate", "x.json"],
                "python": "3.11.7", "packages": packages or {"portraitcraft": "0.1.0"},
                "config": config or {"loop": {"strategy": "loop", "max_rounds": 2}}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    for key, image in (images or {}).items():
        (root / "submission").mkdir(exist_ok=True)
        image.save(root / "submission" / key)
    return root
