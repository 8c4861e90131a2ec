"""The reward server over real HTTP (uvicorn on 127.0.0.1, httpx): Flow-Factory's /health and /compute, group
z-scores with the judge behind the fake VLM (hand-computed), bad images named in a 4xx, bounded concurrency,
/metrics, scorers skipped with a message, and the `portraitcraft serve reward` command."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fake_vlm import API_KEY_ENV, FakeVLMServer
from local_server import LocalServer
from PIL import Image

from portraitcraft.agents.judge import Judge
from portraitcraft.config import JudgeConfig, RewardConfig, load_config
from portraitcraft.tools.vlm import VLMClient
from portraitcraft.train.scorers import JudgeScorer, Sample, ScorerSet, build_scorers

ROOT = Path(__file__).resolve().parent.parent
PROMPT_A = ("Generate an image based on the following description.\n\n[Content]\nA woman in a red coat.\n\n"
            "[Composition]\nShe stands on the left third.")
PROMPT_B = "A man on a bench, centred."


class RewardServer(LocalServer):
    """The reward app on 127.0.0.1, port 0, with its lifespan on: the scorers' clients close in its loop."""

    name = "reward-server"

    def __init__(self, app: Any) -> None:
        super().__init__()
        self.app = app

    def start(self) -> RewardServer:
        config = uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="critical", access_log=False,
                                lifespan="on", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True, name=self.name)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert time.monotonic() < deadline and self._thread.is_alive(), "reward server did not start"
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def b64_image(red: int, size: int = 16) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (red, 0, 0)).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def red_of(body: dict[str, Any]) -> int:
    user = next(m for m in body["messages"] if m["role"] == "user")
    url = next(p["image_url"]["url"] for p in user["content"] if p["type"] == "image_url")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB").getpixel((0, 0))[0]


# the judge's scores by image (red channel): content, composition
SCORES = {10: (60, 40), 20: (70, 40), 30: (80, 40), 40: (90, 80), 50: (50, 30), 60: (50, 70)}


def judge_reply(body: dict[str, Any]) -> dict[str, Any]:
    content, composition = SCORES[red_of(body)]
    return {"content_reason": "c", "content_score": content, "composition_reason": "p",
            "composition_score": composition}


def judge_cfg(fake: FakeVLMServer) -> JudgeConfig:
    return JudgeConfig(base_url=fake.base_url, model=fake.model, api_key_env=API_KEY_ENV, kind="vllm", timeout=5.0,
                       max_retries=1, mode="sampled", samples=1)


@pytest.fixture()
def judge_server(fake_vlm: FakeVLMServer) -> Iterator[RewardServer]:
    from portraitcraft.train.reward_server import build_app

    fake_vlm.script.default(fn=judge_reply)
    client = VLMClient(judge_cfg(fake_vlm), cache_dir=None, _backoff_base=0.001, _backoff_max=0.01)
    scorers = ScorerSet([JudgeScorer(Judge(judge_cfg(fake_vlm), client), client)])
    cfg = RewardConfig(weights={"content": 0.25, "composition": 0.25, "geometry": 0.0}, max_concurrency=4)
    with RewardServer(build_app(scorers, cfg)) as server:
        yield server


def test_group_zscores_with_the_judge_hand_computed(judge_server: RewardServer, fake_vlm: FakeVLMServer) -> None:
    reds = [10, 20, 30, 40, 50, 60]
    body = {"prompt": [PROMPT_A] * 4 + [PROMPT_B] * 2, "image": [b64_image(r) for r in reds]}
    with httpx.Client(base_url=judge_server.url, timeout=30) as http:
        assert http.get("/health").json()["status"] == "ok"
        reply = http.post("/compute", json=body)
    assert reply.status_code == 200, reply.text
    data = reply.json()
    # group A (4 images): content 60,70,80,90 -> mean 75, std sqrt(125); composition 40,40,40,80 -> mean 50,
    # std sqrt(300). Group B: content 50,50 -> z 0; composition 30,70 -> z -1, +1. Weights 0.25/0.25 -> 0.5/0.5.
    cz = [-15 / 125**0.5, -5 / 125**0.5, 5 / 125**0.5, 15 / 125**0.5, 0.0, 0.0]
    pz = [-10 / 300**0.5, -10 / 300**0.5, -10 / 300**0.5, 30 / 300**0.5, -1.0, 1.0]
    expected = [0.5 * c + 0.5 * p for c, p in zip(cz, pz, strict=True)]
    assert data["rewards"] == pytest.approx(expected, abs=1e-9)
    assert data["rewards"][:4] == pytest.approx([-0.959496, -0.512282, -0.065068, 1.536846], abs=1e-6)
    assert data["components"]["content"] == [60, 70, 80, 90, 50, 50]
    assert data["weights"] == {"content": 0.5, "composition": 0.5}
    # the judge got the [Content] / [Composition] sections of the prompt, not the layout around them
    texts = [str(r.body["messages"]) for r in fake_vlm.chat_requests]
    assert any("A woman in a red coat." in t and "She stands on the left third." in t for t in texts)
    assert not any("Generate an image based" in t for t in texts)


