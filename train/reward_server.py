"""The critic as a reward server for online RL trainers, speaking Flow-Factory's HTTP reward-server protocol.

Protocol (X-GenGroup/Flow-Factory, `RemotePointwiseRewardModel` / `RemoteGroupwiseRewardModel`):
- `GET /health` -> `{"status": "ok", ...}` (the client checks it before training);
- `POST /compute` with JSON `{"prompt": [str, ...], "image": [base64 PNG/JPEG, ...], "video": ...,
  "condition_images": ..., "extra": {...}}` -> `{"rewards": [float, ...]}`, one reward per image, in order.
Ours adds `components` (raw objective values), `z` (group) or `scaled` (none) and `weights` to the reply;
a trainer reads `rewards`.

Normalisation (`[reward] normalise`, `serve reward --normalise`): `group` z-scores each objective within the
images that share a prompt (a groupwise request is one group): for RemoteGroupwiseRewardModel. `none` gives
absolute rewards in [0, 1] that do not depend on the rest of the batch: for RemotePointwiseRewardModel.
Descriptions come from `extra.content` / `extra.composition` (lists, one per image) when given, else from the
prompt's [Content]/[Composition] sections, else the whole prompt is the content.

`condition_images` (one list per image; the first entry is the source of an edit) add the `fidelity`
objective (drift from the source, train/scorers.py); a server without it refuses them with a 400 rather than
ignoring them.

`GET /health` probes every scorer's endpoint: 200 `{"status": "ok", ...}`, or 503 `{"status": "unavailable",
"unreachable": {scorer: reason}}` when any does not answer (the trainer's client then refuses to start).

Errors: a body over `[reward] max_body_mb` is a 413 before it is read whole; a body that is not JSON or is
nested too deeply is a 400; a bad request (a missing field, lengths that differ, too many images) is a 400;
an image that is not valid base64 or not a decodable image is a 400 naming it (`image[3]: ...`); a scorer
failing is a 502 naming the scorer and the image. At most `[reward] max_concurrency` requests are scored at
once (others wait). An identical body that is being scored, or was answered within `[reward] dedupe_seconds`,
gets that answer (a client's retry after its timeout is not judged again). `GET /metrics` gives Prometheus
text: requests, images, errors by status, dedupe hits, latency, in-flight counts.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import io
import json
import time
from collections import Counter, OrderedDict
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from PIL import Image

from portraitcraft.config import RewardConfig
from portraitcraft.train.scorers import Sample, ScorerSet, absolute_rewards, combine, split_prompt

MAX_REMEMBERED = 256
"""Answered bodies kept for the dedupe window at most (their replies, not the bodies)."""


class RewardRequestError(Exception):
    """A request the server refuses: HTTP status and a message naming the field or image."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def decode_b64_image(data: Any, index: int, max_bytes: int, *, field: str = "image") -> Image.Image:
    """The RGB image of one base64 entry (a data URL prefix is accepted); RewardRequestError naming it."""
    if not isinstance(data, str) or not data:
        raise RewardRequestError(400, f"{field}[{index}]: expected a base64 string, got {type(data).__name__}")
    if data.startswith("data:"):
        data = data.split(",", 1)[-1]
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise RewardRequestError(400, f"{field}[{index}]: not valid base64") from None
    if len(raw) > max_bytes:
        raise RewardRequestError(413, f"{field}[{index}]: {len(raw)} bytes, over the {max_bytes}-byte limit")
    try:
        with Image.open(io.BytesIO(raw)) as im:
            im.load()
            return im.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise RewardRequestError(400, f"{field}[{index}]: not a decodable image ({exc})") from None


