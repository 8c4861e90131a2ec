"""A scripted OpenAI-compatible image API for tests: FastAPI + uvicorn on 127.0.0.1, a free port, a thread.

    def test_teacher(fake_image_api):
        fake_image_api.script.fail(500)                  # the next request answers HTTP 500
        backend = RemoteImageBackend(fake_image_api.config(max_retries=2))
        image = backend.generate("a portrait", 64, 48, seed=1)
        assert [r.outcome for r in fake_image_api.requests] == [500, 200]

Endpoints: POST /v1/images/generations (JSON) and POST /v1/images/edits (multipart, one `image` or several
`image[]` parts). Answers carry `b64_json` PNGs: a generation is a flat colour derived from the prompt, of the
asked size (`size="auto"` -> 96x64); an edit is the colour-inverted first input image at the asked size.
Script: `script.fail(status, times=1, retry_after=None)` (HTTP error with an OpenAI-style error body and an
optional Retry-After header), `script.malformed(times=1)` (HTTP 200 with a body cut mid-JSON),
`script.hang(seconds, times=1)` (no reply for that long: a client timeout), `script.api_key = "..."` (401 for
another bearer).
Recorder: `requests` (path, body fields, image sizes, bearer, outcome, query string).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from local_server import LocalServer
from PIL import Image, ImageOps

from portraitcraft.config import DiffusionConfig


@dataclass
class Recorded:
    path: str
    body: dict[str, Any]
    image_sizes: list[tuple[int, int]]
    bearer: str | None
    outcome: int | str = "pending"
    query: str = ""


@dataclass
class _Fault:
    kind: str  # "status" | "hang" | "malformed"
    status: int = 500
    seconds: float = 0.0
    retry_after: float | str | None = None


@dataclass
class Script:
    """What the server does next (thread-safe enough for one test at a time)."""

    faults: deque[_Fault] = field(default_factory=deque)
    api_key: str | None = None

    def fail(self, status: int, *, times: int = 1, retry_after: float | str | None = None) -> Script:
        self.faults.extend(_Fault("status", status=status, retry_after=retry_after) for _ in range(times))
        return self

    def malformed(self, *, times: int = 1) -> Script:
        self.faults.extend(_Fault("malformed") for _ in range(times))
        return self

    def hang(self, seconds: float, *, times: int = 1) -> Script:
        self.faults.extend(_Fault("hang", seconds=seconds) for _ in range(times))
        return self


def _png_b64(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _parse_size(size: str | None, default: tuple[int, int]) -> tuple[int, int] | None:
    if size in (None, "", "auto"):
        return default
    try:
        w, h = (int(v) for v in str(size).lower().split("x"))
    except ValueError:
        return None
    return (w, h) if w > 0 and h > 0 else None


def _error(status: int, message: str, retry_after: float | str | None = None) -> JSONResponse:
    error_type = "server_error" if status >= 500 else "invalid_request_error"
    headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
    return JSONResponse({"error": {"message": message, "type": error_type, "code": None, "param": None}},
                        status_code=status, headers=headers)


def prompt_colour(prompt: str) -> tuple[int, int, int]:
    """The flat colour the fake API paints for a prompt (tests compare against it)."""
    digest = hashlib.sha256(prompt.encode()).digest()
    return digest[0], digest[1], digest[2]


class FakeImageAPI(LocalServer):
    """The server; use the `fake_image_api` fixture, or `with FakeImageAPI() as api:` outside pytest."""

    name = "fake-image-api"

    def __init__(self) -> None:
        super().__init__()
        self.script = Script()
        self.requests: list[Recorded] = []
        self.app = self._build_app()

    prompt_colour = staticmethod(prompt_colour)

    def config(self, **overrides: Any) -> DiffusionConfig:
        """A remote backend config pointing at this server, with fast retries."""
        values: dict[str, Any] = {"backend": "remote", "model": "fake-image-1", "base_url": self.base_url,
                                  "timeout": 5.0, "max_retries": 2, "retry_backoff": 0.0}
        values.update(overrides)
        return DiffusionConfig(**values)

    def reset(self) -> None:
        self.script = Script()
        self.requests.clear()

    async def _gate(self, record: Recorded) -> Response | None:
        """Auth and scripted faults; a response to send instead of the normal answer, or None."""
        self.requests.append(record)
        if self.script.api_key is not None and record.bearer != self.script.api_key:
            record.outcome = 401
            return _error(401, "Incorrect API key provided.")
        if self.script.faults:
            fault = self.script.faults.popleft()
            if fault.kind == "hang":
                record.outcome = "hang"
                await asyncio.sleep(fault.seconds)
            elif fault.kind == "malformed":
                record.outcome = "malformed"
                return Response('{"created": 0, "data": [{"b64_json": "iVBO', media_type="application/json")
            else:
                record.outcome = fault.status
                return _error(fault.status, f"scripted failure {fault.status}", fault.retry_after)
        return None

    def _build_app(self) -> FastAPI:
        app = FastAPI()

        def bearer(request: Request) -> str | None:
            auth = request.headers.get("authorization", "")
            return auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None

        @app.post("/v1/images/generations")
        async def generations(request: Request) -> Response:
            body = await request.json()
            record = Recorded("/v1/images/generations", body, [], bearer(request), query=request.url.query)
            if (refusal := await self._gate(record)) is not None:
                return refusal
            size = _parse_size(body.get("size"), (96, 64))
            if not body.get("prompt") or size is None:
                record.outcome = 400
                return _error(400, "prompt and a valid size (WxH) are required")
            image = Image.new("RGB", size, prompt_colour(body["prompt"]))
            record.outcome = 200
            return JSONResponse({"created": int(time.time()), "data": [{"b64_json": _png_b64(image)}]})

        @app.post("/v1/images/edits")
        async def edits(request: Request) -> Response:
            form = await request.form()
            uploads = [*form.getlist("image"), *form.getlist("image[]")]
            images = []
            for upload in uploads:
                data = await upload.read()  # type: ignore[union-attr]
                images.append(Image.open(io.BytesIO(data)).convert("RGB"))
            fields = {k: v for k, v in form.items() if isinstance(v, str)}
            record = Recorded("/v1/images/edits", fields, [im.size for im in images], bearer(request),
                              query=request.url.query)
            if (refusal := await self._gate(record)) is not None:
                return refusal
            size = _parse_size(fields.get("size"), images[0].size if images else (96, 64))
            if not images or not fields.get("prompt") or size is None:
                record.outcome = 400
                return _error(400, "an image, a prompt and a valid size are required")
            edited = ImageOps.invert(images[0]).resize(size)
            record.outcome = 200
            return JSONResponse({"created": int(time.time()), "data": [{"b64_json": _png_b64(edited)}]})

        return app


@pytest.fixture(scope="session")
def _fake_image_api_server() -> Iterator[FakeImageAPI]:
    with FakeImageAPI() as api:
        yield api


@pytest.fixture()
def fake_image_api(_fake_image_api_server: FakeImageAPI) -> Iterator[FakeImageAPI]:
    """The session's fake image API with a fresh script and recorder."""
    _fake_image_api_server.reset()
    yield _fake_image_api_server
    _fake_image_api_server.reset()
