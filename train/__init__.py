"""LoRA training on this project's data: SFT on Track 2 items, pose-conditioned Diffusion-DPO on the exported
preference pairs (flow matching, Z-Image / Qwen-Image), and the critic served as a reward for online RL.

Modules: data (items, pairs, buckets), cache (latents and text embeddings on disk), models (the per-family
forward pass in the scheduler's convention, LoRA), objectives (SFT and DPO losses), runner (accelerate loop,
checkpoints, metrics), validate, scorers + reward_server. Importing `train` loads no torch.
"""

from portraitcraft.errors import PortraitcraftError


class TrainError(PortraitcraftError):
    """A training run cannot start or go on (worded for the user: names the model, file or key)."""


__all__ = ["TrainError"]