def parse_body(raw: bytes) -> Any:
    """The JSON of a /compute body; RewardRequestError(400) for malformed or too deeply nested JSON."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise RewardRequestError(400, "the body is JSON nested too deeply") from None
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        raise RewardRequestError(400, "the body is not JSON") from None


def _conditions(body: dict[str, Any], n: int, cfg: RewardConfig, takes_conditions: bool) -> list[Image.Image | None]:
    """The source image of each sample from `condition_images` (None where a sample sends none)."""
    given = body.get("condition_images")
    if body.get("condition_videos"):
        raise RewardRequestError(400, "condition_videos: this server scores images, not videos")
    if not given:
        return [None] * n
    if not takes_conditions:
        raise RewardRequestError(400, "condition_images were sent but the fidelity objective is not enabled on this "
                                      "server (set reward.weights.fidelity > 0 where the vision extra is installed); "
                                      "refusing rather than scoring edits without their sources")
    if not isinstance(given, list) or len(given) != n or not all(isinstance(c, list | None) for c in given):
        raise RewardRequestError(400, "condition_images must be a list with one list of base64 images per image")
    return [decode_b64_image(c[0], i, cfg.max_image_bytes, field="condition_images") if c else None
            for i, c in enumerate(given)]


def parse_request(body: Any, cfg: RewardConfig, *, takes_conditions: bool = False) -> list[Sample]:
    """The samples of a /compute body, or RewardRequestError saying what is wrong."""
    if not isinstance(body, dict):
        raise RewardRequestError(400, "the body must be a JSON object with 'prompt' and 'image' lists")
    prompts, images = body.get("prompt"), body.get("image")
    if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
        raise RewardRequestError(400, "'prompt' must be a list of strings")
    if not isinstance(images, list) or not images:
        raise RewardRequestError(400, "'image' must be a non-empty list of base64 images (this server scores "
                                      "images, not videos)")
    if len(prompts) != len(images):
        raise RewardRequestError(400, f"{len(prompts)} prompts for {len(images)} images: one prompt per image")
    if len(images) > cfg.max_images:
        raise RewardRequestError(413, f"{len(images)} images in one request, over [reward] max_images = "
                                      f"{cfg.max_images}")
    extra = body.get("extra") or {}
    contents, compositions = extra.get("content"), extra.get("composition")
    for name, given in (("content", contents), ("composition", compositions)):
        if given is not None and (not isinstance(given, list) or len(given) != len(images)):
            raise RewardRequestError(400, f"extra.{name} must be a list with one string per image")
    conditions = _conditions(body, len(images), cfg, takes_conditions)
    samples = []
    for i, (prompt, data) in enumerate(zip(prompts, images, strict=True)):
        image = decode_b64_image(data, i, cfg.max_image_bytes)
        content, composition = split_prompt(prompt)
        if contents is not None:
            content, composition = str(contents[i]), str(compositions[i]) if compositions is not None else ""
        samples.append(Sample(prompt=prompt, content=content, composition=composition, image=image,
                              condition=conditions[i]))
    return samples


class RewardService:
    """Scores requests with a scorer set under a concurrency bound, and keeps the counters /metrics shows."""

    def __init__(self, scorers: ScorerSet, cfg: RewardConfig) -> None:
        self.scorers, self.cfg = scorers, cfg
        self.limit = asyncio.Semaphore(cfg.max_concurrency)
        self.counts: Counter[str] = Counter()
        self.errors: Counter[int] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.seconds = 0.0
        self.pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.answered: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()

    def refuse(self, exc: RewardRequestError) -> RewardRequestError:
        """Count a refused request (every 4xx/5xx reaches /metrics) and hand the error back to raise."""
        self.counts["requests"] += 1
        self.errors[exc.status] += 1
        return exc

    def _parsed(self, raw: bytes) -> Any:
        try:
            return parse_body(raw)
        except RewardRequestError as exc:
            raise self.refuse(exc) from None

    def _remembered(self, key: str) -> dict[str, Any] | None:
        now = time.monotonic()
        while self.answered:
            oldest, (when, _) = next(iter(self.answered.items()))
            if now - when <= self.cfg.dedupe_seconds:
                break
            del self.answered[oldest]
        hit = self.answered.get(key)
        return hit[1] if hit is not None else None

    async def compute_raw(self, raw: bytes) -> dict[str, Any]:
        """Score a /compute body; an identical body in flight or answered within the dedupe window shares that
        answer instead of being scored again."""
        if self.cfg.dedupe_seconds <= 0:
            return await self.compute(self._parsed(raw))
        key = hashlib.sha256(raw).hexdigest()
        remembered = self._remembered(key)
        if remembered is not None or key in self.pending:
            self.counts["requests"] += 1
            self.counts["dedupe_hits"] += 1
            return remembered if remembered is not None else await asyncio.shield(self.pending[key])
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[key] = future
        try:
            reply = await self.compute(self._parsed(raw))
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        finally:
            self.pending.pop(key, None)
        future.set_result(reply)
        self.answered[key] = (time.monotonic(), reply)
        while len(self.answered) > MAX_REMEMBERED:
            self.answered.popitem(last=False)
        return reply

    async def compute(self, body: Any) -> dict[str, Any]:
        started = time.perf_counter()
        self.counts["requests"] += 1
        try:
            samples = parse_request(body, self.cfg, takes_conditions=self.scorers.takes_conditions)
            async with self.limit:
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                try:
                    components = await self._score(samples)
                finally:
                    self.in_flight -= 1
        except RewardRequestError as exc:
            self.errors[exc.status] += 1
            raise
        self.counts["images"] += len(samples)
        self.seconds += time.perf_counter() - started
        if self.cfg.normalise == "none":
            rewards, scaled, used = absolute_rewards(components, self.cfg.weights, len(samples))
            return {"rewards": rewards, "components": components, "scaled": scaled, "weights": used,
                    "normalise": "none"}
        groups = [s.prompt for s in samples]
        rewards, z, used = combine(components, self.cfg.weights, groups)
        return {"rewards": rewards, "components": components, "z": z, "weights": used, "normalise": "group"}

    async def _score(self, samples: list[Sample]) -> dict[str, list[float | None]]:
        async def one(scorer: Any, i: int, sample: Sample) -> dict[str, float | None]:
            try:
                return await scorer.score(sample)
            except Exception as exc:  # any scorer failure names the scorer and the image
                raise RewardRequestError(502, f"scorer {scorer.name} failed on image[{i}]: "
                                              f"{type(exc).__name__}: {exc}") from None

        with_sources = any(s.condition is not None for s in samples)
        components: dict[str, list[float | None]] = {}
        for scorer in self.scorers.scorers:
            if getattr(scorer, "needs_condition", False) and not with_sources:
                continue  # fidelity only where the request sent sources
            results = await asyncio.gather(*(one(scorer, i, s) for i, s in enumerate(samples)))
            for objective in scorer.objectives:
                components[objective] = [r.get(objective) for r in results]
        return components

    async def health(self) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body): 503 naming every scorer whose endpoint does not answer."""
        unreachable = await self.scorers.unreachable()
        body = {"status": "unavailable" if unreachable else "ok", "objectives": self.scorers.objectives,
                "unreachable": unreachable, "skipped": self.scorers.skipped, "weights": self.cfg.weights,
                "normalise": self.cfg.normalise}
        return (503 if unreachable else 200), body

    def metrics_text(self) -> str:
        lines = [
            "# TYPE reward_requests_total counter", f"reward_requests_total {self.counts['requests']}",
            "# TYPE reward_images_total counter", f"reward_images_total {self.counts['images']}",
            "# TYPE reward_errors_total counter",
            *(f'reward_errors_total{{status="{s}"}} {n}' for s, n in sorted(self.errors.items())),
            "# TYPE reward_dedupe_hits_total counter", f"reward_dedupe_hits_total {self.counts['dedupe_hits']}",
            "# TYPE reward_seconds_total counter", f"reward_seconds_total {self.seconds:.6f}",
            "# TYPE reward_in_flight gauge", f"reward_in_flight {self.in_flight}",
            "# TYPE reward_max_in_flight gauge", f"reward_max_in_flight {self.max_in_flight}",
            "# TYPE reward_max_concurrency gauge", f"reward_max_concurrency {self.cfg.max_concurrency}",
            "# TYPE reward_objective_available gauge",
            *(f'reward_objective_available{{objective="{o}"}} 1' for o in self.scorers.objectives),
            *(f'reward_objective_available{{objective="{o}"}} 0' for o in self.scorers.skipped),
        ]
        return "\n".join(lines) + "\n"


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to be over `max_bytes` (from Content-Length
    before reading anything, else while streaming): never buffered whole past the cap."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise RewardRequestError(400, f"Content-Length {declared[:40]!r} is not a number")
        if int(declared) > max_bytes:
            raise RewardRequestError(413, f"the body is {int(declared)} bytes, over the {max_bytes}-byte limit "
                                          "([reward] max_body_mb)")
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > max_bytes:
            raise RewardRequestError(413, f"the body is over the {max_bytes}-byte limit ([reward] max_body_mb)")
        chunks.append(chunk)
    return b"".join(chunks)


