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
    assert scorers.objectives == ["geometry", "rules", "content", "composition", "fidelity"]
    assert scorers.skipped == {}
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
    assert "fidelity" not in data["components"]  # no condition_images: no fidelity objective
    w = cfg.reward.weights
    total = sum(w[k] for k in ("geometry", "rules", "content", "composition"))
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


# ------------------------------------------------------------------------------------ hardening and consumers


class FixedScorer:
    """A local objective: the image's red channel / 100 (the same value however a batch is cut)."""

    name = "fixed"
    objectives = ("geometry",)

    def __init__(self) -> None:
        self.calls = 0

    async def score(self, sample: Sample) -> dict[str, float | None]:
        self.calls += 1
        await asyncio.sleep(0.05)
        return {"geometry": sample.image.getpixel((0, 0))[0] / 100}

    async def aclose(self) -> None:
        return None


def test_body_cap_deep_and_malformed_json_are_4xx_and_counted() -> None:
    from portraitcraft.train.reward_server import build_app

    cfg = RewardConfig(weights={"geometry": 1.0}, max_body_mb=1)
    with RewardServer(build_app(ScorerSet([FixedScorer()]), cfg)) as server, \
            httpx.Client(base_url=server.url, timeout=30) as http:
        big = http.post("/compute", content=b"x" * (3 * 1024 * 1024), headers={"content-type": "application/json"})

        def chunks() -> Iterator[bytes]:  # no Content-Length: refused while streaming
            for _ in range(40):
                yield b" " * 65536

        streamed = http.post("/compute", content=chunks(), headers={"content-type": "application/json"})
        deep = http.post("/compute", content=b"[" * 100_000 + b"]" * 100_000)
        malformed = http.post("/compute", content=b'{"prompt": ["a"], "image": [')
        alive = http.post("/compute", json={"prompt": ["p"], "image": [b64_image(30)]})
        metrics = http.get("/metrics").text
    assert big.status_code == 413 and "over the 1048576-byte limit" in big.json()["error"]
    assert streamed.status_code == 413
    assert deep.status_code == 400 and "nested too deeply" in deep.json()["error"]
    assert malformed.status_code == 400 and malformed.json()["error"] == "the body is not JSON"
    assert alive.status_code == 200
    assert 'reward_errors_total{status="413"} 2' in metrics and 'reward_errors_total{status="400"} 2' in metrics
    assert "reward_requests_total 5" in metrics


def test_normalise_none_gives_the_same_reward_however_the_batch_is_cut() -> None:
    from portraitcraft.train.reward_server import build_app

    cfg = RewardConfig(weights={"geometry": 1.0}, normalise="none", dedupe_seconds=0)
    reds = [10, 40, 70]
    with RewardServer(build_app(ScorerSet([FixedScorer()]), cfg)) as server, \
            httpx.Client(base_url=server.url, timeout=30) as http:
        def rewards(cut: list[int], prompts: list[str]) -> list[float]:
            reply = http.post("/compute", json={"prompt": prompts, "image": [b64_image(r) for r in cut]})
            assert reply.status_code == 200, reply.text
            return reply.json()["rewards"]

        whole = rewards(reds, ["same prompt"] * 3)
        split = rewards(reds[:1], ["same prompt"]) + rewards(reds[1:], ["other", "prompt"])
        alone = [rewards([r], ["p"])[0] for r in reds]
    assert whole == split == alone == pytest.approx([0.1, 0.4, 0.7])
    cfg_group = RewardConfig(weights={"geometry": 1.0}, normalise="group")
    with RewardServer(build_app(ScorerSet([FixedScorer()]), cfg_group)) as server:
        single = httpx.post(f"{server.url}/compute", json={"prompt": ["p"], "image": [b64_image(70)]}).json()
    assert single["rewards"] == [0.0]  # group z-scores: one image per prompt carries no signal


