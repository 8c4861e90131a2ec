"""One transient-fault policy (tools/retry.py) for the VLM client and the remote image backend: the same faults
are retried, Retry-After is honoured the same way, the backoff has jitter, sync and async alike."""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING

import pytest
from fake_vlm import FakeVLMServer, endpoint_config
from pydantic import BaseModel
from test_vlm_faults import SleepRecorder

from portraitcraft.tools.diffusion.remote import RemoteImageBackend
from portraitcraft.tools.retry import MalformedReply, RetriesExhausted, RetryPolicy, is_transient
from portraitcraft.tools.vlm import VLMClient, VLMTransportError

if TYPE_CHECKING:
    from fake_image_api import FakeImageAPI

pytest_plugins = ["fake_image_api"]
BASE = 0.1


class Level(BaseModel):
    level: int


async def _vlm_outcomes(fake_vlm: FakeVLMServer, sleeps: SleepRecorder) -> list[str]:
    fake_vlm.script.fault("status", status=425, retry_after=2).fault("malformed").push({"level": 4})
    async with VLMClient(endpoint_config(fake_vlm, max_retries=3), _sleep=sleeps, _backoff_base=BASE) as vlm:
        assert (await vlm.ask("Rate.", schema=Level)).level == 4
    return ["ok" if r.outcome == "ok" else r.outcome.split(":")[-1] for r in fake_vlm.chat_requests]


def _image_backend(api: FakeImageAPI, sleeps: SleepRecorder) -> RemoteImageBackend:
    policy = RetryPolicy(max_retries=3, base_delay=BASE, sleep=sleeps, sync_sleep=sleeps.sync)
    return RemoteImageBackend(api.config(max_retries=3), retry=policy)


def _image_outcomes(api: FakeImageAPI) -> list[str]:
    return ["ok" if r.outcome == 200 else str(r.outcome) for r in api.requests]


@pytest.mark.parametrize("call", ["vlm", "image-sync", "image-async"])
async def test_425_with_retry_after_then_a_malformed_200_are_handled_identically(
    call: str, fake_vlm: FakeVLMServer, fake_image_api: FakeImageAPI,
) -> None:
    sleeps = SleepRecorder()
    if call == "vlm":
        outcomes = await _vlm_outcomes(fake_vlm, sleeps)
    else:
        fake_image_api.script.fail(425, retry_after=2).malformed()
        backend = _image_backend(fake_image_api, sleeps)
        if call == "image-sync":
            image = await asyncio.to_thread(backend.generate, "a portrait", 32, 32, 1)
        else:
            image = await backend.agenerate("a portrait", 32, 32, seed=1)
        assert image.size == (32, 32)
        outcomes = _image_outcomes(fake_image_api)
    # the 425 is retried after exactly the server's Retry-After; the broken 200 after the jittered backoff
    assert outcomes == ["425", "malformed", "ok"]
    assert sleeps.delays[0] == 2.0
    assert 2 * BASE <= sleeps.delays[1] <= 3 * BASE


async def test_image_api_gives_up_like_the_vlm_client(fake_vlm: FakeVLMServer, fake_image_api: FakeImageAPI) -> None:
    fake_image_api.script.malformed(times=3)
    backend = _image_backend(fake_image_api, SleepRecorder())
    backend.retry.max_retries = 2
    with pytest.raises(Exception, match=r"gave up after 3 attempt\(s\): malformed reply") as image_error:
        await backend.agenerate("a portrait", 32, 32, seed=1)
    fake_vlm.script.fault("malformed", times=3)
    async with VLMClient(endpoint_config(fake_vlm, max_retries=2), _sleep=SleepRecorder()) as vlm:
        with pytest.raises(VLMTransportError, match=r"gave up after 3 attempt\(s\): malformed reply"):
            await vlm.ask("Rate.", schema=Level)
    assert "DiffusionError" in type(image_error.value).__name__
    assert len(fake_image_api.requests) == len(fake_vlm.chat_requests) == 3


def test_backoff_is_exponential_with_jitter_and_capped() -> None:
    random.seed(7)
    policy = RetryPolicy(max_retries=5, base_delay=1.0, max_delay=5.0)
    first = [policy.delay(0, None) for _ in range(50)]
    assert all(1.0 <= d <= 2.0 for d in first) and len(set(first)) > 40  # jitter spreads concurrent retries
    assert all(2.0 <= policy.delay(1, None) <= 3.0 for _ in range(20))
    assert policy.delay(10, None) == 5.0
    assert RetryPolicy(max_retries=1, base_delay=0.0).delay(3, None) == 0.0


def test_sync_and_async_calls_retry_the_same_faults() -> None:
    for fault, transient in ((MalformedReply("x"), True), (ValueError("bad"), False)):
        assert is_transient(fault) is transient
    policy = RetryPolicy(max_retries=2, base_delay=0.0)
    attempts: list[int] = []

    def always_broken() -> None:
        attempts.append(1)
        raise MalformedReply("half a body")

    with pytest.raises(RetriesExhausted) as info:
        policy.call_sync(always_broken)
    assert info.value.attempts == 3 and len(attempts) == 3

    async def refused() -> None:
        attempts.append(1)
        raise ValueError("not transient")

    with pytest.raises(ValueError, match="not transient"):
        asyncio.run(policy.call(refused))
    assert len(attempts) == 4  # a non-transient fault is attempted once
