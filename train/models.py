"""The model being trained: one flow-matching forward pass per family, in the scheduler's own convention.

Both families use diffusers' FlowMatchEulerDiscreteScheduler: x_sigma = (1 - sigma) * x0 + sigma * noise
(`scheduler.scale_noise`), and its Euler step x_next = x + (sigma_next - sigma) * v with the velocity
v = noise - x0. `FlowModel.velocity` returns that v whatever the transformer's own output is:
- Z-Image: the transformer takes t = 1 - sigma and predicts -v (its pipeline negates the output);
- Qwen-Image: the transformer takes t = sigma on packed 2x2 latents and predicts v.
Latents are normalised as each pipeline's decoder expects ((z - shift) * scale for Z-Image's AutoencoderKL,
(z - mean) / std for Qwen-Image's), text embeddings come from the pipeline's own `encode_prompt`.

The LoRA is a peft adapter on the transformer; the DPO reference is the same transformer with its adapters
disabled, so no second copy is held.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from portraitcraft.train import TrainError

FAMILIES = {"ZImagePipeline": "zimage", "QwenImagePipeline": "qwen-image"}
ADAPTER = "default"


def _linear_names(module: torch.nn.Module) -> list[str]:
    return [name for name, m in module.named_modules() if isinstance(m, torch.nn.Linear | torch.nn.Conv2d)]


def check_lora_targets(transformer: torch.nn.Module, targets: Sequence[str], *, model: str) -> None:
    """Raise TrainError unless every target names (exactly, or as a dotted suffix) a linear layer.

    peft only fails when NO target matches; a misspelt one next to a good one would silently train less.
    """
    names = _linear_names(transformer)
    for target in targets:
        if not any(n == target or n.endswith("." + target) for n in names):
            leaves = sorted({".".join(n.split(".")[-2:]) if n.split(".")[-1].isdigit() else n.split(".")[-1]
                             for n in names})
            raise TrainError(
                f"LoRA target {target!r} matches no linear layer of {type(transformer).__name__} ({model}); "
                f"set [train] lora_targets from its layer names: {', '.join(leaves[:40])}"
            )


class FlowModel:
    """A loaded pipeline with the per-family training forward pass, encoders (counted) and the LoRA.

    Args:
        pipe (DiffusionPipeline): a ZImagePipeline or QwenImagePipeline.
        model (str): what was loaded (for messages and cache keys).
        device (torch.device): where the forward passes run.

    Example:
        >>> fm = FlowModel.load("~/.cache/portraitcraft/tiny-models/zimage-v2", device="cpu")  # doctest: +SKIP
        >>> fm.add_lora(rank=4, alpha=4, targets=["to_q", "to_v"])  # doctest: +SKIP
    """

    def __init__(self, pipe: Any, model: str, device: torch.device | str) -> None:
        name = type(pipe).__name__
        if name not in FAMILIES:
            raise TrainError(f"model {model!r} is a {name}; training supports {', '.join(FAMILIES)}")
        self.pipe = pipe
        self.family = FAMILIES[name]
        self.model = model
        self.device = torch.device(device)
        self.transformer = pipe.transformer
        self.vae = pipe.vae
        self.text_encoder = pipe.text_encoder
        self.controlnet: Any = None
        self.denoiser: Any = self.transformer  # the transformer as the forward pass calls it (DDP-wrapped)
        self._disabled = 0
        self.forwards = {"vae": 0, "text_encoder": 0, "controlnet": 0}
        self.vae.encoder.register_forward_hook(lambda *_: self._count("vae"))
        self.text_encoder.register_forward_hook(lambda *_: self._count("text_encoder"))
        for module in (self.transformer, self.vae, self.text_encoder):
            module.requires_grad_(False)
        self.vae.to(self.device).eval()
        self.text_encoder.to(self.device).eval()
        self.transformer.to(self.device)

    def _count(self, name: str) -> None:
        self.forwards[name] += 1

    @classmethod
    def load(cls, model: str, *, device: torch.device | str, dtype: str = "float32") -> FlowModel:
        """Load `model` (a diffusers folder or hub id) through the generation tools' loader."""
        from portraitcraft.config import DiffusionConfig
        from portraitcraft.tools.diffusion.loading import load_pipeline

        if model.startswith("~"):
            model = str(Path(model).expanduser())
        pipe = load_pipeline(DiffusionConfig(model=model, dtype=dtype, device=str(device)))
        return cls(pipe, model, device)

    # --- identity, sizes -----------------------------------------------------------------------------------

    @property
    def multiple(self) -> int:
        """Image sides must be multiples of this (VAE factor x 2: 16 for the real models)."""
        from portraitcraft.tools.diffusion.loading import vae_multiple

        return vae_multiple(self.pipe)

    def identity(self, part: str) -> str:
        """A string naming the weights of `part` ("vae", "text_encoder", "controlnet") for cache keys."""
        module = {"vae": self.vae, "text_encoder": self.text_encoder, "controlnet": self.controlnet}[part]
        config = getattr(module, "config", {})
        config = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        return json.dumps([self.model, part, type(module).__name__, str(next(module.parameters()).dtype),
                           config], sort_keys=True, default=str)

    # --- encoders ------------------------------------------------------------------------------------------

    @torch.no_grad()
    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [-1, 1] -> normalised latents (N, C, H/f, W/f), float32 (the distribution's mode)."""
        x = pixels.to(self.device, self.vae.dtype)
        if self.family == "zimage":
            z = self.vae.encode(x).latent_dist.mode()
            return ((z - self.vae.config.shift_factor) * self.vae.config.scaling_factor).float()
        z = self.vae.encode(x.unsqueeze(2)).latent_dist.mode()[:, :, 0]
        mean = torch.tensor(self.vae.config.latents_mean, device=z.device, dtype=z.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.vae.config.latents_std, device=z.device, dtype=z.dtype).view(1, -1, 1, 1)
        return ((z - mean) / std).float()

    @torch.no_grad()
    def encode_prompts(self, prompts: Sequence[str], max_sequence_length: int) -> list[torch.Tensor]:
        """One (tokens, dim) embedding per prompt, as the pipeline's `encode_prompt` makes it (no padding)."""
        if self.family == "zimage":
            embeds, _ = self.pipe.encode_prompt(list(prompts), device=self.device, do_classifier_free_guidance=False,
                                                max_sequence_length=max_sequence_length)
            return [e.float() for e in embeds]
        embeds, mask = self.pipe.encode_prompt(list(prompts), device=self.device,
                                               max_sequence_length=max_sequence_length)
        if mask is None:
            return [e.float() for e in embeds]
        return [e[m.bool()].float() for e, m in zip(embeds, mask, strict=True)]

    # --- ControlNet (Z-Image Fun-Controlnet-Union, frozen) ---------------------------------------------------

    def attach_controlnet(self, source: str, dtype: str) -> None:
        """Load the pose ControlNet frozen and wire it to the transformer's shared embedders (as the pipeline)."""
        if self.family != "zimage":
            raise TrainError(f"pose conditioning uses the Z-Image Fun-Controlnet-Union; {self.model!r} is "
                             f"{self.family}: set [train] pose = false")
        from diffusers import ZImageControlNetModel

        from portraitcraft.tools.diffusion.loading import torch_dtype

        source = str(Path(source).expanduser())
        try:
            controlnet = ZImageControlNetModel.from_pretrained(source, dtype=torch_dtype(dtype))
        except (OSError, ValueError) as exc:
            raise TrainError(f"pose ControlNet {source!r} could not be loaded: {exc}") from None
        controlnet = ZImageControlNetModel.from_transformer(controlnet, self.transformer)
        controlnet.requires_grad_(False)
        if not hasattr(controlnet, "gradient_checkpointing"):  # read by its forward whenever grad is on
            controlnet.gradient_checkpointing = False
        controlnet.register_forward_hook(lambda *_: self._count("controlnet"))
        self.controlnet = controlnet.to(self.device).eval()

    def control_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Encoded control images padded with zero channels to the ControlNet's control_in_dim."""
        extra = self.controlnet.config.control_in_dim - latents.shape[1]
        if extra > 0:
            latents = torch.cat([latents, latents.new_zeros(latents.shape[0], extra, *latents.shape[2:])], dim=1)
        return latents

    # --- the forward pass ----------------------------------------------------------------------------------

    def velocity(self, noisy: torch.Tensor, sigma: torch.Tensor, embeds: Sequence[torch.Tensor],
                 control: torch.Tensor | None = None, control_scale: float = 0.75) -> torch.Tensor:
        """The predicted velocity v = noise - x0 for latents `noisy` (N, C, h, w) at noise levels `sigma` (N,).

        Args:
            embeds (list of Tensor): one (tokens, dim) text embedding per sample.
            control (Tensor, optional): (N, C, h, w) encoded control images (Z-Image with a ControlNet).
            control_scale (float, optional, defaults to 0.75): ControlNet conditioning scale.
        """
        dtype = self.transformer.dtype
        embeds = [e.to(self.device, dtype) for e in embeds]
        if self.family == "zimage":
            x = list(noisy.to(dtype).unsqueeze(2).unbind(0))
            t = (1.0 - sigma).to(self.device, dtype)
            extra: dict[str, Any] = {}
            if control is not None:
                if self.controlnet is None:
                    raise TrainError("a control image was given but no ControlNet is attached")
                ctrl = list(self.control_latents(control).to(dtype).unsqueeze(2).unbind(0))
                extra["controlnet_block_samples"] = self.controlnet(x, t, embeds, ctrl,
                                                                    conditioning_scale=control_scale)
            out = self.denoiser(x, t, embeds, return_dict=False, **extra)[0]
            return -torch.stack([o.float() for o in out]).squeeze(2)
        n, c, h, w = noisy.shape
        packed = noisy.to(dtype).view(n, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(n, -1, c * 4)
        length = max(e.shape[0] for e in embeds)
        text = torch.stack([torch.cat([e, e.new_zeros(length - e.shape[0], e.shape[1])]) for e in embeds])
        mask = torch.stack([torch.arange(length, device=self.device) < e.shape[0] for e in embeds]).long()
        out = self.denoiser(hidden_states=packed, timestep=sigma.to(self.device, dtype), encoder_hidden_states=text,
                               encoder_hidden_states_mask=None if bool(mask.all()) else mask,
                               img_shapes=[[(1, h // 2, w // 2)]] * n, return_dict=False)[0]
        return out.float().view(n, h // 2, w // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(n, c, h, w)

    # --- LoRA ----------------------------------------------------------------------------------------------

    def add_lora(self, *, rank: int, alpha: float, targets: Sequence[str], seed: int = 0) -> list[torch.nn.Parameter]:
        """Add a peft LoRA (B = 0: the policy starts equal to the reference) and return its parameters (fp32)."""
        from peft import LoraConfig

        check_lora_targets(self.transformer, targets, model=self.model)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            try:
                self.transformer.add_adapter(LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(targets),
                                                        init_lora_weights=True), adapter_name=ADAPTER)
            except ValueError as exc:
                raise TrainError(f"LoRA targets {list(targets)} cannot be used on {self.model!r}: {exc}") from None
        params = [p for n, p in self.transformer.named_parameters() if "lora_" in n]
        for p in params:
            p.data = p.data.float()
            p.requires_grad_(True)
        return params

    @property
    def lora_config(self) -> Any:
        return self.transformer.peft_config[ADAPTER]

    def lora_state(self) -> dict[str, torch.Tensor]:
        """The adapter's weights (peft key layout, no adapter name)."""
        from peft.utils import get_peft_model_state_dict

        return {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(self.transformer).items()}

    def load_lora_state(self, state: dict[str, torch.Tensor]) -> None:
        from peft.utils import set_peft_model_state_dict

        result = set_peft_model_state_dict(self.transformer, state, adapter_name=ADAPTER)
        unexpected = getattr(result, "unexpected_keys", [])
        if unexpected:
            raise TrainError(f"checkpoint LoRA does not fit the model: unexpected keys {unexpected[:3]}")

    def save_lora(self, path: Path) -> Path:
        """Write the LoRA as the pipeline's own `save_lora_weights` does (diffusers keys + adapter metadata),
        so `[generator] loras = [{path = ...}]` loads it unchanged."""
        path.parent.mkdir(parents=True, exist_ok=True)
        type(self.pipe).save_lora_weights(
            path.parent, transformer_lora_layers=self.lora_state(), weight_name=path.name,
            transformer_lora_adapter_metadata=self.lora_config.to_dict(),
        )
        return path

    @contextlib.contextmanager
    def adapters_disabled(self) -> Iterator[None]:
        """The reference model: the same transformer with its LoRA switched off (re-enabled on exit)."""
        self._disabled += 1
        if self._disabled == 1:  # nested use (evaluating the reference with DPO's own reference pass) is a no-op
            self.transformer.disable_adapters()
        try:
            yield
        finally:
            self._disabled -= 1
            if self._disabled == 0:
                self.transformer.enable_adapters()
