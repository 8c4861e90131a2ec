"""Cheap, model-free image checks run before any model: sharpness, clipped highlights/shadows, horizon tilt, and
visible fill (a border strip a person sees as invented: blurred flat, or a mirror of what lies next to it).

All measurements are taken on a grayscale copy whose long side is `ANALYSIS_SIDE` pixels, so thresholds do
not depend on the image size.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage

from portraitcraft.tools.images import ImageInput, load_image

ANALYSIS_SIDE = 512


@dataclass(frozen=True)
class ImageChecks:
    """What the checks measured.

    Attributes:
        sharpness: variance of the Laplacian of the gray image (higher = sharper; blur drives it to ~0).
        clipped_highlights / clipped_shadows: fractions of pixels at >= 250 / <= 5 (of 255).
        tilt_deg: the angle of the dominant near-horizontal straight edge in degrees (positive = the line
            rises to the right), or None when no long straight edge dominates.
        line_strength: the share of strong edge pixels that lie on that dominant line's orientation.
        fill_fraction / fill_side / fill_kind: the widest border strip that looks filled (`visible_fill`): its
            share of the image, its side (left/right/top/bottom) and kind ("flat": almost no fine detail next
            to a detailed picture, as a blurred pad; "mirror": the mirror image of the band beside it).
    """

    sharpness: float
    clipped_highlights: float
    clipped_shadows: float
    tilt_deg: float | None
    line_strength: float
    fill_fraction: float = 0.0
    fill_side: str | None = None
    fill_kind: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def gray_array(image: ImageInput, side: int = ANALYSIS_SIDE) -> np.ndarray:
    """A float64 gray (H, W) array in 0-255 with the long side resized to `side` (never enlarged)."""
    img = load_image(image).convert("L")
    scale = side / max(img.size)
    if scale < 1:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                         Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.float64)


def laplacian_variance(gray: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian: the classic focus measure (Pech-Pacheco et al. 2000)."""
    return float(ndimage.laplace(gray, mode="reflect").var())


def clipped_fractions(gray: np.ndarray, low: float = 5.0, high: float = 250.0) -> tuple[float, float]:
    """(highlights, shadows): the fractions of pixels at or above `high` and at or below `low`."""
    return float((gray >= high).mean()), float((gray <= low).mean())


def horizon_tilt(gray: np.ndarray, *, max_angle: float = 20.0, bin_deg: float = 0.5) -> tuple[float | None, float]:
    """The dominant near-horizontal edge orientation (degrees) and its share of the strong edges.

    Strong edges (top 5% gradient magnitude) vote, weighted by magnitude, for the orientation of the line they
    lie on; only orientations within `max_angle` of horizontal count. Returns (None, share) when fewer than
    1% of the pixels are strong edges.
    """
    smooth_gray = ndimage.gaussian_filter(gray, 1.5)  # stair-stepped (aliased) lines vote for their true angle
    gy = ndimage.sobel(smooth_gray, axis=0, mode="reflect")
    gx = ndimage.sobel(smooth_gray, axis=1, mode="reflect")
    mag = np.hypot(gx, gy)
    if not mag.any():
        return None, 0.0
    strong = (mag >= np.quantile(mag, 0.95)) & (mag > 1e-6 * mag.max())
    if strong.mean() < 0.01:
        return None, 0.0
    # A horizontal line has a vertical gradient; the line's angle is the gradient's angle minus 90 degrees.
    # Image rows grow downwards, so a line rising to the right has a negative row slope: flip gy's sign.
    angle = np.degrees(np.arctan2(-gy[strong], gx[strong])) - 90.0
    angle = (angle + 90.0) % 180.0 - 90.0
    weights = mag[strong]
    near = np.abs(angle) <= max_angle
    if not near.any():
        return None, 0.0
    bins = np.arange(-max_angle, max_angle + bin_deg, bin_deg)
    hist, edges = np.histogram(angle[near], bins=bins, weights=weights[near])
    smooth = np.convolve(hist, np.ones(3), mode="same")
    peak = int(np.argmax(smooth))
    share = float(smooth[peak] / weights.sum())
    return float((edges[peak] + edges[peak + 1]) / 2), share


FLAT_ENERGY_RATIO = 0.12
"""A border strip is "flat" when its fine-detail energy is below this share of the rest of the picture's."""
SEAM_RATIO = 5.0
"""...and when the detail jumps by this factor across the strip's inner edge (a seam: a natural smooth sky
fades into detail over several lines)."""
MIRROR_CORRELATION = 0.985
"""A border strip is a "mirror" when it correlates this well with the flipped band beside it."""
MIN_STRIP = 0.03
"""Strips narrower than this share of the side are ignored (a vignette, a frame line)."""


def _strip_views(gray: np.ndarray) -> dict[str, np.ndarray]:
    """The image turned so that each side's border is its column 0."""
    return {"left": gray, "right": gray[:, ::-1], "top": gray.T, "bottom": gray[::-1, :].T}


