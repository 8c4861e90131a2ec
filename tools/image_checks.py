"""Cheap, model-free image checks run before any model: sharpness, clipped highlights/shadows, horizon tilt.

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
    """

    sharpness: float
    clipped_highlights: float
    clipped_shadows: float
    tilt_deg: float | None
    line_strength: float

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


def measure(image: ImageInput) -> ImageChecks:
    """Run every check on one image."""
    gray = gray_array(image)
    highlights, shadows = clipped_fractions(gray)
    tilt, strength = horizon_tilt(gray)
    return ImageChecks(sharpness=laplacian_variance(gray), clipped_highlights=highlights, clipped_shadows=shadows,
                       tilt_deg=tilt, line_strength=strength)


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
             min_line_strength: float = 0.08) -> list[CheckVerdict]:
    """Turn measurements into pass/fail verdicts for the `sharpness`, `exposure` and `horizon_tilt` checks."""
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
    return out


__all__ = ["CheckVerdict", "ImageChecks", "clipped_fractions", "gray_array", "horizon_tilt", "laplacian_variance",
           "measure", "verdicts"]
