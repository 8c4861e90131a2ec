"""The reframing editor: fix placement and aspect by cropping — never touching the subject's pixels.

Given the image, its `Analysis` and the placement / aspect targets, it finds the LARGEST crop with the
requested aspect that puts the subject where the targets ask (horizontal: the mask-weighted centroid;
vertical: the face centre, the centroid without a face) and keeps the head and the joints the crop level
needs inside the frame. Crop before pad, always:
1. the largest pad-free crop that meets the targets, with the configured margin, then with no margin;
2. only when no crop does: padding on the side that gives the subject room (at most `[vision] reframe_max_pad`
   of the output), filled by a GENERATIVE outpainting model (`outpaint=`, the pad as its mask, recorded in
   `pad_mask`); the synthetic fills `blur` / `reflect` only when the user asks for them (`[vision]
   reframe_fill`, `portraitcraft reframe --fill`);
3. with no way to pad: the best crop (the subject as near the target as a crop allows), marked
   `needs_outpainting` — the finding stays open, never a blurred or mirrored strip.
When no crop keeps the head and the needed joints at all it raises `ReframeError` (the loop then edits or
regenerates).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image, ImageFilter
from scipy.ndimage import gaussian_filter

from portraitcraft.config import VisionConfig
from portraitcraft.errors import PortraitcraftError
from portraitcraft.schemas import CROP_LEVELS, CropLevel, Horizontal, Vertical
from portraitcraft.tools.images import load_image
from portraitcraft.tools.vision.analysis import Analysis
from portraitcraft.tools.vision.composition import (
    CROP_JOINTS,
    EXTENT_LEVELS,
    HEAD_PER_FACE_BOX,
    LOWER_CUT,
    UPPER_CUT,
    seen,
)

REFRAMEABLE_RULES: frozenset[str] = frozenset({"horizontal", "vertical", "orientation"})
"""Geometric findings a crop can fix; crop_level too, only when `can_tighten(measured, expected)` (see
`reframeable`)."""
BANDS: dict[str, tuple[float, float]] = {
    "left": (0.27, 0.38), "center": (0.45, 0.55), "right": (0.62, 0.73),
    "upper": (0.27, 0.38), "middle": (0.45, 0.55), "lower": (0.62, 0.73),
}
"""Where a target puts the subject, as a fraction of the new frame (around the thirds lines and the centre, kept
clear of the 5/12 and 7/12 cuts so a re-measurement agrees)."""
KEEP_MARGIN = 0.03
"""An axis with no target keeps its current class, this far inside the class's cuts."""
SCALES, POSITIONS = 60, 48
VERIFY_TRIES = 3
GRID = 256


class Outpainter(Protocol):
    """A generative fill: `outpaint(image, mask)` repaints the white pixels of `mask` (L mode, the pad) and keeps
    the others; `name` (the model) is recorded as the result's `fill`."""

    name: str

    def __call__(self, image: Image.Image, mask: Image.Image) -> Image.Image: ...


class ReframeError(PortraitcraftError):
    """No person to reframe, or no crop/pad meets the targets (the message says which)."""

    exit_code = 3


class AspectError(ReframeError):
    """A malformed `--aspect` (bad input, exit 2: nothing was tried)."""

    exit_code = 2


@dataclass
class ReframeResult:
    """The reframed picture; `crop_box` is in source pixels and extends past the image where padded."""

    image: Image.Image
    crop_box: tuple[int, int, int, int]
    padding: tuple[int, int, int, int]
    kept_fraction: float
    fill: str  # "none" (a plain crop), the outpainting model, or the user-asked "blur" / "reflect"
    after: Analysis | None = None  # the result measured again (when verified)
    needs_outpainting: bool = False  # no crop meets the targets: this is the best crop, the finding stays open
    pad_mask: Image.Image | None = None  # white where the picture was padded (generative or asked-for fill)

    def record(self, source: str, mirrored: bool = False) -> dict[str, object]:
        """The `portraitcraft:reframe` provenance record (crop_box in the source's pixels, after the mirror)."""
        return {"source": source, "mirrored": mirrored, "crop_box": list(self.crop_box),
                "padding": list(self.padding), "fill": self.fill, "kept_fraction": self.kept_fraction,
                "size": list(self.image.size), "needs_outpainting": self.needs_outpainting}


def can_tighten(measured: str | None, target: str | None) -> bool:
    """A crop can only tighten a crop level (show less of the body), never loosen it."""
    return (measured in CROP_LEVELS and target in CROP_LEVELS
            and CROP_LEVELS.index(target) < CROP_LEVELS.index(measured))


