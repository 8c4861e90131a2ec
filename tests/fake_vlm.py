"""A scripted OpenAI-compatible VLM server for tests: FastAPI + uvicorn on 127.0.0.1, a free port, a thread.

Use the `fake_vlm` fixture (re-exported by conftest.py); script what the next requests get, then assert on
what the server received:

    async def test_verdict(fake_vlm, tmp_path):
        fake_vlm.script.push({"detected": True, "instruction": "turn the head left"})
        async with make_client(fake_vlm) as vlm:                       # a VLMClient with fast backoff
            verdict = await vlm.ask("Is the head turned?", [img], schema=Verdict)
        assert fake_vlm.chat_requests[0].body["extra_body"] ...        # parsed request bodies

Script API (every call returns the script, so calls chain):
- `script.push(content, *, top_logprobs=None, tokens=None, finish_reason="stop", delay=0, repeat=1)`:
  queue ONE completion choice. `content` is text, or a dict / pydantic model (sent as JSON). A request with
  n=K takes K queued choices. `top_logprobs` is one {token: logprob} dict per generated token; `tokens` the
  generated tokens (default: the most likely token of each dict, and content = their concatenation).
- `script.fault(kind, *, status=500, message=..., retry_after=None, seconds=5, times=1)`: the next request
  (in queue order) fails: kind "status" (an HTTP error, e.g. status=429, retry_after=2), "timeout" (no
  reply for `seconds`), "cut" (the connection drops mid-reply), "malformed" (HTTP 200 with broken JSON),
  "shape" (HTTP 200 with valid JSON whose choice has no message).
- `script.fault_rate(rate, *, seed=0, kinds=(...))`: every chat request fails with probability `rate`,
  decided deterministically from (seed, the request's messages, how often they were seen) so concurrent
  tests stay reproducible.
- `script.default(content=None, *, fn=None, top_logprobs=None)`: the reply when the queue is empty
  (`fn(body) -> str | dict | Answer`). With no default, an empty queue answers HTTP 400 saying so.
- `script.refuse_n = True` (400 on n>1), `script.ignore_n = True` (one choice whatever n),
  `script.no_logprobs = True` (logprobs: null),
  `script.models = [...]` (GET /v1/models; other model names get 404), `script.api_key = "..."` (401 on a
  different bearer token).

Reading a request inside a `default(fn=...)` (module helpers): `user_text(body)` (the last user turn's text),
`request_images(body)` (its images as PIL images), `answer_schema(body)` (the JSON schema the client asked for,
from `structured_outputs` or `response_format`; None for free text or a choice), `answer_choices(body)` (the
options of a structured `choice`, or None). `Answer` can be returned from `fn` for full control (tokens,
top_logprobs).

Recorder: `fake_vlm.requests` (every request: .path, .query, .body, .headers, .outcome, .images sizes),
`fake_vlm.chat_requests` (only POST /v1/chat/completions) and `fake_vlm.max_in_flight` (the most chat
requests served at once). Images are validated as data URLs (400 on a
corrupt one). Outside pytest (benchmarks): `with FakeVLMServer() as server: ...`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import io
import json
import random
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from local_server import LocalServer
from PIL import Image
from pydantic import BaseModel

from portraitcraft.config import EndpointConfig
from portraitcraft.tools.vlm import VLMClient

FaultKind = Literal["status", "timeout", "cut", "malformed", "shape"]
DEFAULT_MODEL = "fake-vl"
API_KEY_ENV = "FAKE_VLM_API_KEY"


@dataclass
class Answer:
    """One scripted completion choice."""

    content: str
    tokens: list[str] | None = None
    top_logprobs: list[dict[str, float]] | None = None
    finish_reason: str = "stop"
    delay: float = 0.0


@dataclass
class Fault:
    """One scripted failure."""

    kind: FaultKind = "status"
    status: int = 500
    message: str = "scripted fault"
    retry_after: float | str | None = None
    seconds: float = 5.0


@dataclass
class RecordedRequest:
    """What the server received, and what it did with it (`outcome`: "ok", "fault:status:503", ...)."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    outcome: str = "pending"
    images: list[tuple[int, int]] = field(default_factory=list)
    time: float = field(default_factory=time.monotonic)
    query: str = ""


