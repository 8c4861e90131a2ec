"""LoRA adapters on a loaded pipeline: load, set weights, fuse, unfuse, unload.

Pipelines in the model pool are shared (a generator and a refiner on the same model, `from_pipe` variants), so
the wanted adapter set is re-synced before every call: `sync_loras` is a no-op when nothing changed. The
applied state is remembered on the transformer module, which every variant of one model shares.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

from portraitcraft.config import LoraConfig
from portraitcraft.tools.diffusion.base import DiffusionError
from portraitcraft.tools.diffusion.metadata import LoraMeta

_STATE_ATTR = "_portraitcraft_lora_state"


def adapter_name(lora: LoraConfig) -> str:
    """The adapter name: `lora.name`, else a stable name derived from the path.

    Example:
        >>> adapter_name(LoraConfig(path="/loras/dpo.safetensors"))[:4]
        'dpo_'
    """
    if lora.name:
        return lora.name
    stem = re.sub(r"[^A-Za-z0-9_]+", "_", lora.path.rstrip("/").rsplit("/", 1)[-1].removesuffix(".safetensors"))
    digest = hashlib.sha1(f"{lora.path}|{lora.weight_name}".encode()).hexdigest()[:8]
    return f"{stem[:40]}_{digest}"


def lora_meta(loras: Sequence[LoraConfig]) -> list[LoraMeta]:
    """The LoRAs as they are recorded in image metadata."""
    return [LoraMeta(name=adapter_name(lo), path=lo.path, weight=lo.weight) for lo in loras]


def sync_loras(pipe: Any, loras: Sequence[LoraConfig], *, fuse: bool = False) -> None:
    """Make exactly `loras` (with their weights) active on `pipe`; an empty list unloads every adapter.

    Args:
        pipe (DiffusionPipeline): a Z-Image or Qwen-Image pipeline (they carry the LoRA loader mixin).
        loras (list of LoraConfig): the wanted adapters, in order.
        fuse (bool, optional, defaults to False): fuse them into the weights (unfused again before a change).

    Raises:
        DiffusionError: an adapter cannot be loaded (names the adapter path).

    Example:
        >>> sync_loras(pipe, [LoraConfig(path="dpo.safetensors", weight=0.8)])  # doctest: +SKIP
        >>> sync_loras(pipe, [])  # back to the base weights  # doctest: +SKIP
    """
    holder = pipe.transformer
    wanted = (tuple((adapter_name(lo), lo.path, lo.weight_name, float(lo.weight)) for lo in loras), bool(fuse))
    current = getattr(holder, _STATE_ATTR, ((), False))
    if current == wanted:
        return
    if current[1]:
        pipe.unfuse_lora()
    if not wanted[0]:
        pipe.unload_lora_weights()
        setattr(holder, _STATE_ATTR, wanted)
        return
    loaded = set(pipe.get_list_adapters().get("transformer", []))
    for name, path, weight_name, _ in wanted[0]:
        if name in loaded:
            continue
        try:
            pipe.load_lora_weights(path, weight_name=weight_name, adapter_name=name)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            pipe.unload_lora_weights()  # back to a known state: base weights, no adapters
            setattr(holder, _STATE_ATTR, ((), False))
            raise DiffusionError(f"LoRA {path!r} could not be loaded: {exc}") from None
    names = [w[0] for w in wanted[0]]
    pipe.set_adapters(names, adapter_weights=[w[3] for w in wanted[0]])
    if fuse:
        pipe.fuse_lora(adapter_names=names)
    setattr(holder, _STATE_ATTR, wanted)


def unload_loras(pipe: Any) -> None:
    """Remove every adapter from `pipe`, restoring the base weights (same as `sync_loras(pipe, [])`)."""
    sync_loras(pipe, [])