def test_absolute_rewards_scale_the_judge_and_skip_unmeasured() -> None:
    from portraitcraft.train.scorers import absolute_rewards

    rewards, scaled, used = absolute_rewards({"content": [80, 20], "composition": [60, None], "rules": [1.0, 0.5]},
                                             {"content": 0.2, "composition": 0.2, "rules": 0.6}, 2)
    assert scaled["content"] == [0.8, 0.2] and scaled["composition"] == [0.6, None]
    assert rewards == pytest.approx([0.2 * 0.8 + 0.2 * 0.6 + 0.6 * 1.0, (0.2 * 0.2 + 0.6 * 0.5) / 0.8])
    assert all(0.0 <= r <= 1.0 for r in rewards) and used == {"content": 0.2, "composition": 0.2, "rules": 0.6}


def test_an_identical_request_is_answered_once(judge_server: RewardServer, fake_vlm: FakeVLMServer) -> None:
    body = {"prompt": [PROMPT_A] * 2, "image": [b64_image(10), b64_image(40)]}

    async def retries() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=judge_server.url, timeout=30) as http:
            first = asyncio.gather(*(http.post("/compute", json=body) for _ in range(3)))  # in flight together
            replies = list(await first)
            replies.append(await http.post("/compute", json=body))  # a retry after the answer
            return replies

    replies = asyncio.run(retries())
    assert [r.status_code for r in replies] == [200] * 4
    assert len({json.dumps(r.json()["rewards"]) for r in replies}) == 1
    assert len(fake_vlm.chat_requests) == 2  # the judge saw each image once
    metrics = httpx.get(f"{judge_server.url}/metrics").text
    assert "reward_dedupe_hits_total 3" in metrics and "reward_images_total 2" in metrics


def test_health_is_503_naming_a_dead_judge(fake_vlm: FakeVLMServer) -> None:
    from portraitcraft.train.reward_server import build_app

    dead = judge_cfg(fake_vlm).model_copy(update={"base_url": f"http://127.0.0.1:{_free_port()}/v1"})
    live_client = VLMClient(judge_cfg(fake_vlm), cache_dir=None)
    dead_client = VLMClient(dead, cache_dir=None, _backoff_base=0.001, _backoff_max=0.01)
    dead_judge = JudgeScorer(Judge(dead, dead_client), dead_client, probe_timeout=2)
    dead_judge.name = "judge"
    cfg = RewardConfig(weights={"content": 1.0, "geometry": 1.0})
    with RewardServer(build_app(ScorerSet([FixedScorer(), dead_judge]), cfg)) as server:
        health = httpx.get(f"{server.url}/health", timeout=30)
    assert health.status_code == 503
    assert health.json()["status"] == "unavailable" and set(health.json()["unreachable"]) == {"judge"}
    assert "127.0.0.1" in health.json()["unreachable"]["judge"]
    live = JudgeScorer(Judge(judge_cfg(fake_vlm), live_client), live_client)
    with RewardServer(build_app(ScorerSet([live]), cfg)) as server:
        health = httpx.get(f"{server.url}/health", timeout=30)
    assert health.status_code == 200 and health.json()["unreachable"] == {}


def test_serving_caps_the_judge_deadline_below_the_client_timeout(fake_vlm: FakeVLMServer) -> None:
    cfg = load_config(overrides={"judge": {"base_url": fake_vlm.base_url, "item_deadline": 300},
                                 "reward": {"weights": {"content": 1, "geometry": 0, "rules": 0, "fidelity": 0}}})
    scorers = build_scorers(cfg)
    (judge,) = scorers.scorers
    assert judge.judge.cfg.item_deadline == cfg.reward.judge_deadline == 45.0 < 60  # Flow-Factory's default timeout
    asyncio.run(scorers.aclose())


