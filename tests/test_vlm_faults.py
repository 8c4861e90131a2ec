"""Transport reliability of tools/vlm.py: retries, backoff, Retry-After, refusals, counted at the server."""

from __future__ import annotations

import asyncio
import email.utils
import socket
import time
from collections import Counter

import pytest
from fake_vlm import FakeVLMServer, endpoint_config, make_client
from pydantic import BaseModel

from portraitcraft.tools.vlm import VLMClient, VLMRequestError, VLMTransportError


class Level(BaseModel):
    level: int


def _prompt(body: dict) -> str:
    return next(p["text"] for p in body["messages"][-1]["content"] if p["type"] == "text")


class SleepRecorder:
    """An injected sleep (async, or `.sync` for blocking calls): records requested delays and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)

    def sync(self, seconds: float) -> None:
        self.delays.append(seconds)


async def test_thirty_percent_transient_faults_all_calls_succeed_within_the_retry_limit(
    fake_vlm: FakeVLMServer,
) -> None:
    max_retries = 6
    fake_vlm.script.fault_rate(0.3, seed=2026)
    fake_vlm.script.default(fn=lambda body: {"level": len(_prompt(body))})
    prompts = [f"Rate item {i}." for i in range(40)]
    async with make_client(fake_vlm, max_retries=max_retries, max_concurrency=8) as vlm:
        answers = await asyncio.gather(*(vlm.ask(p, schema=Level) for p in prompts))
        stats = vlm.stats
    assert [a.level for a in answers] == [len(p) for p in prompts]
    attempts = Counter(_prompt(r.body) for r in fake_vlm.chat_requests)
    assert set(attempts) == set(prompts)
    assert max(attempts.values()) <= max_retries + 1
    faults = [r for r in fake_vlm.chat_requests if r.outcome.startswith("fault:")]
    assert 0.15 < len(faults) / len(fake_vlm.chat_requests) < 0.45  # the seeded rate really bit
    assert {r.outcome.split(":")[1] for r in faults} >= {"status", "cut", "malformed"}
    assert stats.attempts == len(fake_vlm.chat_requests) and stats.retries == len(faults)
    assert stats.requests == 40 and stats.failures == 0


async def test_retries_stop_at_the_limit(fake_vlm: FakeVLMServer) -> None:
    fake_vlm.script.fault("status", status=503, message="overloaded", times=10)
    async with make_client(fake_vlm, max_retries=2) as vlm:
        with pytest.raises(VLMTransportError) as info:
            await vlm.ask("Rate.", schema=Level)
        assert vlm.stats.failures == 1 and vlm.stats.retries == 2
    assert info.value.attempts == 3 and len(fake_vlm.chat_requests) == 3
    assert "gave up after 3 attempt(s)" in str(info.value) and "HTTP 503: overloaded" in str(info.value)


@pytest.mark.parametrize("status", [400, 403, 422])
async def test_client_errors_are_attempted_exactly_once(fake_vlm: FakeVLMServer, status: int) -> None:
    fake_vlm.script.fault("status", status=status, message="max_tokens exceeds max_model_len")
    fake_vlm.script.push({"level": 1})
    async with make_client(fake_vlm, max_retries=5) as vlm:
        with pytest.raises(VLMRequestError) as info:
            await vlm.ask("Rate.", schema=Level)
    assert info.value.status == status
    assert "max_tokens exceeds max_model_len" in str(info.value)
    assert len(fake_vlm.chat_requests) == 1


async def test_unknown_model_names_what_the_server_serves(fake_vlm: FakeVLMServer) -> None:
    fake_vlm.script.models = ["Qwen/Qwen3-VL-4B-Instruct", "Qwen/Qwen3-VL-8B-Instruct"]
    async with VLMClient(endpoint_config(fake_vlm, model="Qwen/Qwen3-VL-32B")) as vlm:
        with pytest.raises(VLMRequestError) as info:
            await vlm.ask("Rate.", schema=Level)
    assert info.value.status == 404
    assert str(info.value) == (f"model Qwen/Qwen3-VL-32B is not served at {fake_vlm.base_url}; it serves: "
                               "Qwen/Qwen3-VL-4B-Instruct, Qwen/Qwen3-VL-8B-Instruct")
    assert len(fake_vlm.chat_requests) == 1


async def test_wrong_base_url_says_so(fake_vlm: FakeVLMServer) -> None:
    cfg = endpoint_config(fake_vlm, base_url=fake_vlm.base_url.removesuffix("/v1"))
    async with VLMClient(cfg) as vlm:
        with pytest.raises(VLMRequestError) as info:
            await vlm.ask("Rate.", schema=Level)
    assert info.value.status == 404
    assert "listing models failed too" in str(info.value) and "ends in /v1" in str(info.value)


async def test_429_retry_after_is_honoured_and_capped(fake_vlm: FakeVLMServer) -> None:
    sleep = SleepRecorder()
    fake_vlm.script.fault("status", status=429, retry_after=7).push({"level": 1})
    fake_vlm.script.fault("status", status=429, retry_after=3600).push({"level": 2})
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    fake_vlm.script.fault("status", status=429, retry_after=when).push({"level": 3})
    fake_vlm.script.fault("status", status=503).push({"level": 4})
    vlm = VLMClient(endpoint_config(fake_vlm), _sleep=sleep, _backoff_base=0.25, _retry_after_cap=60.0)
    async with vlm:
        levels = [(await vlm.ask(f"Rate {i}.", schema=Level)).level for i in range(4)]
    assert levels == [1, 2, 3, 4]
    assert sleep.delays[0] == 7.0
    assert sleep.delays[1] == 60.0  # capped
    assert 25.0 < sleep.delays[2] <= 30.0  # an HTTP-date Retry-After
    assert 0.25 <= sleep.delays[3] <= 0.5  # no Retry-After: exponential backoff with jitter


async def test_backoff_grows_exponentially_with_jitter(fake_vlm: FakeVLMServer) -> None:
    sleep = SleepRecorder()
    fake_vlm.script.fault("status", status=502, times=3).push({"level": 1})
    async with VLMClient(endpoint_config(fake_vlm), _sleep=sleep, _backoff_base=0.1, _backoff_max=100.0) as vlm:
        await vlm.ask("Rate.", schema=Level)
    assert len(sleep.delays) == 3
    for retry, delay in enumerate(sleep.delays):
        low = 0.1 * 2**retry
        assert low <= delay <= low + 0.1


async def test_timeout_is_retried(fake_vlm: FakeVLMServer) -> None:
    fake_vlm.script.fault("timeout", seconds=5).push({"level": 3})
    async with make_client(fake_vlm, timeout=0.3) as vlm:
        answer = await vlm.ask("Rate.", schema=Level)
        assert vlm.stats.retries == 1
    assert answer.level == 3
    assert [r.outcome for r in fake_vlm.chat_requests] == ["fault:timeout", "ok"]


@pytest.mark.parametrize("kind", ["cut", "malformed", "shape"])
async def test_cut_connection_and_malformed_body_are_retried(fake_vlm: FakeVLMServer, kind: str) -> None:
    fake_vlm.script.fault(kind, times=2).push({"level": 2})
    async with make_client(fake_vlm) as vlm:
        assert (await vlm.ask("Rate.", schema=Level)).level == 2
        assert vlm.stats.retries == 2 and vlm.stats.attempts == 3
    assert [r.outcome for r in fake_vlm.chat_requests] == [f"fault:{kind}", f"fault:{kind}", "ok"]


async def test_a_reply_without_a_message_outlasting_retries_is_a_transport_error(fake_vlm: FakeVLMServer) -> None:
    fake_vlm.script.fault("shape", times=3)
    async with make_client(fake_vlm, max_retries=2) as vlm:
        with pytest.raises(VLMTransportError, match=r"malformed reply .*unreadable choices") as info:
            await vlm.ask("Rate.", schema=Level)
        assert vlm.stats.failures == 1
    assert info.value.attempts == 3 and len(fake_vlm.chat_requests) == 3


async def test_unreachable_server_is_a_transport_error() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = FakeVLMServer()  # not started: only its address shape is used
    server.port = port
    async with make_client(server, max_retries=2) as vlm:
        with pytest.raises(VLMTransportError, match="connection failed") as info:
            await vlm.ask("Rate.", schema=Level)
    assert info.value.attempts == 3


async def test_votes_survive_faults_and_count_once_per_request(fake_vlm: FakeVLMServer) -> None:
    fake_vlm.script.fault("status", status=500).fault("cut")
    for level in (1, 2, 3):
        fake_vlm.script.push({"level": level})
    async with make_client(fake_vlm) as vlm:
        votes = await vlm.ask_votes("Rate.", schema=Level, k=3, temperature=0.7)
        assert vlm.stats.requests == 1 and vlm.stats.attempts == 3
    assert [v.level for v in votes] == [1, 2, 3]
    assert all(r.body["n"] == 3 for r in fake_vlm.chat_requests)
