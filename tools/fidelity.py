"""Region-aware fidelity (NTIRE 2026 AI Flash Portrait metrics): how much an edit changed what it should not.

- PSNR over the background (pixels outside the person mask): background drift.
- SSIM over the whole image (Wang et al. 2004: 11-tap Gaussian window, sigma 1.5, per channel, averaged).
- CIEDE2000 over the person region (mean per-pixel colour difference): identity/skin-tone drift.
- LPIPS over the person region, only when the `lpips` package AND its AlexNet backbone weights are on disk
  (no download is attempted); otherwise reported as unavailable, never estimated.

The challenge combines them with unpublished weights; we report the raw metrics only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage

from portraitcraft.errors import InputError
from portraitcraft.tools.colour_difference import ciede2000, srgb_to_lab
from portraitcraft.tools.images import load_image
from portraitcraft.tools.vision.models import use

ImageLike = str | Path | Image.Image | np.ndarray
ALEXNET_WEIGHTS = "alexnet-owt-7be5be79.pth"
"""The torchvision AlexNet checkpoint file that lpips' default backbone loads."""
LPIPS_MIN_SIDE = 32


@dataclass
class FidelityReport:
    """The drift between two images of one size, by region (mask: nonzero = person)."""

    psnr_background: float | None
    """dB; inf when the background is unchanged; None when the mask leaves no background."""
    ssim_global: float
    delta_e_person: float | None
    """Mean CIEDE2000 over person pixels; None when the mask is empty."""
    lpips_person: float | None
    lpips_status: str
    """"ok", or "unavailable: <why>"."""
    person_fraction: float
    size: tuple[int, int]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe data: an infinite PSNR becomes null with a note."""
        psnr = self.psnr_background
        notes = list(self.notes)
        if psnr is not None and math.isinf(psnr):
            psnr = None
            notes.append("background pixels are identical: PSNR is infinite (shown as null)")
        return {
            "psnr_background": psnr,
            "ssim_global": self.ssim_global,
            "delta_e_person": self.delta_e_person,
            "lpips_person": self.lpips_person,
            "lpips_status": self.lpips_status,
            "person_fraction": self.person_fraction,
            "size": list(self.size),
            "notes": notes,
        }


def to_rgb_array(img: ImageLike, *, name: str = "image") -> np.ndarray:
    """An (H, W, 3) float64 array in 0-255 from a path, a PIL image or an array (gray is repeated)."""
    if isinstance(img, np.ndarray):
        arr = np.asarray(img, dtype=np.float64)
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        if arr.ndim != 3 or arr.shape[2] not in (3, 4):
            raise InputError(f"{name}: expected an (H, W, 3) array, got shape {arr.shape}")
        return arr[..., :3]
    return np.asarray(load_image(img, name=f"{name} {img}" if isinstance(img, str | Path) else name),
                      dtype=np.float64)


def _open_mask(mask: str | Path | Image.Image, name: str) -> Image.Image:
    """Masks are opened as they are (not through load_image, which composites alpha onto white)."""
    if isinstance(mask, Image.Image):
        return mask
    path = Path(mask)
    try:
        with Image.open(path) as im:
            im.load()
            return im.copy()
    except FileNotFoundError:
        raise InputError(f"{name} {path}: file does not exist") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{name} {path}: not a readable image ({exc})") from None


def to_mask(mask: ImageLike, size: tuple[int, int], *, name: str = "mask") -> np.ndarray:
    """A boolean (H, W) person mask. 0/1 masks: nonzero is person; 0-255 masks: >= 128 is person.

    Args:
        mask: a path, PIL image or array (RGB masks are converted to gray).
        size (tuple[int, int]): the (width, height) the mask must have.
    """
    if isinstance(mask, np.ndarray):
        arr = np.asarray(mask)
        if arr.ndim == 3:
            arr = arr.max(axis=2)
    else:
        arr = np.asarray(_open_mask(mask, name).convert("L"))
    if arr.ndim != 2 or (arr.shape[1], arr.shape[0]) != tuple(size):
        raise InputError(f"{name}: size {arr.shape[1::-1]} does not match the image size {tuple(size)}")
    if arr.dtype == bool:
        return arr
    return arr > 0 if float(arr.max(initial=0)) <= 1 else arr >= 128


def psnr(a: np.ndarray, b: np.ndarray, region: np.ndarray | None = None, data_range: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB over the pixels of `region` (all pixels when None); inf if equal.

    Example:
        >>> round(psnr(np.zeros((2, 2, 3)), np.full((2, 2, 3), 255.0)), 3)
        0.0
    """
    diff = (np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))
    if region is not None:
        diff = diff[region]
    if diff.size == 0:
        raise ValueError("psnr: the region is empty")
    mse = float(np.mean(diff**2))
    return math.inf if mse == 0 else 10 * math.log10(data_range**2 / mse)


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255.0, sigma: float = 1.5) -> float:
    """Mean SSIM of two (H, W[, C]) images: Gaussian-weighted statistics, averaged over channels.

    Border pixels within the window radius are left out of the mean, as in Wang et al.'s reference code.
    """
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"ssim: shapes differ {x.shape} vs {y.shape}")
    if x.ndim == 2:
        x, y = x[..., None], y[..., None]
    truncate = 3.5
    pad = int(truncate * sigma + 0.5)
    if min(x.shape[:2]) < 2 * pad + 1:
        raise ValueError(f"ssim: images must be at least {2 * pad + 1} pixels on each side")
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2

    def blur(z: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(z, sigma=(sigma, sigma, 0), truncate=truncate, mode="reflect")

    ux, uy = blur(x), blur(y)
    vx = blur(x * x) - ux * ux
    vy = blur(y * y) - uy * uy
    vxy = blur(x * y) - ux * uy
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    return float(s[pad:-pad, pad:-pad].mean(dtype=np.float64))


def delta_e(a: np.ndarray, b: np.ndarray, region: np.ndarray | None = None) -> float:
    """Mean CIEDE2000 difference between two sRGB (0-255) images over `region` (all pixels when None)."""
    pa, pb = (a, b) if region is None else (a[region], b[region])
    if pa.size == 0:
        raise ValueError("delta_e: the region is empty")
    return float(ciede2000(srgb_to_lab(pa), srgb_to_lab(pb)).mean())


LPIPS_KEY = ("lpips", "alex")
"""Its key in the one per-process model cache (portraitcraft.tools.vision.models)."""


def _load_lpips() -> tuple[Any, str]:
    """The LPIPS(alex) model and "ok", or (None, "unavailable: <why>"); never downloads anything."""
    try:
        import lpips
        import torch
    except ImportError as exc:
        return None, f"unavailable: the lpips package (with torch) is not installed ({exc.name})"
    weights = Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_WEIGHTS
    if not weights.is_file():
        return None, f"unavailable: the AlexNet backbone weights are not on disk ({weights})"
    try:
        model = lpips.LPIPS(net="alex", verbose=False).eval()
    except Exception as exc:  # a broken torchvision or lpips install must not stop the other metrics
        return None, f"unavailable: lpips failed to load ({type(exc).__name__}: {exc})"
    return model, "ok"


def lpips_region(a: np.ndarray, b: np.ndarray, region: np.ndarray) -> tuple[float | None, str]:
    """LPIPS on the bounding box of `region`; pixels outside the region are taken from `a` on both sides."""
    with use(LPIPS_KEY, _load_lpips) as (model, status):
        if model is None:
            return None, status
        return _lpips_on_box(model, a, b, region)


def _lpips_on_box(model: Any, a: np.ndarray, b: np.ndarray, region: np.ndarray) -> tuple[float | None, str]:
    rows, cols = np.nonzero(region)
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    if min(bottom - top, right - left) < LPIPS_MIN_SIDE:
        return None, f"unavailable: the person region is smaller than {LPIPS_MIN_SIDE} pixels on a side"
    import torch

    crop_a = a[top:bottom, left:right]
    crop_b = np.where(region[top:bottom, left:right, None], b[top:bottom, left:right], crop_a)

    def tensor(z: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(z / 127.5 - 1.0).permute(2, 0, 1)[None].float()

    with torch.no_grad():
        return float(model(tensor(crop_a), tensor(crop_b)).item()), "ok"


def edit_drift(
    before: ImageLike,
    after: ImageLike,
    mask: ImageLike,
    *,
    resize: bool = False,
    with_lpips: bool = True,
) -> FidelityReport:
    """Region-aware drift between an image and its edit.

    Args:
        before: the image before the edit (path, PIL image or (H, W, 3) array in 0-255).
        after: the edited image; must have the same size unless `resize`.
        mask: the person mask of `before` (nonzero / >= 128 = person), same size as `before`.
        resize (bool, optional, defaults to False): resize `after` to `before`'s size (bicubic) when they
            differ, for editors that rescale their input.
        with_lpips (bool, optional, defaults to True): try LPIPS (reported unavailable when it cannot run).

    Raises:
        InputError: unreadable images, a size mismatch (without `resize`), images under 11 pixels on a side
            (the SSIM window), or a mask of another size.

    Example:
        >>> rep = edit_drift("draft.png", "edited.png", "person_mask.png")  # doctest: +SKIP
        >>> rep.psnr_background, rep.delta_e_person  # doctest: +SKIP
        (34.2, 1.7)
    """
    a = to_rgb_array(before, name="before")
    b = to_rgb_array(after, name="after")
    if resize and a.shape != b.shape:
        img = Image.fromarray(np.clip(np.rint(b), 0, 255).astype(np.uint8))
        b = np.asarray(img.resize((a.shape[1], a.shape[0]), Image.Resampling.BICUBIC), dtype=np.float64)
    if a.shape != b.shape:
        raise InputError(
            f"after: size {b.shape[1]}x{b.shape[0]} differs from before {a.shape[1]}x{a.shape[0]} "
            "(pass resize=True / --resize to compare anyway)"
        )
    size = (a.shape[1], a.shape[0])
    try:
        ssim_global = ssim(a, b)
    except ValueError as exc:  # too small for the SSIM window
        raise InputError(f"before/after: {size[0]}x{size[1]} images are too small ({exc})") from None
    person = to_mask(mask, size)
    background = ~person
    notes: list[str] = []
    if not person.any():
        notes.append("the mask marks no person pixels: person metrics are null")
    if not background.any():
        notes.append("the mask covers the whole image: background PSNR is null")
    if person.any() and with_lpips:
        lp, status = lpips_region(a, b, person)
    else:
        lp, status = None, "unavailable: not requested" if not with_lpips else "unavailable: empty person mask"
    return FidelityReport(
        psnr_background=psnr(a, b, background) if background.any() else None,
        ssim_global=ssim_global,
        delta_e_person=delta_e(a, b, person) if person.any() else None,
        lpips_person=lp,
        lpips_status=status,
        person_fraction=float(person.mean()),
        size=size,
        notes=notes,
    )