def test_condition_images_score_fidelity_or_are_refused() -> None:
    pytest.importorskip("mediapipe")
    skimage_data = pytest.importorskip("skimage.data")
    from portraitcraft.train.reward_server import build_app

    source = Image.fromarray(skimage_data.astronaut()).resize((256, 256))
    edited = source.copy()
    edited.paste((0, 255, 0), (0, 0, 256, 90))  # the top of the frame repainted: background drift

    def b64(image: Image.Image) -> str:
        buf = io.BytesIO()
        image.save(buf, "PNG")
        return base64.b64encode(buf.getvalue()).decode()

    cfg = load_config(overrides={"reward": {"weights": {"fidelity": 1, "geometry": 0, "rules": 0, "content": 0,
                                                        "composition": 0}, "normalise": "none"}})
    body = {"prompt": ["an astronaut"] * 2, "image": [b64(source), b64(edited)],
            "condition_images": [[b64(source)], [b64(source)]], "video": None, "condition_videos": None}
    with RewardServer(build_app(build_scorers(cfg), cfg.reward)) as server:
        reply = httpx.post(f"{server.url}/compute", json=body, timeout=120)
    assert reply.status_code == 200, reply.text
    same, drifted = reply.json()["components"]["fidelity"]
    assert same == 1.0 and drifted < 0.9
    assert reply.json()["rewards"] == [same, drifted]
    no_fidelity = RewardConfig(weights={"geometry": 1.0})
    with RewardServer(build_app(ScorerSet([FixedScorer()]), no_fidelity)) as server:
        refused = httpx.post(f"{server.url}/compute", json=body, timeout=30)
    assert refused.status_code == 400 and "fidelity objective is not enabled" in refused.json()["error"]


def test_serve_reward_refuses_without_a_usable_objective_or_port(tmp_path: Path) -> None:
    from console_script import run_script_many

    dead = f"http://127.0.0.1:{_free_port()}/v1"
    config = tmp_path / "dead.toml"
    config.write_text(f'[judge]\nbase_url = "{dead}"\n\n[reward]\nweights = {{ geometry = 0.0, rules = 0.0, '
                      'content = 0.5, composition = 0.5, fidelity = 0.0 }\nprobe_timeout = 2.0\n')
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]
        no_objective, busy = run_script_many([
            ["serve", "reward", "--config", config, "--port", str(_free_port())],
            ["serve", "reward", "--config", config, "--port", str(taken)]], timeout=120)
    assert no_objective.code == 2, no_objective.stderr
    assert "unreachable judge" in no_objective.stderr and "no reward objective is usable" in no_objective.stderr
    assert busy.code == 3 and f"cannot listen on 127.0.0.1:{taken}" in busy.stderr
    assert "reward server on" not in busy.stdout + busy.stderr + no_objective.stdout


def test_flow_factory_own_clients_when_importable() -> None:
    """Flow-Factory's own remote reward clients against the server (runs where flow_factory imports, e.g.
    PYTHONPATH=<Flow-Factory checkout>/src; it is not on PyPI and pins protobuf>=6, which mediapipe excludes)."""
    remote = pytest.importorskip("flow_factory.rewards.my_reward_remote")
    from accelerate import Accelerator
    from flow_factory.hparams.reward_args import RewardArguments

    from portraitcraft.train.reward_server import build_app

    def client(cls: type, url: str) -> Any:
        args = RewardArguments.from_dict({"name": "portraitcraft", "reward_model": f"{remote.__name__}.{cls.__name__}",
                                          "device": "cpu", "dtype": "float32", "server_url": url})
        return cls(args, Accelerator(cpu=True))

    images = [Image.new("RGB", (16, 16), (r, 0, 0)) for r in (10, 40, 70)]
    none = RewardConfig(weights={"geometry": 1.0}, normalise="none")
    with RewardServer(build_app(ScorerSet([FixedScorer()]), none)) as server:
        pointwise = client(remote.RemotePointwiseRewardModel, server.url)
        whole = pointwise(prompt=["a", "b", "c"], image=images).rewards.tolist()
        cut = [pointwise(prompt=[p], image=[i]).rewards.tolist()[0] for p, i in zip("abc", images, strict=True)]
    assert whole == cut == pytest.approx([0.1, 0.4, 0.7])
    with RewardServer(build_app(ScorerSet([FixedScorer()]), RewardConfig(weights={"geometry": 1.0}))) as server:
        groupwise = client(remote.RemoteGroupwiseRewardModel, server.url)
        rewards = groupwise(prompt=["a"] * 3, image=images).rewards.tolist()
    assert rewards == pytest.approx([-1.224745, 0.0, 1.224745], abs=1e-5)
