"""Encoded training samples: VAE latents and text embeddings computed once and cached on disk.

A key is the SHA-256 of what determines the tensor: the encoded image bytes (or the prompt text), the bucket
size, the encoder's identity (model, class, dtype, config) and the sequence length. Files are written to a
temporary name and moved into place, so a killed run never leaves a torn entry. With the cache on, `prepare`
encodes every sample once up front; later epochs and re-runs read the files and run no encoder forward.
With it off, samples are decoded and encoded at every step (what the benchmark compares against).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from portraitcraft.atomic import atomic_write_bytes
from portraitcraft.train.data import (
    Buckets,
    ItemSet,
    RowProblem,
    TrainItem,
    decode_image,
    fit_to,
    pose_control,
    to_pixels,
)
from portraitcraft.train.models import FlowModel


def content_key(*parts: bytes | str) -> str:
    """SHA-256 hex of the parts, length-prefixed so different splits never collide."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


class TensorCache:
    """Tensors in safetensors files under `root/<kind>/<key[:2]>/<key>.safetensors`; `root=None` = no cache."""

    def __init__(self, root: str | Path | None) -> None:
        self.root = Path(root) if root is not None else None
        self.hits = 0
        self.misses = 0

    def _path(self, kind: str, key: str) -> Path:
        assert self.root is not None
        return self.root / kind / key[:2] / f"{key}.safetensors"

    def get(self, kind: str, key: str) -> torch.Tensor | None:
        if self.root is None:
            return None
        path = self._path(kind, key)
        if not path.is_file():
            self.misses += 1
            return None
        from safetensors.torch import load_file

        try:
            tensor = load_file(path)["t"]
        except Exception:  # a damaged entry is recomputed, never fatal
            self.misses += 1
            return None
        self.hits += 1
        return tensor

    def put(self, kind: str, key: str, tensor: torch.Tensor) -> None:
        if self.root is None:
            return
        from safetensors.torch import save

        atomic_write_bytes(self._path(kind, key), save({"t": tensor.detach().cpu().contiguous()}))


@dataclass
class Prepared:
    """A decodable item placed in its bucket, with the cache keys of its tensors."""

    item: TrainItem
    size: tuple[int, int]
    image_keys: list[str]
    prompt_key: str
    control_key: str | None = None


@dataclass
class Batch:
    """Tensors of a micro-batch: latents (N, K, C, h, w) with K = 1 (SFT) or 2 (chosen, rejected)."""

    latents: torch.Tensor
    embeds: list[torch.Tensor]
    p_chosen: torch.Tensor
    control: torch.Tensor | None
    ids: list[str]


class SampleEncoder:
    """Decodes, buckets and encodes items for `model`, through `cache`.

    Args:
        model (FlowModel): its VAE and text encoder do the encoding.
        cache (TensorCache): where encoded tensors live (root None: encode at every use).
        buckets (Buckets): the training canvases.
        max_sequence_length (int): text tokens kept.
        pose (bool, optional): also encode each pair's control image (pose-conditioned DPO).
    """

    def __init__(self, model: FlowModel, cache: TensorCache, buckets: Buckets, max_sequence_length: int,
                 *, pose: bool = False) -> None:
        self.model, self.cache, self.buckets = model, cache, buckets
        self.max_sequence_length = max_sequence_length
        self.pose = pose
        self._vae_id = model.identity("vae")
        self._text_id = model.identity("text_encoder")

    def _decode(self, item: TrainItem) -> tuple[tuple[int, int], list, object]:
        """(bucket, fitted images, fitted control or None); ValueError naming the bad column."""
        names = ("chosen", "rejected") if len(item.images) == 2 else ("image",)
        raw = [decode_image(data, name) for data, name in zip(item.images, names, strict=True)]
        size = self.buckets.nearest(raw[0].width, raw[0].height)
        control = pose_control(item, raw[0], size) if self.pose else None
        return size, [fit_to(im, size) for im in raw], control

    def prepare(self, items: ItemSet, progress: Callable[[int], None] | None = None) -> list[Prepared]:
        """Decode every item once (an undecodable one joins `items.problems` and is skipped); with the cache
        on, encode and store everything missing now."""
        out: list[Prepared] = []
        for item in items.items:
            try:
                size, images, control = self._decode(item)
            except ValueError as exc:
                items.problems.append(RowProblem(item.row, item.id, str(exc)))
                continue
            tag = f"{size[0]}x{size[1]}"
            prep = Prepared(
                item=item, size=size,
                image_keys=[content_key(self._vae_id, tag, data) for data in item.images],
                prompt_key=content_key(self._text_id, str(self.max_sequence_length), item.prompt),
            )
            if self.pose:
                source = item.pose_image or json.dumps(item.pose_keypoints).encode() + item.images[0]
                prep.control_key = content_key(self._vae_id, tag, "control", source)
            if self.cache.root is not None:
                self._ensure(prep, images, control)
            out.append(prep)
            if progress:
                progress(1)
        return out

    def _ensure(self, prep: Prepared, images: list, control: object) -> None:
        missing = [i for i, k in enumerate(prep.image_keys) if not self._exists("latent", k)]
        if missing:
            latents = self.model.encode_images(torch.from_numpy(to_pixels([images[i] for i in missing])))
            for i, lat in zip(missing, latents, strict=True):
                self.cache.put("latent", prep.image_keys[i], lat)
        if not self._exists("text", prep.prompt_key):
            (embed,) = self.model.encode_prompts([prep.item.prompt], self.max_sequence_length)
            self.cache.put("text", prep.prompt_key, embed)
        if prep.control_key and not self._exists("latent", prep.control_key):
            (lat,) = self.model.encode_images(torch.from_numpy(to_pixels([control])))
            self.cache.put("latent", prep.control_key, lat)

    def _exists(self, kind: str, key: str) -> bool:
        assert self.cache.root is not None
        return self.cache._path(kind, key).is_file()

    def batch(self, preps: Sequence[Prepared]) -> Batch:
        """The tensors of `preps` (all in one bucket): from the cache, else encoded now."""
        latents, embeds, controls = [], [], []
        for prep in preps:
            cached = [self.cache.get("latent", k) for k in prep.image_keys]
            text = self.cache.get("text", prep.prompt_key)
            control = self.cache.get("latent", prep.control_key) if prep.control_key else None
            if any(c is None for c in cached) or text is None or (prep.control_key and control is None):
                _, images, control_image = self._decode(prep.item)
                if self.cache.root is not None:  # a deleted entry: re-encode and store it again
                    self._ensure(prep, images, control_image)
                    return self.batch(preps)
                cached = list(self.model.encode_images(torch.from_numpy(to_pixels(images))))
                (text,) = self.model.encode_prompts([prep.item.prompt], self.max_sequence_length)
                if prep.control_key:
                    (control,) = self.model.encode_images(torch.from_numpy(to_pixels([control_image])))
            latents.append(torch.stack([c.to(self.model.device) for c in cached]))
            embeds.append(text.to(self.model.device))
            if control is not None:
                controls.append(control.to(self.model.device))
        return Batch(
            latents=torch.stack(latents).float(), embeds=embeds,
            p_chosen=torch.tensor([p.item.p_chosen for p in preps], dtype=torch.float32, device=self.model.device),
            control=torch.stack(controls).float() if controls else None, ids=[p.item.id for p in preps],
        )