def test_a_bad_image_is_a_4xx_naming_it(judge_server: RewardServer) -> None:
    with httpx.Client(base_url=judge_server.url, timeout=30) as http:
        corrupt = base64.b64encode(b"\x89PNG\r\n\x1a\n not really").decode()
        reply = http.post("/compute", json={"prompt": [PROMPT_A] * 3, "image": [b64_image(10), corrupt,
                                                                                b64_image(20)]})
        assert reply.status_code == 400 and reply.json()["error"].startswith("image[1]: not a decodable image")
        reply = http.post("/compute", json={"prompt": [PROMPT_A] * 2, "image": [b64_image(10), "***"]})
        assert reply.status_code == 400 and reply.json()["error"] == "image[1]: not valid base64"
        reply = http.post("/compute", json={"prompt": [PROMPT_A], "image": [b64_image(10), b64_image(20)]})
        assert reply.status_code == 400 and "1 prompts for 2 images" in reply.json()["error"]
        reply = http.post("/compute", content=b"not json", headers={"content-type": "application/json"})
        assert reply.status_code == 400
        metrics = http.get("/metrics").text
    assert 'reward_errors_total{status="400"} 4' in metrics
    assert "reward_images_total 0" in metrics


class SlowScorer:
    """A stand-in objective that takes a while and records how many requests it served at once."""

    name = "slow"
    objectives = ("geometry",)

    def __init__(self) -> None:
        self.active = 0
        self.peak = 0

    async def score(self, sample: Sample) -> dict[str, float | None]:
        self.active += 1
        self.peak = max(self.peak, self.active)
        await asyncio.sleep(0.15)
        self.active -= 1
        if sample.image.getpixel((0, 0))[0] == 99:
            raise RuntimeError("measurement failed")
        return {"geometry": sample.image.getpixel((0, 0))[0] / 100}

    async def aclose(self) -> None:
        return None


def test_concurrent_requests_are_bounded_and_metrics_count_them() -> None:
    from portraitcraft.train.reward_server import build_app

    slow = SlowScorer()
    cfg = RewardConfig(weights={"geometry": 1.0}, max_concurrency=2)
    with RewardServer(build_app(ScorerSet([slow], skipped={"rules": "not here"}), cfg)) as server:

        async def fire() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                return await asyncio.gather(*(http.post("/compute", json={"prompt": ["p"], "image": [b64_image(i)]})
                                              for i in range(6)))

        replies = asyncio.run(fire())
        assert all(r.status_code == 200 for r in replies)
        assert [r.json()["rewards"] for r in replies] == [[0.0]] * 6  # one image per group: z = 0
        failing = httpx.post(f"{server.url}/compute", json={"prompt": ["p", "p"], "image": [b64_image(1),
                                                                                          b64_image(99)]})
        metrics = httpx.get(f"{server.url}/metrics").text
        health = httpx.get(f"{server.url}/health").json()
    assert slow.peak == 2  # six requests at once, never more than max_concurrency scored together
    assert "reward_max_in_flight 2" in metrics and "reward_requests_total 7" in metrics
    assert failing.status_code == 502 and failing.json()["error"].startswith("scorer slow failed on image[1]")
    assert 'reward_objective_available{objective="rules"} 0' in metrics
    assert health["objectives"] == ["geometry"] and health["skipped"] == {"rules": "not here"}