def reframeable(rule: str, measured: object = None, expected: object = None) -> bool:
    """Can a crop fix this geometric finding? Placement and orientation always may; a crop level only when the
    target is tighter than what the picture shows.

    Example:
        >>> reframeable("horizontal"), reframeable("crop_level", "half-body", "head-and-shoulders")
        (True, True)
        >>> reframeable("crop_level", "head-and-shoulders", "full-body"), reframeable("gaze")
        (False, False)
    """
    if rule == "crop_level":
        return can_tighten(measured if isinstance(measured, str) else None,
                           expected if isinstance(expected, str) else None)
    return rule in REFRAMEABLE_RULES


def parse_aspect(text: str) -> float:
    """'W:H' (or a number) -> width / height.

    Example:
        >>> parse_aspect("3:2")
        1.5
    """
    try:
        if ":" in text:
            w, h = (float(v) for v in text.split(":", 1))
        else:
            w, h = float(text), 1.0
    except ValueError:
        raise AspectError(f"aspect {text!r}: expected W:H, e.g. 3:2") from None
    if not (w > 0 and h > 0 and math.isfinite(w / h)) or not 0.1 <= w / h <= 10:
        raise AspectError(f"aspect {text!r}: width and height must be positive, ratio between 1:10 and 10:1")
    return w / h


def _band(target: str | None, current: float, lo_cut: float = LOWER_CUT, hi_cut: float = UPPER_CUT
          ) -> tuple[float, float, float]:
    """(low, high, aim) fraction of the frame for the reference point on one axis."""
    if target is not None:
        lo, hi = BANDS[target]
        return lo, hi, (lo + hi) / 2
    if current < lo_cut:
        lo, hi = 0.02, lo_cut - KEEP_MARGIN
    elif current > hi_cut:
        lo, hi = hi_cut + KEEP_MARGIN, 0.98
    else:
        lo, hi = lo_cut + KEEP_MARGIN, hi_cut - KEEP_MARGIN
    return min(lo, current), max(hi, current), current  # where it is now always stays allowed


def protected_box(analysis: Analysis, margin: float, level: str | None = None) -> tuple[float, float, float, float]:
    """Normalised box that must stay in frame: the head (to its top) and the joints the crop level (the
    subject's, or `level`) needs."""
    subject, person = analysis.subject, analysis.persons[0]
    assert subject is not None
    xs, ys = [], []
    level = level or subject.crop_level
    needed = CROP_LEVELS.index(level) if level in CROP_LEVELS else 0
    for lvl, joints in CROP_JOINTS:
        if CROP_LEVELS.index(lvl) <= needed:
            for j in joints:
                if seen(person, j, analysis.keypoint_threshold):
                    xs.append(person.keypoints[j][0])
                    ys.append(person.keypoints[j][1])
    head = analysis.face.box if analysis.face is not None else None
    if head is not None:
        fw, fh = head[2] - head[0], head[3] - head[1]
        xs += [head[0] - 0.15 * fw, head[2] + 0.15 * fw]
        ys += [head[1] - 0.35 * fh, head[3]]
    ys.append(subject.box[1])  # the top of the head as the mask / pose box sees it
    if not xs:
        xs = [subject.box[0], subject.box[2]]
    return (max(0.0, min(xs) - margin), max(0.0, min(ys) - margin), min(1.0, max(xs) + margin),
            min(1.0, max(ys) + margin))


def cut_line(analysis: Analysis, level: str, margin: float) -> float:
    """The lowest the frame's bottom edge may sit (normalised y) for the picture to read as `level`: above every
    seen joint of a looser crop, and within that level's reach below the crown in head heights."""
    subject, person = analysis.subject, analysis.persons[0]
    assert subject is not None
    limit = 1.0
    rank = CROP_LEVELS.index(level)
    for lvl, joints in CROP_JOINTS:
        if CROP_LEVELS.index(lvl) > rank:
            for j in joints:
                if seen(person, j, analysis.keypoint_threshold):
                    limit = min(limit, person.keypoints[j][1] - margin)
    if analysis.face is not None:
        reach = dict((lvl, heads) for heads, lvl in EXTENT_LEVELS).get(level)
        if reach is not None:
            head = HEAD_PER_FACE_BOX * (analysis.face.box[3] - analysis.face.box[1])
            limit = min(limit, subject.box[1] + (reach - 0.2) * head)
    return limit