def _as_text(content: str | Mapping[str, Any] | BaseModel) -> str:
    if isinstance(content, BaseModel):
        return content.model_dump_json()
    if isinstance(content, Mapping):
        return json.dumps(content)
    return str(content)


def _answer(content: str | Mapping[str, Any] | BaseModel | None, tokens: Sequence[str] | None,
            top_logprobs: Sequence[Mapping[str, float]] | None, finish_reason: str, delay: float) -> Answer:
    tops = [dict(d) for d in top_logprobs] if top_logprobs is not None else None
    toks = list(tokens) if tokens is not None else None
    text = _as_text(content) if content is not None else None
    if tops is not None and toks is None:
        if text is not None and len(tops) != 1:
            raise ValueError("with several top_logprobs positions, give tokens= as well")
        toks = [text] if text is not None else [max(d, key=lambda t: d[t]) for d in tops]
    if toks is not None and tops is not None and len(toks) != len(tops):
        raise ValueError(f"{len(toks)} tokens but {len(tops)} top_logprobs positions")
    if text is None:
        if toks is None:
            raise ValueError("push() needs content, tokens or top_logprobs")
        text = "".join(toks)
    return Answer(text, toks, tops, finish_reason, delay)


class Script:
    """What the fake server answers next; see the module docstring. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._queue: deque[Answer | Fault] = deque()
            self._default: Callable[[dict[str, Any]], Answer] | None = None
            self._rate = 0.0
            self._rate_seed = 0
            self._rate_kinds: tuple[str, ...] = ()
            self._seen: Counter[str] = Counter()
        self.refuse_n = False
        self.ignore_n = False
        self.no_logprobs = False
        self.models = [DEFAULT_MODEL]
        self.api_key: str | None = None

    def push(self, content: str | Mapping[str, Any] | BaseModel | None = None, *,
             top_logprobs: Sequence[Mapping[str, float]] | None = None, tokens: Sequence[str] | None = None,
             finish_reason: str = "stop", delay: float = 0.0, repeat: int = 1) -> Script:
        """Queue one completion choice (`repeat` times)."""
        answer = _answer(content, tokens, top_logprobs, finish_reason, delay)
        with self._lock:
            self._queue.extend([answer] * repeat)
        return self

    def fault(self, kind: FaultKind = "status", *, status: int = 500, message: str = "scripted fault",
              retry_after: float | str | None = None, seconds: float = 5.0, times: int = 1) -> Script:
        """Queue a failure for the next request(s) in order."""
        if kind not in ("status", "timeout", "cut", "malformed", "shape"):
            raise ValueError(f"unknown fault kind {kind!r}")
        with self._lock:
            self._queue.extend([Fault(kind, status, message, retry_after, seconds)] * times)
        return self

    def fault_rate(self, rate: float, *, seed: int = 0,
                   kinds: Sequence[str] = ("status:500", "status:503", "status:429", "cut", "malformed")) -> Script:
        """Fail each chat request with probability `rate` (deterministic per messages and repeat count)."""
        with self._lock:
            self._rate, self._rate_seed, self._rate_kinds = rate, seed, tuple(kinds)
        return self

    def default(self, content: str | Mapping[str, Any] | BaseModel | None = None, *,
                fn: Callable[[dict[str, Any]], Any] | None = None,
                top_logprobs: Sequence[Mapping[str, float]] | None = None) -> Script:
        """The reply when the queue is empty: fixed content, or `fn(request_body)`."""
        if fn is not None:
            def make(body: dict[str, Any]) -> Answer:
                out = fn(body)
                return out if isinstance(out, Answer) else _answer(out, None, None, "stop", 0.0)
        else:
            fixed = _answer(content, None, top_logprobs, "stop", 0.0)

            def make(body: dict[str, Any]) -> Answer:
                return fixed
        with self._lock:
            self._default = make
        return self

    @property
    def pending(self) -> int:
        """Queued answers and faults not consumed yet."""
        with self._lock:
            return len(self._queue)

    # ---- used by the server
    def random_fault(self, body: dict[str, Any]) -> Fault | None:
        with self._lock:
            if self._rate <= 0:
                return None
            key = hashlib.sha256(json.dumps(body.get("messages"), sort_keys=True).encode()).hexdigest()
            count = self._seen[key]
            self._seen[key] += 1
            rng = random.Random(f"{self._rate_seed}:{key}:{count}")
            if rng.random() >= self._rate:
                return None
            kind = rng.choice(self._rate_kinds)
        if kind.startswith("status:"):
            status = int(kind.split(":", 1)[1])
            return Fault("status", status, f"random fault {status}", retry_after=0 if status == 429 else None)
        return Fault(kind)  # type: ignore[arg-type]

    def next_fault(self) -> Fault | None:
        with self._lock:
            if self._queue and isinstance(self._queue[0], Fault):
                return self._queue.popleft()  # type: ignore[return-value]
        return None

    def take_answers(self, n: int, body: dict[str, Any]) -> list[Answer] | None:
        with self._lock:
            out: list[Answer] = []
            while len(out) < n and self._queue and isinstance(self._queue[0], Answer):
                out.append(self._queue.popleft())  # type: ignore[arg-type]
            default = self._default
        while len(out) < n and default is not None:
            out.append(default(body))
        if len(out) < n:
            with self._lock:  # put back what was taken: the request fails as a whole
                self._queue.extendleft(reversed(out))
            return None
        return out


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    kind = {400: "BadRequestError", 401: "AuthenticationError", 404: "NotFoundError",
            429: "RateLimitError"}.get(status, "InternalServerError" if status >= 500 else "Error")
    return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": status}},
                        status_code=status, headers=dict(headers or {}))


def _check_images(body: dict[str, Any]) -> tuple[list[tuple[int, int]], str | None]:
    sizes: list[tuple[int, int]] = []
    for i, message in enumerate(body.get("messages") or []):
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for j, part in enumerate(content):
            if part.get("type") != "image_url":
                continue
            where = f"messages[{i}].content[{j}]"
            url = (part.get("image_url") or {}).get("url", "")
            header, _, payload = url.partition(",")
            if not (header.startswith("data:image/") and header.endswith(";base64")):
                return sizes, f"{where}: only base64 data URLs are accepted, got {url[:40]!r}"
            try:
                img = Image.open(io.BytesIO(base64.b64decode(payload, validate=True)))
                img.load()
            except (binascii.Error, OSError, ValueError, SyntaxError) as exc:
                return sizes, f"{where}: invalid image ({type(exc).__name__}: {exc})"
            sizes.append(img.size)
    return sizes, None


def user_text(body: Mapping[str, Any]) -> str:
    """The text of the last user message of a chat request (parts joined by newlines)."""
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            return "\n".join(p.get("text", "") for p in content or [] if p.get("type") == "text")
    return ""


def request_images(body: Mapping[str, Any]) -> list[Image.Image]:
    """The images of a chat request, decoded (data URLs only; the server has validated them already)."""
    out = []
    for message in body.get("messages") or []:
        content = message.get("content")
        for part in content if isinstance(content, list) else []:
            if part.get("type") == "image_url":
                payload = part["image_url"]["url"].partition(",")[2]
                img = Image.open(io.BytesIO(base64.b64decode(payload)))
                img.load()
                out.append(img)
    return out


def answer_schema(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """The JSON schema a request asks the answer to follow (vLLM structured_outputs or OpenAI json_schema)."""
    structured = (body.get("extra_body") or body).get("structured_outputs") or body.get("structured_outputs")
    if isinstance(structured, dict) and isinstance(structured.get("json"), dict):
        return structured["json"]
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        return (fmt.get("json_schema") or {}).get("schema")
    return None


def answer_choices(body: Mapping[str, Any]) -> list[str] | None:
    """The options of a vLLM structured `choice` request, or None."""
    structured = (body.get("extra_body") or body).get("structured_outputs") or body.get("structured_outputs")
    if isinstance(structured, dict) and isinstance(structured.get("choice"), list):
        return [str(c) for c in structured["choice"]]
    return None


def _logprobs_block(answer: Answer, k: int) -> dict[str, Any]:
    tokens = answer.tokens or [answer.content]
    tops = answer.top_logprobs or [{answer.content: 0.0}]
    content = []
    for token, top in zip(tokens, tops, strict=True):
        keep = sorted(top, key=lambda t: top[t], reverse=True)[:k]
        content.append({
            "token": token, "logprob": top.get(token, 0.0), "bytes": list(token.encode()),
            "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode())}
                             for t, lp in top.items() if t in keep],
        })
    return {"content": content}


class FakeVLMServer(LocalServer):
    """The fake server; `start()` / `stop()` or use it as a context manager."""

    name = "fake_vlm"

    def __init__(self) -> None:
        super().__init__()
        self.script = Script()
        self._records: list[RecordedRequest] = []
        self._records_lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.app = self._build_app()

    @property
    def model(self) -> str:
        return self.script.models[0]

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._records_lock:
            return list(self._records)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def reset(self) -> None:
        """Forget recorded requests and the script (the server keeps running)."""
        self.script.reset()
        with self._records_lock:
            self._records.clear()
            self.in_flight = self.max_in_flight = 0

    def _record(self, request: Request, body: dict[str, Any] | None) -> RecordedRequest:
        record = RecordedRequest(request.method, request.url.path, dict(request.headers), body,
                                 query=request.url.query)
        with self._records_lock:
            self._records.append(record)
        return record

    def _build_app(self) -> FastAPI:
        app = FastAPI()
        script = self.script

        def unauthorised(request: Request) -> bool:
            return script.api_key is not None and request.headers.get("authorization") != f"Bearer {script.api_key}"

        @app.get("/v1/models")
        async def models(request: Request) -> Response:
            record = self._record(request, None)
            if unauthorised(request):
                record.outcome = "401"
                return _error(401, "invalid API key")
            record.outcome = "ok"
            return JSONResponse({"object": "list", "data": [
                {"id": m, "object": "model", "created": 0, "owned_by": "fake_vlm"} for m in script.models]})

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> Response:
            try:
                body = json.loads(await request.body())
            except json.JSONDecodeError as exc:
                self._record(request, None).outcome = "400"
                return _error(400, f"request body is not JSON: {exc}")
            record = self._record(request, body)
            with self._records_lock:
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                response = await self._chat(request, body, record)
            finally:
                with self._records_lock:
                    self.in_flight -= 1
            if record.outcome == "pending":
                record.outcome = "ok" if response.status_code == 200 else str(response.status_code)
            return response

        return app

    async def _chat(self, request: Request, body: dict[str, Any], record: RecordedRequest) -> Response:
        script = self.script
        if script.api_key is not None and request.headers.get("authorization") != f"Bearer {script.api_key}":
            return _error(401, "invalid API key")
        for removed in ("guided_json", "guided_choice", "guided_regex", "guided_grammar"):
            if removed in body:
                return _error(400, f"{removed} was removed in vLLM 0.12; use structured_outputs")
        if body.get("model") not in script.models:
            return _error(404, f"The model `{body.get('model')}` does not exist.")
        record.images, problem = _check_images(body)
        if problem:
            return _error(400, problem)
        n = 1 if script.ignore_n else int(body.get("n") or 1)
        if n > 1 and script.refuse_n:
            return _error(400, "n > 1 is not supported by this server")
        fault = script.random_fault(body) or script.next_fault()
        if fault is not None:
            record.outcome = f"fault:{fault.kind}" + (f":{fault.status}" if fault.kind == "status" else "")
            return await self._fault(request, fault)
        answers = script.take_answers(n, body)
        if answers is None:
            return _error(400, f"fake_vlm: no scripted answer left for a request with n={n} "
                               "(push more with fake_vlm.script.push or set script.default)")
        delay = max(a.delay for a in answers)
        if delay:
            await asyncio.sleep(delay)
        want_logprobs = bool(body.get("logprobs")) and not script.no_logprobs
        k = int(body.get("top_logprobs") or 0)
        prompt_tokens = len(json.dumps(body.get("messages"))) // 4 + 64 * len(record.images)
        completion_tokens = sum(len(a.tokens or [a.content]) for a in answers)
        return JSONResponse({
            "id": f"chatcmpl-fake-{id(record)}", "object": "chat.completion", "created": int(time.time()),
            "model": body["model"],
            "choices": [{
                "index": i, "finish_reason": a.finish_reason,
                "message": {"role": "assistant", "content": a.content},
                "logprobs": _logprobs_block(a, k) if want_logprobs else None,
            } for i, a in enumerate(answers)],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        })

    @staticmethod
    async def _fault(request: Request, fault: Fault) -> Response:
        if fault.kind == "status":
            headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
            return _error(fault.status, fault.message, headers)
        if fault.kind == "timeout":
            deadline = time.monotonic() + fault.seconds
            while time.monotonic() < deadline and not await request.is_disconnected():
                await asyncio.sleep(0.02)
            return _error(504, "scripted timeout")
        if fault.kind == "shape":
            return JSONResponse({"id": "chatcmpl-shape", "object": "chat.completion", "created": 0, "model": "x",
                                 "choices": [{"index": 0, "finish_reason": "stop"}]})
        if fault.kind == "malformed":
            return Response('{"id": "chatcmpl-broken", "choices": [{"index": 0, "message": {"content": "',
                            media_type="application/json")

        async def cut() -> Any:
            yield b'{"id": "chatcmpl-cut", "choices": ['
            raise ConnectionAbortedError("fake_vlm: scripted cut connection")

        return StreamingResponse(cut(), media_type="application/json")


def serve_until_stdin_closes(content: str | Mapping[str, Any] | BaseModel | None = None, *,
                             fn: Callable[[dict[str, Any]], Any] | None = None) -> None:
    """A benchmark's `--serve` child mode: a fake server answering `content` (or `fn(body)`), its base URL printed
    on stdout, stopped when stdin closes (see `server_in_child`)."""
    with FakeVLMServer() as server:
        server.script.default(content, fn=fn)
        print(server.base_url, flush=True)
        sys.stdin.read()


@contextlib.contextmanager
def server_in_child(script: str | Path, *, cwd: str | Path | None = None,
                    wait: float = 20.0) -> Iterator[FakeVLMServer]:
    """Run `python SCRIPT --serve` (which calls `serve_until_stdin_closes`) in its own process, so the server and
    the client under test share no GIL; yields a handle whose `base_url` / `model` point at it (for
    `endpoint_config`, not started here). The child stops when the block ends."""
    child = subprocess.Popen([sys.executable, str(script), "--serve"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, cwd=cwd)
    try:
        base_url = child.stdout.readline().strip() if child.stdout else ""
        handle = FakeVLMServer()
        handle.port = int(base_url.rsplit(":", 1)[1].split("/")[0])
        yield handle
    finally:
        if child.stdin:
            child.stdin.close()
        child.wait(timeout=wait)


def endpoint_config(fake_vlm: FakeVLMServer, **overrides: Any) -> EndpointConfig:
    """An EndpointConfig pointed at the fake server (dialect vllm, 5 s timeout, 3 retries unless overridden).

    Example:
        >>> cfg = endpoint_config(fake_vlm, dialect="openai", max_retries=5)       # doctest: +SKIP
    """
    values: dict[str, Any] = {"base_url": fake_vlm.base_url, "model": fake_vlm.model, "api_key_env": API_KEY_ENV,
                              "dialect": "vllm", "timeout": 5.0, "max_retries": 3, "max_concurrency": 8}
    values.update(overrides)
    return EndpointConfig(**values)


def make_client(fake_vlm: FakeVLMServer, *, cache_dir: Any = None, sleep: Any = None,
                **overrides: Any) -> VLMClient:
    """A VLMClient on the fake server with millisecond backoff (so fault tests run fast)."""
    extra: dict[str, Any] = {} if sleep is None else {"_sleep": sleep}
    return VLMClient(endpoint_config(fake_vlm, **overrides), cache_dir=cache_dir, _backoff_base=0.001,
                     _backoff_max=0.01, **extra)


@pytest.fixture(scope="session")
def fake_vlm_server() -> Iterator[FakeVLMServer]:
    """One fake server for the whole session (use `fake_vlm`, which resets it per test)."""
    with FakeVLMServer() as server:
        yield server


@pytest.fixture()
def fake_vlm(fake_vlm_server: FakeVLMServer) -> Iterator[FakeVLMServer]:
    """The fake VLM server with an empty script and recorder."""
    fake_vlm_server.reset()
    yield fake_vlm_server
    fake_vlm_server.reset()
