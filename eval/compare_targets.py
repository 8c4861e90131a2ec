"""The met-target share, measured afresh: one ruler for every run of a comparison.

Each final image goes once through the vision stack (`portraitcraft.tools.vision.analyze`: pose, person mask,
face) and the geometric critic (`portraitcraft.agents.geometry_critic.critique_geometry`) against the
composition targets the run recorded for that item. Runs made with different critics (a VLM, geometry only,
none) are thus measured the same way. Verdicts are cached on disk by (image bytes, targets, vision settings),
so a second `compare` over the same runs analyses nothing.

A target is MET when its finding is not detected and the value was measured; a target the models could not
measure (no face seen for gaze, no person at all) counts as enforced and not met.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from portraitcraft.atomic import atomic_write_json
from portraitcraft.config import VisionConfig
from portraitcraft.errors import PortraitcraftError
from portraitcraft.schemas import CompositionTargets

CACHE_VERSION = 1
"""Bump when what is cached (or how it is measured) changes; old entries are then ignored."""
TARGET_KEYS: tuple[str, ...] = ("horizontal", "vertical", "crop_level", "facing", "gaze", "people", "orientation")


@dataclass
class TargetCheck:
    """One final image against its item's targets: per enforced target, met (True) or not (False)."""

    met: dict[str, bool] = field(default_factory=dict)
    unmeasured: list[str] = field(default_factory=list)
    error: str | None = None
    cached: bool = False

    @property
    def share(self) -> float | None:
        """Met / enforced; None when the item enforces no target (or could not be measured at all)."""
        return sum(self.met.values()) / len(self.met) if self.met else None


def enforced_targets(targets: CompositionTargets) -> list[str]:
    """The target keys the geometric critic enforces, in rule order: the set ones, less those the targets'
    own `enforced(key)` gate (evidence below `[vision] enforce_confidence`, an ambiguous frame) leaves out."""
    gate = getattr(targets, "enforced", None)
    return [key for key in TARGET_KEYS
            if getattr(targets, key, None) is not None and (not callable(gate) or gate(key))]


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class TargetRuler:
    """Measures final images against targets with one vision configuration; verdicts cached under `cache_dir`.

    Args:
        vision (VisionConfig, optional): backend and thresholds (defaults to VisionConfig()).
        cache_dir (str | Path, optional): where verdicts are kept (None: in memory only).

    Example:
        >>> ruler = TargetRuler(cache_dir="~/.cache/portraitcraft/compare")  # doctest: +SKIP
        >>> ruler.check("runs/a/submission/x.png", {"horizontal": "left"}).share  # doctest: +SKIP
        1.0
    """

    def __init__(self, vision: VisionConfig | None = None, cache_dir: str | Path | None = None) -> None:
        self.vision = vision or VisionConfig()
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else None
        self._memory: dict[str, TargetCheck] = {}
        self.analysed = 0
        """Images that went through the vision models in this process (cache misses)."""

    def _key(self, image: Path, targets: CompositionTargets) -> str:
        wanted = {k: getattr(targets, k) for k in enforced_targets(targets)}
        blob = json.dumps([CACHE_VERSION, _digest(image), wanted, self.vision.model_dump(mode="json")],
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def check(self, image: str | Path, targets: dict[str, Any] | CompositionTargets | None) -> TargetCheck:
        """Measure one image against its targets (an unreadable image is a check with an `error`, not a raise)."""
        path = Path(image)
        try:
            tg = targets if isinstance(targets, CompositionTargets) else CompositionTargets.model_validate(
                {k: v for k, v in (targets or {}).items() if k in CompositionTargets.model_fields})  # newer rows
        except ValueError as exc:
            return TargetCheck(error=f"targets not readable: {exc}")
        if not enforced_targets(tg):
            return TargetCheck()
        try:
            key = self._key(path, tg)
        except OSError as exc:
            return TargetCheck(error=f"final image {path}: {exc.strerror or exc}")
        if key in self._memory:
            return self._memory[key]
        stored = self._load(key)
        if stored is not None:
            self._memory[key] = stored
            return stored
        check = self._measure(path, tg)
        if check.error is None:
            self._memory[key] = check
            self._store(key, check)
        return check

    def _measure(self, path: Path, targets: CompositionTargets) -> TargetCheck:
        from portraitcraft.agents.geometry_critic import critique_geometry
        from portraitcraft.tools.vision import analyze

        try:
            analysis = analyze(path, self.vision)
        except PortraitcraftError as exc:
            return TargetCheck(error=str(exc))
        self.analysed += 1
        findings = {f.rule: f for f in critique_geometry(targets, analysis)}
        check = TargetCheck()
        for key in enforced_targets(targets):
            finding = findings.get(key)
            measured = finding is not None and finding.measured is not None
            check.met[key] = bool(measured and finding is not None and not finding.detected)
            if not measured:
                check.unmeasured.append(key)
        return check

    def _path(self, key: str) -> Path | None:
        return self.cache_dir / key[:2] / f"{key}.json" if self.cache_dir is not None else None

    def _load(self, key: str) -> TargetCheck | None:
        path = self._path(key)
        if path is None or not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return TargetCheck(met={str(k): bool(v) for k, v in data["met"].items()},
                               unmeasured=[str(k) for k in data.get("unmeasured", [])], cached=True)
        except (OSError, ValueError, KeyError, AttributeError):
            return None  # a damaged entry is measured again

    def _store(self, key: str, check: TargetCheck) -> None:
        path = self._path(key)
        if path is None:
            return
        with contextlib.suppress(OSError):  # a read-only cache costs a re-measure next time, never the comparison
            atomic_write_json(path, {"met": check.met, "unmeasured": check.unmeasured})


def vision_available() -> str | None:
    """None when the vision models are installed, else why not (without importing them: that takes seconds)."""
    if importlib.util.find_spec("mediapipe") is None:
        return "the vision models are not installed (no mediapipe); install portraitcraft[vision]"
    return None


__all__ = ["CACHE_VERSION", "TARGET_KEYS", "TargetCheck", "TargetRuler", "enforced_targets", "vision_available"]
