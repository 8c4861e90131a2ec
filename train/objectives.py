"""The training objectives: flow-matching SFT and Diffusion-DPO for flow matching.

SFT: x_sigma = (1 - sigma) x0 + sigma noise, loss = ||v_theta(x_sigma, sigma, c) - (noise - x0)||^2 (mean).

DPO (Diffusion-DPO adapted to flow matching; the chosen w and rejected l share one noise and one sigma):
    e_m(x) = ||v_m(x_sigma) - (noise - x)||^2 averaged over the latent, m in {policy, ref}
    z      = -beta/2 * ((e_policy(w) - e_ref(w)) - (e_policy(l) - e_ref(l)))
    loss   = -log sigmoid(z)                                       (hard pairs, label_mode "hard")
    loss   = -(p log sigmoid(z) + (1 - p) log sigmoid(-z))         (label_mode "soft": p = P(w preferred), the
             NaSPO probability of the pairs export: the expected loss over which side is preferred; p = 1 is
             the hard loss)
The reference is the policy with its LoRA disabled; at step 0 the two are equal, z = 0 and loss = ln 2.
Logged: reward_accuracy = share of pairs with z > 0 (the policy's margin of chosen over rejected above the
reference's), reward_margin = mean z.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from portraitcraft.config import TrainConfig
from portraitcraft.train.cache import Batch
from portraitcraft.train.models import FlowModel

SIGMA_MIN = 1e-4


def sample_sigmas(n: int, cfg: TrainConfig, generator: torch.Generator) -> torch.Tensor:
    """n noise levels in (0, 1]: uniform or logit-normal (sigmoid of N(logit_mean, logit_std)), then shifted."""
    if cfg.timestep_sampling == "uniform":
        u = torch.rand(n, generator=generator)
    else:
        u = torch.sigmoid(torch.randn(n, generator=generator) * cfg.logit_std + cfg.logit_mean)
    if cfg.timestep_shift != 1.0:
        u = cfg.timestep_shift * u / (1 + (cfg.timestep_shift - 1) * u)
    return u.clamp(SIGMA_MIN, 1.0)


def add_noise(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """x_sigma = (1 - sigma) x0 + sigma noise (FlowMatchEulerDiscreteScheduler.scale_noise)."""
    s = sigma.view(-1, *([1] * (x0.dim() - 1))).to(x0)
    return (1.0 - s) * x0 + s * noise


def per_sample_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ((pred.float() - target.float()) ** 2).flatten(1).mean(dim=1)


def sft_loss(model: FlowModel, batch: Batch, cfg: TrainConfig, generator: torch.Generator) -> tuple[Any, dict]:
    """Flow-matching loss of one micro-batch (latents (N, 1, C, h, w))."""
    x0 = batch.latents[:, 0]
    noise = torch.randn(x0.shape, generator=generator).to(x0.device)
    sigma = sample_sigmas(x0.shape[0], cfg, generator).to(x0.device)
    pred = model.velocity(add_noise(x0, noise, sigma), sigma, batch.embeds)
    loss = per_sample_mse(pred, noise - x0).mean()
    return loss, {"loss": float(loss.detach())}


def dpo_terms(e_policy: torch.Tensor, e_ref: torch.Tensor, p_chosen: torch.Tensor, beta: float,
              label_mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-pair loss, per-pair z) from errors laid out [chosen..., rejected...] (2N each)."""
    n = p_chosen.shape[0]
    e_pw, e_pl = e_policy[:n], e_policy[n:]
    e_rw, e_rl = e_ref[:n], e_ref[n:]
    z = -0.5 * beta * ((e_pw - e_rw) - (e_pl - e_rl))
    p = p_chosen if label_mode == "soft" else torch.ones_like(p_chosen)
    loss = -(p * F.logsigmoid(z) + (1.0 - p) * F.logsigmoid(-z))
    return loss, z


def dpo_loss(model: FlowModel, batch: Batch, cfg: TrainConfig, generator: torch.Generator) -> tuple[Any, dict]:
    """Diffusion-DPO loss of one micro-batch of pairs (latents (N, 2, C, h, w): chosen, rejected)."""
    n = batch.latents.shape[0]
    x_w, x_l = batch.latents[:, 0], batch.latents[:, 1]
    noise = torch.randn(x_w.shape, generator=generator).to(x_w.device)
    sigma = sample_sigmas(n, cfg, generator).to(x_w.device)
    x0 = torch.cat([x_w, x_l])
    noise2, sigma2 = torch.cat([noise, noise]), torch.cat([sigma, sigma])
    noisy, target = add_noise(x0, noise2, sigma2), noise2 - x0
    embeds = list(batch.embeds) + list(batch.embeds)
    control = torch.cat([batch.control, batch.control]) if batch.control is not None else None
    args = (noisy, sigma2, embeds, control, cfg.controlnet_scale)
    with torch.no_grad(), model.adapters_disabled():  # reference first: toggling adapters never touches a graph
        e_ref = per_sample_mse(model.velocity(*args), target)
    e_policy = per_sample_mse(model.velocity(*args), target)
    loss_pairs, z = dpo_terms(e_policy, e_ref, batch.p_chosen, cfg.beta, cfg.label_mode)
    loss = loss_pairs.mean()
    metrics = {"dpo_loss": float(loss.detach())}
    if cfg.sft_weight > 0:
        sft = e_policy[:n].mean()
        loss = loss + cfg.sft_weight * sft
        metrics["sft_loss"] = float(sft.detach())
    z = z.detach()
    metrics.update(loss=float(loss.detach()), reward_accuracy=float((z > 0).float().mean()),
                   reward_margin=float(z.mean()))
    return loss, metrics
