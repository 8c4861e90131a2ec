"""`portraitcraft inspect IMAGE...`: what the vision models see (pose, mask, face), and with a description,
the composition targets it asks and the geometric critic's findings. Models load on first use (no torch,
no mediapipe at start-up)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from portraitcraft.cli.common import ConfigOption, SetOption, config_from_cli, console
from portraitcraft.config import PortraitcraftConfig
from portraitcraft.errors import InputError, PortraitcraftError
from portraitcraft.schemas import CompositionTargets, Track2Spec

TARGET_KEYS = ("horizontal", "vertical", "crop_level", "facing", "gaze", "orientation", "people")


def _targets_reader(cfg: PortraitcraftConfig) -> Callable[[str, str], CompositionTargets]:
    """Composition targets as the planner reads them: its configured convention (`[planner] convention`,
    else a fitted policy's, else strict)."""
    from portraitcraft.agents.planner import Planner

    planner = Planner(cfg.planner)
    return lambda content, composition: planner.targets(
        Track2Spec(image_path="inspect.png", content=content, composition=composition))


def _spec_for(image: Path, specs: list[Track2Spec], wanted: str | None) -> Track2Spec:
    if wanted is not None:
        for spec in specs:
            if wanted in (spec.id, spec.image_path, spec.output_name):
                return spec
        raise InputError(f"--id {wanted!r}: no such item in the spec file")
    if len(specs) == 1:
        return specs[0]
    for spec in specs:
        if spec.output_name == image.name:
            return spec
    raise InputError(f"{image}: the spec file has {len(specs)} items and none is named {image.name}; give --id")


def inspect(
    images: list[Path] = typer.Argument(..., help="Image files to look at."),
    description: str | None = typer.Option(None, "--description", help="A description to check the images "
                                           "against (its composition targets, then the geometric findings)."),
    spec: Path | None = typer.Option(None, "--spec", help="A Track 2 file (JSON array / JSONL); each image "
                                     "is checked against the item named like it, or --id."),
    item_id: str | None = typer.Option(None, "--id", help="The item of --spec to check against."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per image per line."),
    config: Path | None = ConfigOption,
    sets: list[str] | None = SetOption,
) -> None:
    """Measure placement (viewer's frame), crop level, facing, gaze, tilt and people in each image."""
    if description is not None and spec is not None:
        raise InputError("give --description or --spec, not both")
    if item_id is not None and spec is None:
        raise InputError("--id needs --spec")
    cfg = config_from_cli(config, sets)
    specs: list[Track2Spec] = []
    if spec is not None:
        from portraitcraft.data import load_track2

        specs = load_track2(spec)
        if not specs:
            raise InputError(f"--spec {spec}: no items")
    read_targets = _targets_reader(cfg) if description is not None or specs else None
    fixed_targets = read_targets(description, "") if read_targets and description is not None else None

    from portraitcraft.agents.geometry_critic import critique_geometry
    from portraitcraft.tools.vision import analyze

    failed = 0
    for image in images:
        try:
            targets = fixed_targets
            if specs:
                item = _spec_for(image, specs, item_id)
                targets = read_targets(item.content, item.composition) if read_targets else None
            analysis = analyze(image, cfg.vision)
            row: dict[str, Any] = {"image": str(image), **analysis.to_json()}
            if targets is not None:
                row["targets"] = {k: getattr(targets, k) for k in TARGET_KEYS}
                row["findings"] = [f.model_dump(mode="json") for f in critique_geometry(targets, analysis)]
        except PortraitcraftError as exc:
            failed += 1
            print(f"error: {image}: {exc}", file=sys.stderr)
            continue
        if as_json:
            sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
            sys.stdout.flush()
        else:
            _show(row, analysis.people_note if analysis.subject else "")
    if failed:
        raise InputError(f"{failed} of {len(images)} image(s) could not be inspected (see the lines above)")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return "-" if value is None else str(value)


def _show(row: dict[str, Any], note: str) -> None:
    table = Table(title=f"{row['image']} ({row['width']}x{row['height']}, {len(row['persons'])} person(s) "
                  "posed; directions in the viewer's frame)")
    table.add_column("feature")
    table.add_column("measured")
    if "targets" in row:
        table.add_column("target")
    subject = row["subject"] or {}
    keys = ["box", "centroid", "face_center", "horizontal", "vertical", "thirds_distance", "headroom",
            "crop_level", "facing", "gaze", "tilt_deg", "people", "orientation"]
    w, h = row["width"], row["height"]
    measured = {**subject, "orientation": "square" if abs(w / h - 1) <= 0.05 else "landscape" if w > h else
                "portrait"}
    for key in keys:
        cells = [key, _fmt(measured.get(key)) if row["subject"] or key == "orientation" else "-"]
        if "targets" in row:
            cells.append(_fmt(row["targets"].get(key)))
        table.add_row(*cells)
    console.print(table)
    if not row["subject"]:
        console.print("no person found")
    elif note:
        console.print(f"[dim]{escape(str(note))}[/dim]")
    for f in row.get("findings", []):
        mark = "[red]VIOLATED[/red]" if f["detected"] else "[green]ok[/green]"
        console.print(f"{mark} {f['rule']}: expected {f['expected']}, measured {f['measured']} "
                      f"(confidence {f['confidence']:.2f}) {f['instruction']}", highlight=False)
