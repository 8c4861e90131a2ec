"""Tiny random diffusers models for tests and the offline demo, built without any model hub.

Each model is built once into a cache folder (default `<cache root>/tiny-models`, the cache root of
portraitcraft/paths.py; overridable with the `root` argument or `PORTRAITCRAFT_TINY_MODELS`) and then loaded
like a real checkpoint: set the backend's `model` to the folder `ensure_tiny_model` returns. Parallel
processes building the same model wait on a lock file; a folder is complete only once it is moved into place.

    python -m portraitcraft.tools.diffusion.tiny build            # into <cache root>/tiny-models

Kinds: "zimage" (Z-Image / Turbo layout), "zimage-controlnet" (a Fun-Controlnet-Union-shaped pose ControlNet
for the tiny Z-Image), "qwen-image", "qwen-image-edit" (serves Edit and Edit-Plus). The weights are random:
tests can check sizes, determinism, and that a feature changes the output, never image content.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

from portraitcraft.paths import cache_root

RECIPE_VERSION = 2  # 2: RoPE tables as long as the real model's (long prompts, canvases over 128 px)
TINY_KINDS = ("zimage", "zimage-controlnet", "qwen-image", "qwen-image-edit")
ENV_ROOT = "PORTRAITCRAFT_TINY_MODELS"
_COMPLETE = ".complete"

# Qwen2 special tokens at their real ids (the text encoders' embedding tables are indexed by them).
QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)
QWEN_SPECIAL_FIRST_ID = 151643
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
ZIMAGE_DIMS = {"dim": 32, "n_heads": 2, "n_kv_heads": 2, "n_refiner_layers": 1}


def default_root() -> Path:
    """`$PORTRAITCRAFT_TINY_MODELS`, else `<cache root>/tiny-models` (`portraitcraft.paths.cache_root`)."""
    explicit = os.environ.get(ENV_ROOT)
    return Path(explicit).expanduser() if explicit else cache_root() / "tiny-models"


def byte_tokenizer() -> Any:
    """A byte-level `Qwen2Tokenizer`: the 256 byte symbols (no merges) plus the Qwen special tokens at their
    real ids, with a minimal chat template. Round-trips `save_pretrained` / `from_pretrained`."""
    from transformers import Qwen2Tokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = {symbol: i for i, symbol in enumerate(bytes_to_unicode().values())}
    vocab.update({tok: QWEN_SPECIAL_FIRST_ID + i for i, tok in enumerate(QWEN_SPECIAL_TOKENS)})
    return Qwen2Tokenizer(vocab=vocab, merges=[], chat_template=CHAT_TEMPLATE,
                          extra_special_tokens=list(QWEN_SPECIAL_TOKENS[1:]))


def _zimage_pipeline() -> Any:
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, ZImagePipeline, ZImageTransformer2DModel
    from transformers import Qwen3Config, Qwen3Model

    transformer = ZImageTransformer2DModel(
        all_patch_size=(2,), all_f_patch_size=(1,), in_channels=16, n_layers=2, qk_norm=True, cap_feat_dim=16,
        rope_theta=256.0, t_scale=1000.0, axes_dims=[8, 4, 4], axes_lens=[1024, 512, 512], **ZIMAGE_DIMS,
    )
    with torch.no_grad():  # created with torch.empty: left as is, outputs can be NaN
        transformer.x_pad_token.fill_(1.0)
        transformer.cap_pad_token.fill_(1.0)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2, block_out_channels=[32, 64], layers_per_block=1,
        latent_channels=16, norm_num_groups=32, sample_size=32, scaling_factor=0.3611, shift_factor=0.1159,
    )
    text_encoder = Qwen3Model(Qwen3Config(
        hidden_size=16, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
        vocab_size=151936, max_position_embeddings=1024,
    ))
    return ZImagePipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=text_encoder,
                          tokenizer=byte_tokenizer(), transformer=transformer)


def _zimage_controlnet() -> Any:
    """Fun-Controlnet-Union v1 layout scaled down: control layers at every transformer layer, control_in_dim
    16; the zero-initialised before/after projections are randomised so the ControlNet has an effect."""
    from diffusers import ZImageControlNetModel

    controlnet = ZImageControlNetModel(
        control_layers_places=[0, 1], control_refiner_layers_places=[0], control_in_dim=16,
        all_patch_size=(2,), all_f_patch_size=(1,), qk_norm=True, **ZIMAGE_DIMS,
    )
    with torch.no_grad():
        for name, param in controlnet.named_parameters():
            if "before_proj" in name or "after_proj" in name:
                param.normal_(0.0, 0.5)
    return controlnet


def _qwen_components() -> dict[str, Any]:
    from diffusers import AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImageTransformer2DModel
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    config = Qwen2_5_VLConfig(
        text_config={
            "hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
            "num_key_value_heads": 2, "vocab_size": 152064,
            "rope_parameters": {"rope_type": "default", "mrope_section": [1, 1, 2], "rope_theta": 1000000.0},
        },
        vision_config={"depth": 2, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2,
                       "out_hidden_size": 16, "fullatt_block_indexes": [1]},
        vision_start_token_id=151652, vision_end_token_id=151653, image_token_id=151655, video_token_id=151656,
    )
    transformer = QwenImageTransformer2DModel(
        patch_size=2, in_channels=16, out_channels=4, num_layers=2, attention_head_dim=16, num_attention_heads=3,
        joint_attention_dim=16, guidance_embeds=False, axes_dims_rope=(8, 4, 4),
    )
    vae = AutoencoderKLQwenImage(
        base_dim=24, z_dim=4, dim_mult=[1, 2, 4], num_res_blocks=1, temperal_downsample=[False, True],
        latents_mean=[0.0] * 4, latents_std=[1.0] * 4,
    )
    return {"scheduler": FlowMatchEulerDiscreteScheduler(), "vae": vae,
            "text_encoder": Qwen2_5_VLForConditionalGeneration(config), "tokenizer": byte_tokenizer(),
            "transformer": transformer}


def _rewrite_json(path: Path, **changes: Any) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def build_tiny_model(kind: str, out: str | Path, *, seed: int = 0) -> Path:
    """Build the tiny model `kind` into the folder `out` (created; should be empty) and return it.

    Example:
        >>> build_tiny_model("zimage", "/tmp/tiny-zimage")  # doctest: +SKIP
    """
    if kind not in TINY_KINDS:
        raise ValueError(f"unknown tiny model kind {kind!r}; one of {', '.join(TINY_KINDS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if kind == "zimage":
            _zimage_pipeline().save_pretrained(out)
        elif kind == "zimage-controlnet":
            _zimage_controlnet().save_pretrained(out)
        elif kind == "qwen-image":
            from diffusers import QwenImagePipeline

            QwenImagePipeline(**_qwen_components()).save_pretrained(out)
        else:
            from diffusers import QwenImageEditPipeline

            from portraitcraft.tools.diffusion.processors import image_only_processor

            components = _qwen_components()
            processor = image_only_processor(components["tokenizer"], min_pixels=28 * 28, max_pixels=28 * 28 * 16)
            QwenImageEditPipeline(**components, processor=processor).save_pretrained(out)
            # Record the stock processor class, as real checkpoints do; loading swaps in the image-only one
            # when torchvision is missing (portraitcraft.tools.diffusion.loading).
            _rewrite_json(out / "model_index.json", processor=["transformers", "Qwen2VLProcessor"])
            _rewrite_json(out / "processor" / "processor_config.json", processor_class="Qwen2VLProcessor")
    return out


def ensure_tiny_model(kind: str, root: str | Path | None = None) -> Path:
    """The folder of tiny model `kind` under `root`, built first if absent (once, under a lock file).

    Args:
        kind (str): one of `TINY_KINDS`.
        root (str | Path, optional): the cache folder; default `default_root()`.

    Example:
        >>> model_dir = ensure_tiny_model("zimage")  # doctest: +SKIP
        >>> gen = build_generator(GeneratorConfig(model=str(model_dir), device="cpu", dtype="float32"))
        ... # doctest: +SKIP
    """
    if kind not in TINY_KINDS:
        raise ValueError(f"unknown tiny model kind {kind!r}; one of {', '.join(TINY_KINDS)}")
    root = Path(root).expanduser() if root is not None else default_root()
    target = root / f"{kind}-v{RECIPE_VERSION}"
    if (target / _COMPLETE).is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f".{target.name}.lock")):
        if (target / _COMPLETE).is_file():  # another process built it while we waited
            return target
        staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{target.name}."))
        try:
            build_tiny_model(kind, staging)
            (staging / _COMPLETE).write_text(json.dumps({"kind": kind, "recipe": RECIPE_VERSION}) + "\n")
            if target.exists():  # an incomplete leftover from a killed build
                shutil.rmtree(target)
            os.replace(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return target


TINY_PREFIX = "tiny:"
"""A model id `tiny:<kind>` (e.g. `generator.model = "tiny:zimage"`) names the tiny random model of that kind,
built on first use into `default_root()` (the cache root), whatever the current folder."""


def resolve_tiny(model: str) -> str:
    """`model` itself, or for `tiny:<kind>` the folder of that tiny model (built first if absent, with a
    progress line on stderr).

    Example:
        >>> resolve_tiny("Tongyi-MAI/Z-Image-Turbo")
        'Tongyi-MAI/Z-Image-Turbo'
    """
    if not model.startswith(TINY_PREFIX):
        return model
    kind = model[len(TINY_PREFIX):]
    if kind not in TINY_KINDS:
        raise ValueError(f"unknown tiny model {model!r}; one of {', '.join(TINY_PREFIX + k for k in TINY_KINDS)}")
    target = default_root() / f"{kind}-v{RECIPE_VERSION}"
    if not (target / _COMPLETE).is_file():
        print(f"building the tiny random model {model} into {target} (first use; about a minute on CPU)",
              file=sys.stderr, flush=True)
    return str(ensure_tiny_model(kind))


def build_tiny_lora(model_dir: str | Path, out_file: str | Path, *, rank: int = 4, seed: int = 0) -> Path:
    """A random LoRA (diffusers/peft key layout, safetensors) for the transformer of the tiny model in
    `model_dir`; loads with `pipe.load_lora_weights(out_file)`.

    Example:
        >>> build_tiny_lora(ensure_tiny_model("zimage"), "/tmp/tiny_lora.safetensors")  # doctest: +SKIP
    """
    import diffusers
    from peft import LoraConfig as PeftLoraConfig
    from peft.utils import get_peft_model_state_dict

    model_dir, out_file = Path(model_dir), Path(out_file)
    index = json.loads((model_dir / "model_index.json").read_text())
    pipeline_cls = getattr(diffusers, index["_class_name"])
    transformer_cls = getattr(diffusers, index["transformer"][1])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        transformer = transformer_cls.from_pretrained(model_dir, subfolder="transformer")
        transformer.add_adapter(PeftLoraConfig(
            r=rank, lora_alpha=rank, init_lora_weights=False,
            target_modules=["to_q", "to_k", "to_v", "to_out.0"],
        ))
        layers = get_peft_model_state_dict(transformer)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    pipeline_cls.save_lora_weights(out_file.parent, transformer_lora_layers=layers, weight_name=out_file.name)
    return out_file


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m portraitcraft.tools.diffusion.tiny build --out DIR [--kind KIND ...]`: build (or find) tiny models."""
    parser = argparse.ArgumentParser(prog="python -m portraitcraft.tools.diffusion.tiny",
                                     description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build tiny models into a cache folder (skips ones already built)")
    build.add_argument("--out", type=Path, default=None, help=f"cache folder (default {default_root()})")
    build.add_argument("--kind", action="append", choices=TINY_KINDS, help="one kind; repeat for more (default all)")
    args = parser.parse_args(argv)
    for kind in args.kind or TINY_KINDS:
        print(f"{kind}: {ensure_tiny_model(kind, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
