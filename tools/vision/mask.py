"""Person mask: mediapipe selfie segmentation (bundled weights), one probability per pixel for all people.

The segmenter also fires on things that are not people (about a quarter of a coffee-cup photo), so its
mask only counts where a pose or a face detection says there is a person (`portraitcraft.tools.vision.analysis`).
"""

from __future__ import annotations

import numpy as np

from portraitcraft.tools.vision import models


def _segmenter() -> object:
    mp = models.import_mediapipe()

    return models.warmed(mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0))


def person_probability(rgb: np.ndarray) -> np.ndarray:
    """Per-pixel person probability (float32, H x W, 0-1) for an RGB uint8 image (H, W, 3).

    Example:
        >>> import numpy as np
        >>> person_probability(np.zeros((32, 48, 3), np.uint8)).shape
        (32, 48)
    """
    with models.use(("mediapipe", "selfie_segmentation"), _segmenter) as seg:
        result = seg.process(np.ascontiguousarray(rgb))
    prob = result.segmentation_mask
    if prob is None:
        return np.zeros(rgb.shape[:2], np.float32)
    return np.clip(np.asarray(prob, np.float32), 0.0, 1.0)


def person_mask(rgb: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Boolean person mask (H x W): the union of every person the segmenter sees."""
    return person_probability(rgb) >= threshold