def _tables(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Summed-area tables (mass, mass * x) of the person mask on a coarse grid."""
    h, w = mask.shape
    step = max(1, math.ceil(max(h, w) / GRID))
    gh, gw = h // step, w // step
    grid = mask[: gh * step, : gw * step].reshape(gh, step, gw, step).mean(axis=(1, 3))
    xs = (np.arange(gw) + 0.5)[None, :] / gw
    mass = np.pad(grid.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    mx = np.pad((grid * xs).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    return mass, mx, gh, gw


def _box_sum(table: np.ndarray, x0: np.ndarray, y0: np.ndarray, x1: np.ndarray, y1: np.ndarray) -> np.ndarray:
    return table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0]


def _search(analysis: Analysis, W: int, H: int, aspect: float, horizontal: str | None, vertical: str | None,
            cfg: VisionConfig, pad: bool, bias: tuple[float, float] = (0.0, 0.0), pad_axes: str = "xy",
            level: str | None = None, nearest: bool = False
            ) -> tuple[tuple[float, float, float, float], float, float] | None:
    """The best box (x0, y0, w, h) in source pixels and the subject's predicted (x, y) fractions in it, or None.

    `bias` is added to the predicted fractions: what a previous try measured minus what it predicted;
    `pad_axes` names the axes ("x", "y") padding may extend; `level` a tighter crop level to reach; `nearest`
    drops the placement bands and keeps the pad-free crop that puts the subject NEAREST the targets' aims
    (the largest among equals)."""
    subject = analysis.subject
    assert subject is not None and analysis.mask is not None
    px0, py0, px1, py1 = protected_box(analysis, cfg.reframe_margin, level)
    max_bottom = cut_line(analysis, level, cfg.reframe_margin) * H if level else math.inf
    px0, px1, py0, py1 = px0 * W, px1 * W, py0 * H, py1 * H
    ref_y = (subject.face_center or subject.centroid)[1] * H
    hx = _band(horizontal, subject.centroid[0])
    # tightening the crop moves the face down the frame by nature: then only an asked height constrains it
    vy = _band(vertical, ref_y / H) if vertical or not level else (0.1, 0.9, ref_y / H)
    mask = analysis.subject_mask if analysis.subject_mask is not None else analysis.mask
    mass, mx, gh, gw = _tables(mask.astype(np.float64))
    fit_w = min(W, H * aspect)  # the largest box of this aspect inside the image
    top = 1.0 + (cfg.reframe_max_pad if pad else 0.0)
    best: tuple[float, tuple[float, float, float, float], float, float] | None = None
    for s in np.linspace(top, 0.2, SCALES):
        w = fit_w * s
        h = w / aspect
        if w < px1 - px0 or h < py1 - py0:
            break
        if pad:
            if ("x" not in pad_axes and w > W + 1e-6) or ("y" not in pad_axes and h > H + 1e-6):
                continue
            slack_x = cfg.reframe_max_pad * w if "x" in pad_axes else 0.0
            slack_y = cfg.reframe_max_pad * h if "y" in pad_axes else 0.0
            xr = np.linspace(min(0.0, W - w) - slack_x, max(0.0, W - w) + slack_x, POSITIONS)
            yr = np.linspace(min(0.0, H - h) - slack_y, max(0.0, H - h) + slack_y, POSITIONS)
        else:
            if w > W + 1e-6 or h > H + 1e-6:
                continue
            xr = np.linspace(0.0, W - w, POSITIONS)
            yr = np.linspace(0.0, H - h, POSITIONS)
        x0, y0 = np.meshgrid(xr, yr)
        ok = (x0 <= px0) & (x0 + w >= px1) & (y0 <= py0) & (y0 + h >= py1) & (y0 + h <= max_bottom)
        # kept part of the image and padding
        ix0, iy0 = np.clip(x0, 0, W), np.clip(y0, 0, H)
        ix1, iy1 = np.clip(x0 + w, 0, W), np.clip(y0 + h, 0, H)
        kept = (ix1 - ix0) * (iy1 - iy0)
        pad_frac = 1.0 - kept / (w * h)
        ok &= pad_frac <= cfg.reframe_max_pad + 1e-9
        # the mask's centroid inside the kept part (the padding shows no person)
        gx0 = np.floor(ix0 / W * gw).astype(int)
        gx1 = np.ceil(ix1 / W * gw).astype(int)
        gy0 = np.floor(iy0 / H * gh).astype(int)
        gy1 = np.ceil(iy1 / H * gh).astype(int)
        m = _box_sum(mass, gx0, gy0, gx1, gy1)
        cx = np.where(m > 0, _box_sum(mx, gx0, gy0, gx1, gy1) / np.maximum(m, 1e-12), -1.0) * W
        fx = (cx - x0) / w + bias[0]
        fy = ((ref_y - y0) / h if subject.face_center else fy_from_mask(mask, W, H, x0, y0, w, h)) + bias[1]
        ok &= m > 0
        if not nearest:
            ok &= (fx >= hx[0]) & (fx <= hx[1]) & (fy >= vy[0]) & (fy <= vy[1])
        if not ok.any():
            continue
        miss = np.abs(fx - hx[2]) + np.abs(fy - vy[2])
        score = -miss + 1e-3 * kept / (W * H) if nearest else kept / (W * H) - 2.0 * pad_frac - 0.02 * miss
        score = np.where(ok, score, -np.inf)
        i = np.unravel_index(np.argmax(score), score.shape)
        if best is None or score[i] > best[0]:
            best = (float(score[i]), (float(x0[i]), float(y0[i]), w, h), float(fx[i] - bias[0]),
                    float(fy[i] - bias[1]))
        if not pad and not nearest:
            break  # the largest feasible crop wins
    return (best[1], best[2], best[3]) if best else None


def fy_from_mask(mask: np.ndarray, W: int, H: int, x0: np.ndarray, y0: np.ndarray, w: float, h: float
                 ) -> np.ndarray:
    """Vertical fraction of the mask centroid in each box (no face: the centroid is the vertical reference)."""
    mask = mask.astype(np.float64)
    rows = mask.shape[0]
    ys = (np.arange(rows) + 0.5) / rows
    t = np.zeros_like(x0)
    for idx in np.ndindex(x0.shape):
        r0 = int(np.clip(y0[idx] / H * rows, 0, rows))
        r1 = int(np.clip((y0[idx] + h) / H * rows, 0, rows))
        c0 = int(np.clip(x0[idx] / W * mask.shape[1], 0, mask.shape[1]))
        c1 = int(np.clip((x0[idx] + w) / W * mask.shape[1], 0, mask.shape[1]))
        sub = mask[r0:r1, c0:c1].sum(axis=1)
        t[idx] = ((sub * ys[r0:r1]).sum() / sub.sum() * H - y0[idx]) / h if sub.sum() > 0 else -1.0
    return t


def pad_mask_of(box: tuple[int, int, int, int], size: tuple[int, int]) -> Image.Image | None:
    """White where the output box lies outside the source (the pad), black on kept pixels; None for a crop.

    Example:
        >>> pad_mask_of((-2, 0, 4, 4), (8, 8)).getpixel((0, 0)), pad_mask_of((0, 0, 4, 4), (8, 8))
        (255, None)
    """
    x0, y0, x1, y1 = box
    W, H = size
    if x0 >= 0 and y0 >= 0 and x1 <= W and y1 <= H:
        return None
    mask = Image.new("L", (x1 - x0, y1 - y0), 255)
    mask.paste(0, (max(0, -x0), max(0, -y0), min(W, x1) - x0, min(H, y1) - y0))
    return mask


def _render(img: Image.Image, box: tuple[int, int, int, int], analysis: Analysis, fill: str,
            outpaint: Outpainter | None = None) -> Image.Image:
    x0, y0, x1, y1 = box
    W, H = img.size
    if x0 >= 0 and y0 >= 0 and x1 <= W and y1 <= H:
        return img.crop(box)
    if outpaint is not None:  # the pad starts as the mirrored edge (a start for the model) and is repainted
        start = _render(img, box, analysis, "reflect")
        mask = pad_mask_of(box, (W, H))
        assert mask is not None
        painted = outpaint(start, mask).convert("RGB")
        if painted.size != start.size:
            painted = painted.resize(start.size, Image.Resampling.LANCZOS)
        painted.paste(img.crop((max(0, x0), max(0, y0), min(W, x1), min(H, y1))), (max(0, -x0), max(0, -y0)))
        return painted
    left, top, right, bottom = max(0, -x0), max(0, -y0), max(0, x1 - W), max(0, y1 - H)
    src = np.asarray(img, dtype=np.float64)
    if fill == "blur" and analysis.mask is not None:
        # the background alone (person replaced by its surroundings' colour), spread and blurred
        mask = np.asarray(Image.fromarray(analysis.mask.astype(np.uint8) * 255).resize((W, H))) > 127
        bg_weight = (~mask).astype(np.float64)
        sigma = max(8.0, 0.08 * max(W, H))
        blur = lambda a: gaussian_filter(a, sigma, mode="nearest")  # noqa: E731
        wsum = blur(bg_weight)
        spread = np.stack([blur(src[..., c] * bg_weight) / np.maximum(wsum, 1e-6) for c in range(3)], axis=-1)
        base = np.where(mask[..., None], spread, src)
    else:
        base = src
    widths = ((top, bottom), (left, right), (0, 0))
    mode = "reflect" if max(top, bottom) < H and max(left, right) < W else "symmetric"
    padded = np.pad(base, widths, mode=mode)
    canvas = Image.fromarray(np.clip(padded, 0, 255).astype(np.uint8))
    if fill == "blur":
        canvas = canvas.filter(ImageFilter.GaussianBlur(max(6, round(0.03 * max(W, H)))))
    canvas.paste(img, (left, top))
    return canvas.crop((x0 + left, y0 + top, x1 + left, y1 + top))


def reframe(image: Image.Image | str | Path, analysis: Analysis, *, horizontal: Horizontal | None = None,
            vertical: Vertical | None = None, aspect: float | None = None, config: VisionConfig | None = None,
            verify: bool = True, crop_level: CropLevel | None = None, outpaint: Outpainter | None = None
            ) -> ReframeResult:
    """Crop (or, only when no crop can, pad) `image` so the subject sits where the targets ask, with the aspect.

    Args:
        image (PIL.Image | str | Path): the picture `analysis` was made of.
        analysis (Analysis): `portraitcraft.tools.vision.analyze(image)`.
        horizontal (str, optional): "left" | "center" | "right" (viewer's frame); None keeps the current side.
        vertical (str, optional): "upper" | "middle" | "lower"; None keeps the current height class.
        aspect (float, optional, defaults to the image's): width / height of the result.
        config (VisionConfig, optional): margin, padding limit and the asked-for synthetic fill (and the models
            for `verify`).
        verify (bool, optional, defaults to True): measure the result with the vision models and, where the
            placement reads differently than predicted (the segmenter sees a new picture), correct and retry.
        crop_level (str, optional): a TIGHTER crop level to reach by cutting the frame's bottom above the
            joints of looser crops (`can_tighten`); a looser one cannot be reached by cropping (ReframeError).
        outpaint (Outpainter, optional): a generative model that fills a pad (tools/diffusion/outpaint.py);
            without it (and without an asked-for `reframe_fill`) reframing is crop-only and an unmet target
            gives the best crop with `needs_outpainting=True`.

    Raises:
        ReframeError: no person in the image, or no crop keeps the head and the joints the crop level needs.

    Example:
        >>> result = reframe("portrait.png", analyze("portrait.png"), horizontal="left")  # doctest: +SKIP
        >>> result.crop_box, result.kept_fraction  # doctest: +SKIP
        ((96, 0, 480, 512), 0.75)
    """
    cfg = config or VisionConfig()
    img = load_image(image) if isinstance(image, str | Path) else load_image(image, name="image")
    W, H = img.size
    if analysis.subject is None or analysis.mask is None or not analysis.persons:
        raise ReframeError("no person found: there is no subject to reframe")
    if aspect is not None and not (aspect > 0 and math.isfinite(aspect)):
        raise ReframeError(f"aspect {aspect!r}: must be a positive number (width / height)")
    aspect = aspect or W / H
    measured_level = analysis.subject.crop_level
    if crop_level == measured_level:
        crop_level = None
    elif crop_level is not None and not can_tighten(measured_level, crop_level):
        raise ReframeError(f"cannot reframe to crop level {crop_level}: the picture shows a {measured_level} "
                           "shot and a crop can only tighten it")
    bias = (0.0, 0.0)
    measured = ""
    crop_only = cfg.model_copy(update={"reframe_fill": "none"})
    for _ in range(VERIFY_TRIES if verify else 1):
        result, predicted = _attempt(img, analysis, aspect, horizontal, vertical, cfg, bias, crop_level, outpaint)
        if not verify:
            return result
        from portraitcraft.tools.vision.analysis import analyze

        def meets(r: ReframeResult) -> bool:
            r.after = analyze(r.image, cfg)
            s = r.after.subject
            return (s is not None and horizontal in (None, s.horizontal) and vertical in (None, s.vertical)
                    and crop_level in (None, s.crop_level))

        if any(result.padding):  # crop before pad, measured: the nearest crop may already read as asked
            try:
                crop, _ = _attempt(img, analysis, aspect, horizontal, vertical, crop_only, bias, crop_level)
            except ReframeError:  # no crop keeps the head and the needed joints: the pad stays
                crop = None
            if crop is not None and meets(crop):
                crop.needs_outpainting = False
                return crop
        met = meets(result)
        s = result.after.subject if result.after is not None else None
        if met or result.needs_outpainting:
            result.needs_outpainting = not met  # the best crop may still read as asked
            return result
        if s is None:
            measured = "no person in the reframed picture"
            break
        ref_y = (s.face_center or s.centroid)[1]
        measured = (f"it measures {s.horizontal} / {s.vertical} (x={s.centroid[0]:.2f}, y={ref_y:.2f}), "
                    f"{s.crop_level}")
        bias = (bias[0] + s.centroid[0] - predicted[0], bias[1] + ref_y - predicted[1])
    raise ReframeError(f"cannot reframe to {_asked(horizontal, vertical, aspect, crop_level)}: the best crop "
                       f"did not hold the placement ({measured})")


def _asked(horizontal: str | None, vertical: str | None, aspect: float, level: str | None = None) -> str:
    return ", ".join(f"{k} {v}" for k, v in (("horizontal", horizontal), ("vertical", vertical),
                                             ("aspect", f"{aspect:.3g}"), ("crop level", level)) if v is not None)


def _attempt(img: Image.Image, analysis: Analysis, aspect: float, horizontal: str | None, vertical: str | None,
             cfg: VisionConfig, bias: tuple[float, float], level: str | None = None,
             outpaint: Outpainter | None = None) -> tuple[ReframeResult, tuple[float, float]]:
    W, H = img.size
    found = _search(analysis, W, H, aspect, horizontal, vertical, cfg, pad=False, bias=bias, level=level)
    if found is None and cfg.reframe_margin > 0:  # relax the margin before anything is invented
        found = _search(analysis, W, H, aspect, horizontal, vertical, cfg.model_copy(update={"reframe_margin": 0.0}),
                        pad=False, bias=bias, level=level)
    fill = "none"
    can_pad = outpaint is not None or cfg.reframe_fill != "none"
    nearest = False
    if found is None and cfg.reframe_max_pad > 0 and can_pad:
        # pad only along the axes that have a target first (no stray strip above a head), then along both
        axes = ("x" if horizontal else "") + ("y" if vertical else "")
        for pad_axes in dict.fromkeys((axes, "xy")):
            if pad_axes:
                found = _search(analysis, W, H, aspect, horizontal, vertical, cfg, pad=True, bias=bias,
                                pad_axes=pad_axes, level=level)
            if found is not None:
                break
        fill = outpaint.name if outpaint is not None else cfg.reframe_fill
    if found is None:  # crop-only: the best crop there is; the target stays open
        found = _search(analysis, W, H, aspect, horizontal, vertical, cfg, pad=False, bias=bias, level=level,
                        nearest=True)
        nearest = found is not None
    if found is None:
        assert analysis.subject is not None
        needs = level or analysis.subject.crop_level or "crop"
        raise ReframeError(f"cannot reframe to {_asked(horizontal, vertical, aspect, level)}: every crop cuts the "
                           f"subject's head or a joint a {needs} shot needs"
                           + (", or keeps a joint of a looser shot in frame" if level else "")
                           + (f", and padding would exceed {cfg.reframe_max_pad:.0%} of the picture" if can_pad
                              else ""))
    (x0, y0, w, h), fx, fy = found
    crop = (round(x0), round(y0), round(x0) + max(1, round(w)), round(y0) + max(1, round(h)))
    padding = (max(0, -crop[0]), max(0, -crop[1]), max(0, crop[2] - W), max(0, crop[3] - H))
    if not any(padding):
        fill = "none"
    kept = ((min(crop[2], W) - max(crop[0], 0)) * (min(crop[3], H) - max(crop[1], 0))) / (W * H)
    out = _render(img, crop, analysis, fill, outpaint if fill != "none" and outpaint is not None else None)
    result = ReframeResult(image=out, crop_box=crop, padding=padding, kept_fraction=round(float(kept), 4), fill=fill,
                           needs_outpainting=nearest, pad_mask=pad_mask_of(crop, (W, H)))
    return result, (fx, fy)
