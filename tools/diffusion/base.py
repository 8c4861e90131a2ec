"""The two backend protocols (generate, edit), their per-call parameters and the backend error type.

Nothing here imports torch: the remote backend and callers that only type-check against the protocols work
without the `diffusion` extra.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from numbers import Integral
from typing import Any, Protocol, runtime_checkable

from PIL import Image

from portraitcraft.errors import InputError, PortraitcraftError

Keypoints = Sequence[Sequence[float]]
"""One person's COCO-17 keypoints: 17 rows of (x, y) or (x, y, score) in canvas pixels."""


class DiffusionError(PortraitcraftError):
    """A backend cannot load its model or run a call (worded for the user, names the model)."""


@dataclass(frozen=True, kw_only=True)
class GenParams:
    """Per-call overrides of a backend's configured defaults; `None` keeps the config value.

    Args:
        steps (int, optional): denoising steps.
        guidance_scale (float, optional): CFG for Z-Image (`guidance_scale`); Turbo runs 0.0.
        true_cfg_scale (float, optional): CFG for Qwen-Image / Qwen-Image-Edit (needs a negative prompt).
        negative_prompt (str, optional): the negative prompt (Qwen needs one, even " ", for true CFG).
        strength (float, optional): img2img / SDEdit strength in (0, 1].
        max_sequence_length (int, optional): text tokens kept by the text encoder.
        pose (list of keypoint sets, optional): COCO-17 keypoints (one entry per person) rendered into the pose
            ControlNet's control image; needs `controlnet` in the backend config.
        control_image (PIL.Image, optional): a ready control image instead of `pose`.
        controlnet_scale (float, optional): ControlNet conditioning scale.
        width, height (int, optional): output size of an edit (default: the input image's size).
        reference_images (list of PIL.Image, optional): extra images for Qwen-Image-Edit-Plus (2509/2511).
        extra (dict, optional): extra keyword arguments passed to the pipeline call as they are.

    Example:
        >>> GenParams(steps=4, guidance_scale=0.0).merged(GenParams(steps=8)).steps
        8
    """

    steps: int | None = None
    guidance_scale: float | None = None
    true_cfg_scale: float | None = None
    negative_prompt: str | None = None
    strength: float | None = None
    max_sequence_length: int | None = None
    pose: Sequence[Keypoints] | None = None
    control_image: Image.Image | None = None
    controlnet_scale: float | None = None
    width: int | None = None
    height: int | None = None
    reference_images: Sequence[Image.Image] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Refuse values no pipeline accepts, naming the field (diffusers would fail deep inside the call)."""
        checks = (
            ("steps", self.steps, lambda v: isinstance(v, Integral) and v >= 1, "an integer >= 1"),
            ("strength", self.strength, lambda v: 0 < v <= 1, "in (0, 1]"),
            ("guidance_scale", self.guidance_scale, lambda v: v >= 0, ">= 0"),
            ("true_cfg_scale", self.true_cfg_scale, lambda v: v >= 0, ">= 0"),
            ("controlnet_scale", self.controlnet_scale, lambda v: v >= 0, ">= 0"),
            ("max_sequence_length", self.max_sequence_length, lambda v: isinstance(v, Integral) and v >= 1,
             "an integer >= 1"),
            ("width", self.width, lambda v: isinstance(v, Integral) and v > 0, "a positive integer"),
            ("height", self.height, lambda v: isinstance(v, Integral) and v > 0, "a positive integer"),
        )
        for name, value, ok, wanted in checks:
            if value is None:
                continue
            try:
                valid = not isinstance(value, bool) and bool(ok(value))
            except TypeError:
                valid = False
            if not valid:
                raise InputError(f"generation parameter {name}={value!r} is not valid: must be {wanted}")

    def merged(self, other: GenParams | None) -> GenParams:
        """These params with every non-None field of `other` laid on top (`extra` dicts merged)."""
        if other is None:
            return self
        changes = {
            name: getattr(other, name)
            for name in self.__dataclass_fields__
            if name != "extra" and getattr(other, name) is not None
        }
        return replace(self, **changes, extra={**self.extra, **other.extra})


@runtime_checkable
class ImageGenerator(Protocol):
    """Text-to-image: `generate(prompt, width, height, seed, params) -> PIL image` (metadata attached)."""

    def generate(
        self, prompt: str, width: int, height: int, seed: int, params: GenParams | None = None
    ) -> Image.Image: ...


@runtime_checkable
class ImageEditor(Protocol):
    """Instruction editing: `edit(image, instruction, seed, params) -> PIL image` (metadata attached)."""

    def edit(
        self, image: Image.Image, instruction: str, seed: int, params: GenParams | None = None
    ) -> Image.Image: ...


def check_size(width: int, height: int, multiple: int, *, model: str) -> None:
    """Raise `InputError` unless width and height are positive multiples of `multiple`.

    Example:
        >>> check_size(64, 48, 16, model="tiny")
    """
    if not all(isinstance(v, Integral) and not isinstance(v, bool) for v in (width, height)):
        raise InputError(f"image size {width!r}x{height!r} is not valid for {model}: sides must be integers")
    if width <= 0 or height <= 0 or width % multiple or height % multiple:
        raise InputError(
            f"image size {width}x{height} is not valid for {model}: both sides must be positive multiples of "
            f"{multiple} (the planner's `multiple` setting rounds canvases to this)"
        )


SEED_RANGE = (-(2**63), 2**64 - 1)
"""Seeds `torch.Generator.manual_seed` accepts."""


def check_seed(seed: int) -> int:
    """Return `seed` as an int; raise `InputError` unless it is an integer in `SEED_RANGE`.

    Example:
        >>> check_seed(7)
        7
    """
    if isinstance(seed, bool) or not isinstance(seed, Integral) or not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
        raise InputError(f"seed {seed!r} is not valid: must be an integer in [-2**63, 2**64 - 1]")
    return int(seed)


def check_prompt(prompt: str, *, what: str = "prompt") -> str:
    """Return the prompt stripped; raise `InputError` when it is empty."""
    if prompt is not None and not isinstance(prompt, str):
        raise InputError(f"the {what} must be text, not {type(prompt).__name__}")
    text = (prompt or "").strip()
    if not text:
        raise InputError(f"the {what} is empty")
    return text
