"""Scripted stand-ins for the generate tests: an Analysis-like object, a geometric critic driven by the
measured features, and a drawer that paints simple test images (no model)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from portraitcraft.schemas import CompositionTargets, Finding


@dataclass
class FakeAnalysis:
    """What portraitcraft.tools.vision.analyze returns, reduced to what the generate code reads."""

    width: int
    height: int
    horizontal: str | None = None
    facing: str | None = None
    box: tuple[float, float, float, float] | None = None
    mask: Any = None
    persons: list[Any] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"width": self.width, "height": self.height, "horizontal": self.horizontal, "facing": self.facing}


def figure_analysis(image: str | Path) -> FakeAnalysis:
    """Finds the red 'person' rectangle the fake drawer paints; its centre gives the horizontal third."""
    arr = np.asarray(Image.open(image).convert("RGB")).astype(int)
    red = (arr[..., 0] > 180) & (arr[..., 1] < 80) & (arr[..., 2] < 80)
    h, w = red.shape
    if not red.any():
        return FakeAnalysis(w, h, mask=red)
    ys, xs = np.nonzero(red)
    cx = xs.mean() / w
    where = "left" if cx < 0.4 else "right" if cx > 0.6 else "center"
    box = (xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h)
    return FakeAnalysis(w, h, horizontal=where, box=box, mask=red)


def figure_geometry(targets: CompositionTargets, analysis: FakeAnalysis, confidence: float = 0.9) -> list[Finding]:
    """Geometric findings like portraitcraft.agents.geometry_critic: one per non-null horizontal target."""
    out: list[Finding] = []
    if analysis.horizontal is None:
        return [Finding(rule="subject", detected=True, confidence=confidence, source="geometry",
                        evidence="no person found")]
    if targets.horizontal is not None:
        out.append(Finding(rule="horizontal", detected=analysis.horizontal != targets.horizontal,
                           confidence=confidence, expected=targets.horizontal, measured=analysis.horizontal,
                           frame="viewer", source="geometry", evidence=f"subject centre is {analysis.horizontal}"))
    return out


def paint(width: int, height: int, where: float, *, bg: tuple[int, int, int] = (90, 110, 140),
          texture_seed: int | None = 0) -> Image.Image:
    """A test picture: a textured background and a red 'person' centred at `where` (0-1) of the width."""
    rng = np.random.default_rng(texture_seed)
    base = np.clip(np.array(bg)[None, None, :] + rng.normal(0, 25, (height, width, 3)), 0, 255).astype(np.uint8)
    img = Image.fromarray(base)
    draw = ImageDraw.Draw(img)
    cx = int(where * width)
    draw.rectangle([cx - width // 10, height // 4, cx + width // 10, height - height // 8], fill=(230, 20, 20))
    return img


class ScriptedDrawer:
    """The tools.gpu_jobs.Drawer interface with painted images: draft positions per call, edits move the figure.

    `drafts`: where each successive generate() puts the figure; `edits`: where each edit() puts it (None =
    leave the figure, repaint the background: a drifting edit).
    """

    def __init__(self, drafts: list[float] | None = None, edits: list[float | None] | None = None,
                 delay: float = 0.0) -> None:
        self.drafts = list(drafts or [0.5])
        self.edits = list(edits or [])
        self.calls: list[tuple[str, str | None, dict[str, Any]]] = []
        self.delay = delay
        self.done: list[str] = []

    async def generate(self, prompt: str, width: int, height: int, seed: int, *, item_id: str | None = None,
                       negative_prompt: str | None = None) -> Image.Image:
        self.calls.append(("generate", item_id, {"prompt": prompt, "seed": seed, "size": (width, height)}))
        await asyncio.sleep(self.delay)
        where = self.drafts.pop(0) if len(self.drafts) > 1 else self.drafts[0]
        img = paint(width, height, where, texture_seed=seed)
        img.info["seed"] = str(seed)
        return img

    async def edit(self, image: Image.Image, instruction: str, *, seed: int, item_id: str | None = None) -> Image.Image:
        self.calls.append(("edit", item_id, {"instruction": instruction, "seed": seed}))
        await asyncio.sleep(self.delay)
        where = self.edits.pop(0) if self.edits else 0.5
        if where is None:  # a drifting edit: the whole picture changes, the figure does not move
            return paint(image.width, image.height, 0.5, bg=(240, 240, 20), texture_seed=seed + 99)
        return paint(image.width, image.height, where, texture_seed=0)

    def item_done(self, item_id: str) -> None:
        self.done.append(item_id)

    def stats(self) -> dict[str, Any]:
        return {"utilisation": None, "jobs": len(self.calls)}

    async def aclose(self) -> None:
        return None


def image_from_body(body: dict[str, Any]) -> Image.Image:
    """The first image of a chat request (a data URL) as a PIL image."""
    import base64
    import io

    for message in body["messages"]:
        if isinstance(message.get("content"), list):
            for part in message["content"]:
                if part.get("type") == "image_url":
                    payload = part["image_url"]["url"].split(",", 1)[1]
                    return Image.open(io.BytesIO(base64.b64decode(payload))).convert("RGB")
    raise AssertionError("no image in the request")


def placement_vlm(wrong_side: str = "right", instruction: str = "move the woman to the left third"):
    """A fake-VLM reply function: the placement rule fires when the red figure is on `wrong_side`."""
    def reply(body: dict[str, Any]) -> dict[str, Any]:
        img = image_from_body(body)
        where = figure_analysis_image(img).horizontal
        if where == wrong_side:
            return {"detected": True, "evidence": f"the woman stands on the {where}", "instruction": instruction}
        return {"detected": False, "evidence": f"the woman stands on the {where}", "instruction": ""}
    return reply


def figure_analysis_image(img: Image.Image) -> FakeAnalysis:
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".png") as fh:
        img.save(fh.name)
        return figure_analysis(fh.name)
