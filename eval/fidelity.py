"""Region-aware fidelity for `portraitcraft eval fidelity`: the pure metrics live in tools/fidelity.py (the
editor's drift guard uses them too, and agents never import eval); this module keeps the eval-side names."""

from portraitcraft.tools.fidelity import (  # noqa: F401  (re-exported)
    ALEXNET_WEIGHTS,
    LPIPS_MIN_SIDE,
    FidelityReport,
    ImageLike,
    _lpips_model,
    delta_e,
    edit_drift,
    lpips_region,
    psnr,
    ssim,
    to_mask,
    to_rgb_array,
)
