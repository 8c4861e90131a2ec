"""The assessor LoRA's model side: load a Qwen-VL base and its processor, place the LoRA, save what serving needs.

Any Qwen2-VL / Qwen2.5-VL / Qwen3-VL checkpoint (hub id or local folder) loads through
`AutoModelForImageTextToText`. The processor is the checkpoint's own (`AutoProcessor`); where torchvision
cannot be imported (this project's CPU test box) the stock Qwen-VL processor cannot be built, and an
image-only Qwen2-VL processor over the same files is used instead (`tools/diffusion/processors.py`).
The LoRA goes on the language model's linear layers only (the vision tower stays frozen), which is what
vLLM's `--enable-lora` serves.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import torch

from portraitcraft.config import AssessorTrainConfig
from portraitcraft.train import TrainError

Precision = Literal["bf16", "fp32"]
LANGUAGE_MODEL = "language_model"


class AssessorSetupError(TrainError):
    """The base model, its processor or the LoRA targets cannot be used as configured (bad input: exit 2)."""

    exit_code = 2


def pick_device(tc: AssessorTrainConfig) -> tuple[str, Precision]:
    """(device, precision): a GPU with bf16 unless `cpu` or no GPU; `precision` auto = bf16 on GPU, fp32 on CPU."""
    device = "cuda" if torch.cuda.is_available() and not tc.cpu else "cpu"
    if tc.precision == "auto":
        return device, "bf16" if device == "cuda" else "fp32"
    return device, tc.precision


def load_processor(base: str) -> Any:
    """The checkpoint's processor; the image-only Qwen2-VL processor where torchvision is missing.

    Raises:
        AssessorSetupError: neither can be loaded from `base` (names it).
    """
    from transformers import AutoProcessor

    from portraitcraft.tools.diffusion.processors import torchvision_available

    try:
        if torchvision_available():
            return AutoProcessor.from_pretrained(base)
        from transformers import AutoImageProcessor, AutoTokenizer

        from portraitcraft.tools.diffusion.processors import ImageOnlyQwen2VLProcessor

        tokenizer = AutoTokenizer.from_pretrained(base)
        return ImageOnlyQwen2VLProcessor(image_processor=AutoImageProcessor.from_pretrained(base),
                                         tokenizer=tokenizer, chat_template=tokenizer.chat_template)
    except (OSError, ValueError, KeyError) as exc:
        raise AssessorSetupError(f"{base}: cannot load the processor ({exc})") from None


def load_base(base: str, device: str, precision: Precision) -> Any:
    """The base model in `precision` on `device` (eval mode; the trainer switches it to training).

    Raises:
        AssessorSetupError: `base` is not a loadable image-text-to-text checkpoint (names it).
    """
    from transformers import AutoModelForImageTextToText

    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    try:
        model = AutoModelForImageTextToText.from_pretrained(base, dtype=dtype)
    except (OSError, ValueError, KeyError) as exc:
        raise AssessorSetupError(f"{base}: cannot load a Qwen-VL model from it ({exc})") from None
    return model.to(device)


def lora_config(tc: AssessorTrainConfig, model: Any) -> Any:
    """A PEFT LoRA config on the language model's `lora_targets` (checked against the model's modules).

    Raises:
        AssessorSetupError: no language-model module ends in one of `lora_targets`.
    """
    from peft import LoraConfig

    names = "|".join(re.escape(t) for t in tc.lora_targets)
    pattern = rf".*\.{LANGUAGE_MODEL}\..*\.(?:{names})"
    matched = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and re.fullmatch(pattern, n)]
    if not matched:
        raise AssessorSetupError(f"assessor_train.lora_targets {tc.lora_targets} match no linear layer of the language "
                         f"model in {type(model).__name__}")
    return LoraConfig(r=tc.lora_rank, lora_alpha=tc.lora_alpha, lora_dropout=tc.lora_dropout,
                      target_modules=pattern, bias="none", task_type="CAUSAL_LM")


def save_processor_files(processor: Any, out: Path) -> None:
    """Write the tokenizer, image-processor and chat-template files beside the adapter.

    The image-only processor is saved piecewise (as scripts/build_tiny_qwen2vl.py does), so the folder holds the
    stock files that vLLM and `AutoProcessor` read.
    """
    from portraitcraft.tools.diffusion.processors import ImageOnlyQwen2VLProcessor

    if isinstance(processor, ImageOnlyQwen2VLProcessor):
        processor.tokenizer.save_pretrained(out)
        processor.image_processor.save_pretrained(out)
    else:
        processor.save_pretrained(out)


__all__ = ["AssessorSetupError", "load_base", "load_processor", "lora_config", "pick_device", "save_processor_files"]
