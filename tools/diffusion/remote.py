"""A remote OpenAI-compatible image API as generator and editor (closed-source teacher models).

`images.generate` / `images.edit` through the openai SDK, sync (`generate`, `edit`: the protocols) and async
(`agenerate`, `aedit`). Transport faults (timeouts, cut connections, 408/409/429, 5xx) are retried here with
exponential backoff, in this ONE layer: the SDK's own retries are off (`max_retries=0`) and a 4xx other than
those is never retried. No torch import: this path works without the `diffusion` extra.
"""

from __future__ import annotations

import base64
import io
import urllib.request
from collections.abc import Callable
from typing import Any

import openai
from PIL import Image
from tenacity import (
    AsyncRetrying,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_none,
)

from portraitcraft.config import DiffusionConfig, mask_secrets
from portraitcraft.errors import InputError
from tools.diffusion.base import DiffusionError, GenParams, check_prompt, check_seed
from tools.diffusion.metadata import ImageMeta, attach_meta

RETRYABLE_STATUS = frozenset({408, 409, 429})


def is_transient(exc: BaseException) -> bool:
    """True for faults worth retrying: timeouts, connection errors, 408/409/429 and 5xx answers."""
    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in RETRYABLE_STATUS or exc.status_code >= 500
    return False


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

    def __init__(self, cfg: DiffusionConfig) -> None:
        self.cfg = cfg
        self._client: openai.OpenAI | None = None
        self._aclient: openai.AsyncOpenAI | None = None

    # ---- clients & retry policy ---------------------------------------------------------------------------
    def _client_kwargs(self) -> dict[str, Any]:
        return {"base_url": self.cfg.base_url, "api_key": self.cfg.api_key(), "timeout": self.cfg.timeout,
                "max_retries": 0}

    @property
    def client(self) -> openai.OpenAI:
        if self._client is None:
            self._client = openai.OpenAI(**self._client_kwargs())
        return self._client

    @property
    def async_client(self) -> openai.AsyncOpenAI:
        if self._aclient is None:
            self._aclient = openai.AsyncOpenAI(**self._client_kwargs())
        return self._aclient

    def _retry_kwargs(self) -> dict[str, Any]:
        backoff = self.cfg.retry_backoff
        return {
            "retry": retry_if_exception(is_transient),
            "stop": stop_after_attempt(self.cfg.max_retries + 1),
            "wait": wait_exponential(multiplier=backoff, min=backoff, max=60) if backoff > 0 else wait_none(),
            "reraise": True,
        }

    @property
    def _safe_url(self) -> str:
        return mask_secrets(self.cfg.base_url)

    def _failure(self, what: str, exc: Exception) -> DiffusionError:
        where = f"remote image API {self.cfg.model!r} at {self._safe_url}"
        if isinstance(exc, openai.APIStatusError):
            hint = f" (is ${self.cfg.api_key_env} set to a valid key?)" if exc.status_code == 401 else ""
            return DiffusionError(f"{what}: {where} answered HTTP {exc.status_code}: {exc.message}{hint}")
        if isinstance(exc, openai.APIConnectionError):
            return DiffusionError(f"{what}: {where} could not be reached ({type(exc).__name__})")
        return DiffusionError(f"{what}: {where} failed: {exc}")

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            for attempt in Retrying(**self._retry_kwargs()):
                with attempt:
                    return fn()
        except openai.OpenAIError as exc:
            raise self._failure(what, exc) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _acall(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            async for attempt in AsyncRetrying(**self._retry_kwargs()):
                with attempt:
                    return await fn()
        except openai.OpenAIError as exc:
            raise self._failure(what, exc) from None
        raise AssertionError("unreachable")  # pragma: no cover

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
        data = getattr(response, "data", None) or []
        if not data:
            raise DiffusionError(f"{what}: remote image API {self.cfg.model!r} returned no image")
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
                raise DiffusionError(f"{what}: remote image API {self.cfg.model!r} returned neither b64_json nor url")
            image = Image.open(io.BytesIO(raw))
            image.load()
        except (ValueError, OSError) as exc:
            raise DiffusionError(f"{what}: remote image API {self.cfg.model!r} returned an unreadable image: {exc}")\
                from None
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
        return finish(self._call("generate", lambda: self.client.images.generate(**args)))

    def edit(
        self, image: Image.Image, instruction: str, seed: int, params: GenParams | None = None
    ) -> Image.Image:
        """Edit through `images.edit` (extra `reference_images` are sent as more images)."""
        args, finish = self._prepare_edit(image, instruction, seed, params)
        return finish(self._call("edit", lambda: self.client.images.edit(**args)))

    async def agenerate(
        self, prompt: str, width: int, height: int, seed: int, params: GenParams | None = None
    ) -> Image.Image:
        """`generate` on the async client (no GPU lane needed for a remote model)."""
        args, finish = self._prepare_generate(prompt, width, height, seed, params)
        return finish(await self._acall("generate", lambda: self.async_client.images.generate(**args)))

    async def aedit(
        self, image: Image.Image, instruction: str, seed: int, params: GenParams | None = None
    ) -> Image.Image:
        """`edit` on the async client."""
        args, finish = self._prepare_edit(image, instruction, seed, params)
        return finish(await self._acall("edit", lambda: self.async_client.images.edit(**args)))

    def close(self) -> None:
        """Close the sync client's connections (the async one closes with its event loop)."""
        if self._client is not None:
            self._client.close()
            self._client = None

