"""A remote OpenAI-compatible image API as generator and editor (closed-source teacher models).

`images.generate` / `images.edit` through the openai SDK, sync (`generate`, `edit`: the protocols) and async
(`agenerate`, `aedit`). Transient faults (timeouts, cut connections, malformed 200s, 408/409/425/429, 5xx) are
retried by tools/retry.py, the same policy (Retry-After, backoff with jitter) as the VLM client's; the SDK's
own retries are off and any other 4xx is never retried. No torch import: this path works without the
`diffusion` extra.
"""

from __future__ import annotations

import base64
import io
import urllib.request
from collections.abc import Callable
from typing import Any

import openai
from PIL import Image

from portraitcraft.config import DiffusionConfig, mask_secrets
from portraitcraft.errors import InputError
from portraitcraft.tools.diffusion.base import DiffusionError, GenParams, check_prompt, check_seed
from portraitcraft.tools.diffusion.metadata import ImageMeta, attach_meta
from portraitcraft.tools.retry import (
    MalformedReply,
    RetriesExhausted,
    RetryPolicy,
    client_settings,
    describe_fault,
    server_message,
)


def _png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


class RemoteImageBackend:
    """Generator and editor backed by an OpenAI-compatible image API.

    Args:
        cfg (DiffusionConfig): backend "remote"; `base_url`, `model`, `api_key_env` (the NAME of the env var),
            `timeout`, `max_retries`, `retry_backoff`, `remote_size`, `send_seed`, `extra` (extra_body).

    Example:
        >>> teacher = RemoteImageBackend(GeneratorConfig(backend="remote", model="gpt-image-1",
        ...                                              remote_size="1024x1536"))  # doctest: +SKIP
        >>> image = teacher.generate("a portrait, subject on the left third", 832, 1216, seed=0)  # doctest: +SKIP
    """

    def __init__(self, cfg: DiffusionConfig, *, retry: RetryPolicy | None = None) -> None:
        self.cfg = cfg
        self.retry = retry or RetryPolicy(max_retries=cfg.max_retries, base_delay=cfg.retry_backoff)
        self._client: openai.OpenAI | None = None
        self._aclient: openai.AsyncOpenAI | None = None

    # ---- clients & retries --------------------------------------------------------------------------------
    @property
    def client(self) -> openai.OpenAI:
        if self._client is None:
            self._client = openai.OpenAI(**client_settings(self.cfg))
        return self._client

    @property
    def async_client(self) -> openai.AsyncOpenAI:
        if self._aclient is None:
            self._aclient = openai.AsyncOpenAI(**client_settings(self.cfg))
        return self._aclient

    @property
    def _safe_url(self) -> str:
        return self.cfg.safe_url

    def _failure(self, what: str, exc: Exception) -> DiffusionError:
        where = f"remote image API {self.cfg.model!r} at {self._safe_url}"
        if isinstance(exc, RetriesExhausted):
            return DiffusionError(mask_secrets(f"{what}: {where} gave up after {exc.attempts} attempt(s): "
                                               f"{describe_fault(exc.last, self.cfg.timeout)}"))
        if isinstance(exc, openai.APIStatusError):
            hint = f" (is ${self.cfg.api_key_env} set to a valid key?)" if exc.status_code == 401 else ""
            return DiffusionError(mask_secrets(f"{what}: {where} answered HTTP {exc.status_code}: "
                                               f"{server_message(exc)}{hint}"))
        return DiffusionError(mask_secrets(f"{what}: {where} failed: {exc}"))

    def _call(self, what: str, fn: Callable[[], Any], finish: Callable[[Any], Image.Image]) -> Image.Image:
        """One request and the decoding of its answer, retried together: an unreadable 200 is a transient
        fault like a cut connection (as for the VLM client)."""
        try:
            return self.retry.call_sync(lambda: finish(fn()))
        except (openai.OpenAIError, RetriesExhausted) as exc:
            raise self._failure(what, exc) from None

    async def _acall(self, what: str, fn: Callable[[], Any], finish: Callable[[Any], Image.Image]) -> Image.Image:
        async def attempt() -> Image.Image:
            return finish(await fn())

        try:
            return await self.retry.call(attempt)
        except (openai.OpenAIError, RetriesExhausted) as exc:
            raise self._failure(what, exc) from None

    # ---- requests -----------------------------------------------------------------------------------------
    def _body(self, seed: int, p: GenParams) -> dict[str, Any]:
        body = {**self.cfg.extra, **p.extra}
        seed = check_seed(seed)
        if self.cfg.send_seed:
            body["seed"] = seed
        return body

    def _size(self, width: int, height: int) -> str:
        if width <= 0 or height <= 0:
            raise InputError(f"image size {width}x{height} must be positive")
        return self.cfg.remote_size or f"{width}x{height}"

    def _generate_args(self, prompt: str, width: int, height: int, seed: int, p: GenParams) -> dict[str, Any]:
        return {"model": self.cfg.model, "prompt": prompt, "size": self._size(width, height), "n": 1,
                "extra_body": self._body(seed, p) or None}

    def _edit_args(self, image: Image.Image, instruction: str, seed: int, p: GenParams) -> dict[str, Any]:
        images = [image, *(p.reference_images or ())]
        files = [(f"image_{i}.png", _png_bytes(img), "image/png") for i, img in enumerate(images)]
        width, height = p.width or image.width, p.height or image.height
        return {"model": self.cfg.model, "image": files[0] if len(files) == 1 else files, "prompt": instruction,
                "size": self._size(width, height), "n": 1, "extra_body": self._body(seed, p) or None}

    def _decode(self, response: Any, what: str) -> Image.Image:
        """The answer's image; a 200 without a readable image raises MalformedReply (retried)."""
        data = getattr(response, "data", None) or []
        if not data:
            raise MalformedReply(f"{what}: the answer holds no image")
        item = data[0]
        try:
            if item.b64_json:
                raw = base64.b64decode(item.b64_json)
            elif item.url:
                if not item.url.startswith(("https://", "http://")):
                    raise DiffusionError(f"{what}: remote image API returned a non-HTTP image url")
                with urllib.request.urlopen(item.url, timeout=self.cfg.timeout) as fh:
                    raw = fh.read()
            else:
                raise MalformedReply(f"{what}: the answer holds neither b64_json nor url")
            image = Image.open(io.BytesIO(raw))
            image.load()
        except (ValueError, OSError) as exc:
            raise MalformedReply(f"{what}: unreadable image ({exc})") from None
        return image.convert("RGB")

    def _finish(self, image: Image.Image, width: int, height: int, meta: ImageMeta) -> Image.Image:
        returned = image.size
        if returned != (width, height):
            image = image.resize((width, height), Image.Resampling.LANCZOS)
        meta.extra["returned_size"] = list(returned)
        return attach_meta(image, meta)

    def _meta(self, prompt: str, seed: int, width: int, height: int, p: GenParams, **fields: Any) -> ImageMeta:
        return ImageMeta(backend="remote", model=self.cfg.model, prompt=prompt, seed=seed, width=width,
                         height=height, extra={"base_url": self._safe_url, "seed_sent": self.cfg.send_seed},
                         **fields)

    # ---- the protocols ------------------------------------------------------------------------------------
    def _prepare_generate(
        self, prompt: str, width: int, height: int, seed: int, params: GenParams | None
    ) -> tuple[dict[str, Any], Callable[[Any], Image.Image]]:
        """The request arguments of one generation and the function that turns its response into the image."""
        prompt = check_prompt(prompt)
        p = params or GenParams()

        def finish(response: Any) -> Image.Image:
            return self._finish(self._decode(response, "generate"), width, height,
                                self._meta(prompt, seed, width, height, p))

        return self._generate_args(prompt, width, height, seed, p), finish

    def _prepare_edit(
        self, image: Image.Image, instruction: str, seed: int, params: GenParams | None
    ) -> tuple[dict[str, Any], Callable[[Any], Image.Image]]:
        """The request arguments of one edit and the function that turns its response into the image."""
        instruction = check_prompt(instruction, what="edit instruction")
        p = params or GenParams()
        width, height = p.width or image.width, p.height or image.height

        def finish(response: Any) -> Image.Image:
            return self._finish(self._decode(response, "edit"), width, height,
                                self._meta(instruction, seed, width, height, p, instruction=instruction,
                                           source_size=image.size))

        return self._edit_args(image, instruction, seed, p), finish

    def generate(
        self, prompt: str, width: int, height: int, seed: int, params: GenParams | None = None
    ) -> Image.Image:
        """Generate through `images.generate`; the answer is resized to `width` x `height` if it differs."""
        args, finish = self._prepare_generate(prompt, width, height, seed, params)
        return self._call("generate", lambda: self.client.images.generate(**args), finish)

    def edit(
        self, image: Image.Image, instruction: str, seed: int, params: GenParams | None = None
    ) -> Image.Image:
        """Edit through `images.edit` (extra `reference_images` are sent as more images)."""
        args, finish = self._prepare_edit(image, instruction, seed, params)
        return self._call("edit", lambda: self.client.images.edit(**args), finish)

    async def agenerate(
        self, prompt: str, width: int, height: int, seed: int, params: GenParams | None = None
    ) -> Image.Image:
        """`generate` on the async client (no GPU lane needed for a remote model)."""
        args, finish = self._prepare_generate(prompt, width, height, seed, params)
        return await self._acall("generate", lambda: self.async_client.images.generate(**args), finish)

    async def aedit(
        self, image: Image.Image, instruction: str, seed: int, params: GenParams | None = None
    ) -> Image.Image:
        """`edit` on the async client."""
        args, finish = self._prepare_edit(image, instruction, seed, params)
        return await self._acall("edit", lambda: self.async_client.images.edit(**args), finish)

    def close(self) -> None:
        """Close the sync client's connections (the async one closes with its event loop)."""
        if self._client is not None:
            self._client.close()
            self._client = None