def build_app(scorers: ScorerSet, cfg: RewardConfig) -> FastAPI:
    """The FastAPI app: /health, /compute, /metrics. The scorers' clients are closed at shutdown.

    Example:
        >>> app = build_app(build_scorers(load_config("configs/zimage-turbo.toml")), cfg.reward)  # doctest: +SKIP
        >>> uvicorn.run(app, host="127.0.0.1", port=8765)  # doctest: +SKIP
    """
    service = RewardService(scorers, cfg)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        yield
        await scorers.aclose()

    app = FastAPI(title="portraitcraft reward server", lifespan=lifespan)
    app.state.service = service

    @app.get("/health")
    async def health() -> JSONResponse:
        status, body = await service.health()
        return JSONResponse(body, status_code=status)

    @app.post("/compute")
    async def compute(request: Request) -> Any:
        try:
            raw = await read_body(request, cfg.max_body_mb * 1024 * 1024)
        except RewardRequestError as exc:
            service.refuse(exc)
            return JSONResponse({"error": str(exc), "detail": str(exc)}, status_code=exc.status,
                                headers={"Connection": "close"})
        try:
            return await service.compute_raw(raw)
        except RewardRequestError as exc:
            return JSONResponse({"error": str(exc), "detail": str(exc)}, status_code=exc.status)

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(service.metrics_text(), media_type="text/plain; version=0.0.4")

    return app