def fill_strip(gray: np.ndarray) -> tuple[float, str | None, str | None]:
    """(fraction, side, kind) of the widest border strip that looks filled, or (0.0, None, None).

    "flat": the mean |Laplacian| of every column of the strip is under `FLAT_ENERGY_RATIO` of the median column's
    elsewhere and jumps by `SEAM_RATIO` across its inner edge (a blurred pad in a detailed photo); "mirror": the
    strip equals the mirror of the band next to it (correlation >= `MIRROR_CORRELATION`). A plain crop of a
    photo has neither.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> photo = rng.normal(128, 40, (64, 64))
        >>> fill_strip(photo)[1] is None
        True
        >>> padded = np.concatenate([np.full((64, 16), 128.0), photo], axis=1)
        >>> fill_strip(padded)[1:]
        ('left', 'flat')
    """
    energy = np.abs(ndimage.laplace(gray, mode="reflect"))
    best: tuple[float, str | None, str | None] = (0.0, None, None)
    for side, view in _strip_views(gray).items():
        e = _strip_views(energy)[side].mean(axis=0)
        n = view.shape[1]
        floor = max(2, int(MIN_STRIP * n))
        if n < 4 * floor:
            continue
        rest = float(np.median(e[n // 4:]))
        flat = 0
        while flat < n // 2 and e[flat] < FLAT_ENERGY_RATIO * rest:
            flat += 1
        seam = float(e[flat:flat + 3].mean() / max(float(e[max(0, flat - 3):flat].mean()), 1e-6)) if flat else 0.0
        if flat >= floor and rest > 1.0 and seam >= SEAM_RATIO and flat / n > best[0]:
            best = (flat / n, side, "flat")
        for w in range(n // 3, floor - 1, -1):
            if w / n <= best[0]:
                break
            if any(_mirrored(view[:, :w], view[:, w + off:2 * w + off]) for off in (0, 1)):
                best = (w / n, side, "mirror")
                break
    return best


def _mirrored(strip: np.ndarray, beside: np.ndarray) -> bool:
    a, b = strip.ravel(), beside[:, ::-1].ravel()
    if a.size != b.size or a.std() < 1e-6 or b.std() < 1e-6:
        return False
    return float(np.corrcoef(a, b)[0, 1]) >= MIRROR_CORRELATION


def softness(image: ImageInput, reference: ImageInput) -> float:
    """How much sharpness `image` keeps of `reference` (both measured at `reference`'s size): the ratio of their
    Laplacian variances, 1.0 as sharp, near 0 smeared. Used to refuse a refiner pass that softened a crop.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> photo = Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8)).convert("RGB")
        >>> softness(photo, photo)
        1.0
    """
    ref = load_image(reference)
    img = load_image(image)
    if img.size != ref.size:
        img = img.resize(ref.size, Image.Resampling.LANCZOS)
    base = laplacian_variance(gray_array(ref))
    return round(laplacian_variance(gray_array(img)) / base, 4) if base > 1e-9 else 1.0


def measure(image: ImageInput) -> ImageChecks:
    """Run every check on one image."""
    gray = gray_array(image)
    highlights, shadows = clipped_fractions(gray)
    tilt, strength = horizon_tilt(gray)
    fill, side, kind = fill_strip(gray_array(image, FILL_SIDE))
    return ImageChecks(sharpness=laplacian_variance(gray), clipped_highlights=highlights, clipped_shadows=shadows,
                       tilt_deg=tilt, line_strength=strength, fill_fraction=round(fill, 4), fill_side=side,
                       fill_kind=kind)


FILL_SIDE = 256
"""The fill check runs on a copy whose long side is this many pixels (the mirror search is quadratic)."""


@dataclass(frozen=True)
class CheckVerdict:
    """One heuristic's verdict: which check, whether it fired, the value and threshold, a confidence."""

    check: str
    detected: bool
    measured: float
    threshold: float
    confidence: float
    evidence: str


def _confidence(value: float, threshold: float) -> float:
    margin = abs(value - threshold) / max(abs(threshold), 1e-9)
    return round(min(1.0, 0.5 + margin / 2), 3)


def verdicts(checks: ImageChecks, *, min_sharpness: float, max_clipped: float, max_tilt_deg: float,
             min_line_strength: float = 0.08, max_fill: float = MIN_STRIP) -> list[CheckVerdict]:
    """Turn measurements into pass/fail verdicts for the `sharpness`, `exposure`, `horizon_tilt` and
    `visible_fill` checks."""
    out = [CheckVerdict("sharpness", checks.sharpness < min_sharpness, round(checks.sharpness, 2), min_sharpness,
                        _confidence(checks.sharpness, min_sharpness),
                        f"variance of the Laplacian {checks.sharpness:.1f} (minimum {min_sharpness:g})")]
    clipped = max(checks.clipped_highlights, checks.clipped_shadows)
    which = "highlights" if checks.clipped_highlights >= checks.clipped_shadows else "shadows"
    out.append(CheckVerdict("exposure", clipped > max_clipped, round(clipped, 4), max_clipped,
                            _confidence(clipped, max_clipped),
                            f"clipped {which} on {clipped:.1%} of the pixels (maximum {max_clipped:.0%})"))
    if checks.tilt_deg is not None and checks.line_strength >= min_line_strength:
        tilt = abs(checks.tilt_deg)
        out.append(CheckVerdict("horizon_tilt", tilt > max_tilt_deg and not math.isclose(tilt, 0.0),
                                round(checks.tilt_deg, 2), max_tilt_deg, _confidence(tilt, max_tilt_deg),
                                f"dominant straight edge at {checks.tilt_deg:+.1f} degrees "
                                f"({checks.line_strength:.0%} of the strong edges)"))
    seen = checks.fill_side is not None and checks.fill_fraction >= max_fill
    out.append(CheckVerdict("visible_fill", seen, round(checks.fill_fraction, 4), max_fill,
                            0.9 if seen else 0.6,
                            f"a {checks.fill_kind} strip on the {checks.fill_side} ({checks.fill_fraction:.0%} of the "
                            "picture) looks filled, not photographed" if seen else "no filled border strip"))
    return out


__all__ = ["CheckVerdict", "ImageChecks", "clipped_fractions", "fill_strip", "gray_array", "horizon_tilt",
           "laplacian_variance", "measure", "softness", "verdicts"]
