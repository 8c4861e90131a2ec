"""The critic as a reward server for online RL trainers, speaking Flow-Factory's HTTP reward-server protocol.

Protocol (X-GenGroup/Flow-Factory, `RemotePointwiseRewardModel` / `RemoteGroupwiseRewardModel`):
- `GET /health` -> `{"status": "ok", ...}` (the client checks it before training);
- `POST /compute` with JSON `{"prompt": [str, ...], "image": [base64 PNG/JPEG, ...], "video": ...,
  "condition_images": ..., "extra": {...}}` -> `{"rewards": [float, ...]}`, one reward per image, in order.
Ours adds `components` (raw objective values), `z` and `weights` to the reply; a trainer reads `rewards`.

Groups: images that share a prompt form a group (a groupwise request is one group); each objective is
z-scored within its group and the weighted sum is the reward (train/scorers.py). Descriptions come from
`extra.content` / `extra.composition` (lists, one per image) when given, else from the prompt's
[Content]/[Composition] sections, else the whole prompt is the content.

Errors: a bad request (a missing field, lengths that differ, too many images) is a 400; an image that is not
valid base64 or not a decodable image is a 400 naming it (`image[3]: ...`); a scorer failing is a 502
naming the scorer and the image. At most `[reward] max_concurrency` requests are scored at once (others
wait). `GET /metrics` gives Prometheus text: requests, images, errors, latency, in-flight counts.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import time
from collections import Counter
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from PIL import Image

from portraitcraft.config import RewardConfig
from portraitcraft.train.scorers import Sample, ScorerSet, combine, split_prompt


class RewardRequestError(Exception):
    """A request the server refuses: HTTP status and a message naming the field or image."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def decode_b64_image(data: Any, index: int, max_bytes: int) -> Image.Image:
    """The RGB image of one base64 entry (a data URL prefix is accepted); RewardRequestError naming it."""
    if not isinstance(data, str) or not data:
        raise RewardRequestError(400, f"image[{index}]: expected a base64 string, got {type(data).__name__}")
    if data.startswith("data:"):
        data = data.split(",", 1)[-1]
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise RewardRequestError(400, f"image[{index}]: not valid base64") from None
    if len(raw) > max_bytes:
        raise RewardRequestError(413, f"image[{index}]: {len(raw)} bytes, over the {max_bytes}-byte limit")
    try:
        with Image.open(io.BytesIO(raw)) as im:
            im.load()
            return im.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise RewardRequestError(400, f"image[{index}]: not a decodable image ({exc})") from None


def parse_request(body: Any, cfg: RewardConfig) -> list[Sample]:
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
    samples = []
    for i, (prompt, data) in enumerate(zip(prompts, images, strict=True)):
        image = decode_b64_image(data, i, cfg.max_image_bytes)
        content, composition = split_prompt(prompt)
        if contents is not None:
            content, composition = str(contents[i]), str(compositions[i]) if compositions is not None else ""
        samples.append(Sample(prompt=prompt, content=content, composition=composition, image=image))
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

    async def compute(self, body: Any) -> dict[str, Any]:
        started = time.perf_counter()
        self.counts["requests"] += 1
        try:
            samples = parse_request(body, self.cfg)
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
        groups = [s.prompt for s in samples]
        rewards, z, used = combine(components, self.cfg.weights, groups)
        self.counts["images"] += len(samples)
        self.seconds += time.perf_counter() - started
        return {"rewards": rewards, "components": components, "z": z, "weights": used}

    async def _score(self, samples: list[Sample]) -> dict[str, list[float | None]]:
        async def one(scorer: Any, i: int, sample: Sample) -> dict[str, float | None]:
            try:
                return await scorer.score(sample)
            except Exception as exc:  # any scorer failure names the scorer and the image
                raise RewardRequestError(502, f"scorer {scorer.name} failed on image[{i}]: "
                                              f"{type(exc).__name__}: {exc}") from None

        components: dict[str, list[float | None]] = {}
        for scorer in self.scorers.scorers:
            results = await asyncio.gather(*(one(scorer, i, s) for i, s in enumerate(samples)))
            for objective in scorer.objectives:
                components[objective] = [r.get(objective) for r in results]
        return components

    def health(self) -> dict[str, Any]:
        return {"status": "ok", "objectives": self.scorers.objectives, "skipped": self.scorers.skipped,
                "weights": self.cfg.weights}

    def metrics_text(self) -> str:
        lines = [
            "# TYPE reward_requests_total counter", f"reward_requests_total {self.counts['requests']}",
            "# TYPE reward_images_total counter", f"reward_images_total {self.counts['images']}",
            "# TYPE reward_errors_total counter",
            *(f'reward_errors_total{{status="{s}"}} {n}' for s, n in sorted(self.errors.items())),
            "# TYPE reward_seconds_total counter", f"reward_seconds_total {self.seconds:.6f}",
            "# TYPE reward_in_flight gauge", f"reward_in_flight {self.in_flight}",
            "# TYPE reward_max_in_flight gauge", f"reward_max_in_flight {self.max_in_flight}",
            "# TYPE reward_max_concurrency gauge", f"reward_max_concurrency {self.cfg.max_concurrency}",
            "# TYPE reward_objective_available gauge",
            *(f'reward_objective_available{{objective="{o}"}} 1' for o in self.scorers.objectives),
            *(f'reward_objective_available{{objective="{o}"}} 0' for o in self.scorers.skipped),
        ]
        return "\n".join(lines) + "\n"


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
    async def health() -> dict[str, Any]:
        return service.health()

    @app.post("/compute")
    async def compute(request: Request) -> Any:
        try:
            body = await request.json()
        except ValueError:
            service.errors[400] += 1
            return JSONResponse({"error": "the body is not JSON", "detail": "the body is not JSON"}, status_code=400)
        try:
            return await service.compute(body)
        except RewardRequestError as exc:
            return JSONResponse({"error": str(exc), "detail": str(exc)}, status_code=exc.status)

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(service.metrics_text(), media_type="text/plain; version=0.0.4")

    return app