def test_missing_scorers_are_skipped_with_a_message(monkeypatch: pytest.MonkeyPatch, fake_vlm: FakeVLMServer) -> None:
    monkeypatch.setitem(sys.modules, "portraitcraft.agents.critic", None)  # as if the rule critic were not installed
    monkeypatch.setitem(sys.modules, "portraitcraft.agents.geometry_critic", None)
    cfg = load_config(overrides={"judge": {"base_url": fake_vlm.base_url},
                                 "reward": {"weights": {"geometry": 1, "rules": 1, "content": 1, "composition": 0,
                                                        "aesthetics": 1}}})
    scorers = build_scorers(cfg)
    assert scorers.objectives == ["content", "composition"]
    assert set(scorers.skipped) == {"geometry", "rules", "aesthetics"}
    assert "geometric critic is not available" in scorers.skipped["geometry"]
    assert "rule critic is not available" in scorers.skipped["rules"]
    asyncio.run(scorers.aclose())


def all_objectives_reply(body: dict[str, Any]) -> dict[str, Any]:
    """The judge's verdict for judge requests; for rule requests, every rule fires on images redder than 25."""
    if "content_score" in json.dumps(body):
        return judge_reply(body)
    return {"detected": red_of(body) > 25, "evidence": "seen", "instruction": "fix it"}


def test_all_four_objectives_score_one_group(fake_vlm: FakeVLMServer, tmp_path: Path) -> None:
    """geometry (real vision models), rules (the critic on the fake VLM), content and composition (the judge)."""
    pytest.importorskip("mediapipe")
    from portraitcraft.train.reward_server import build_app

    fake_vlm.script.default(fn=all_objectives_reply)
    endpoint = {"base_url": fake_vlm.base_url, "model": fake_vlm.model, "api_key_env": API_KEY_ENV,
                "max_retries": 1, "cache": False}
    cfg = load_config(overrides={"judge": {**endpoint, "mode": "sampled", "samples": 1}, "critic": endpoint,
                                 "run": {"cache_dir": str(tmp_path / "cache")}})
    scorers = build_scorers(cfg)
    assert scorers.objectives == ["geometry", "rules", "content", "composition"] and scorers.skipped == {}
    with RewardServer(build_app(scorers, cfg.reward)) as server:
        reply = httpx.post(f"{server.url}/compute", timeout=60,
                           json={"prompt": [PROMPT_A] * 2, "image": [b64_image(10, 64), b64_image(40, 64)]})
    assert reply.status_code == 200, reply.text
    data = reply.json()
    # no person in either picture: both fail the same geometric checks (z 0); every rule passes on the first
    # image and fires on the second (z +1, -1); the judge: content 60/90, composition 40/80 (z -1, +1)
    assert data["components"]["geometry"][0] == data["components"]["geometry"][1] < 1.0
    assert data["components"]["rules"] == [1.0, 0.0]
    assert data["z"]["rules"] == [1.0, -1.0] and data["z"]["geometry"] == [0.0, 0.0]
    w = cfg.reward.weights
    total = sum(w.values())
    expected0 = (w["rules"] * 1 + w["content"] * -1 + w["composition"] * -1) / total
    assert data["rewards"] == pytest.approx([expected0, -expected0], abs=1e-9)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_reward_command(fake_vlm: FakeVLMServer, tmp_path: Path) -> None:
    fake_vlm.script.default(fn=judge_reply)
    port = _free_port()
    config = tmp_path / "reward.toml"
    config.write_text(f'[judge]\nbase_url = "{fake_vlm.base_url}"\nmodel = "{fake_vlm.model}"\nmode = "sampled"\n'
                      f'samples = 1\napi_key_env = "{API_KEY_ENV}"\n\n[run]\ncache_dir = "{tmp_path / "cache"}"\n\n'
                      '[reward]\nweights = { geometry = 0.0, rules = 0.0, content = 0.5, composition = 0.5 }\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "portraitcraft.cli", "serve", "reward", "--config", str(config),
                             "--port", str(port)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json()
                break
            except httpx.HTTPError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                assert time.monotonic() < deadline, "reward server did not start"
                time.sleep(0.2)
        assert health["objectives"] == ["content", "composition"] and health["skipped"] == {}
        reply = httpx.post(f"http://127.0.0.1:{port}/compute", timeout=30,
                           json={"prompt": [PROMPT_A, PROMPT_A], "image": [b64_image(10), b64_image(40)]})
        assert reply.status_code == 200, reply.text
        assert len(reply.json()["rewards"]) == 2
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
