"""tools/vlm.py against the scripted fake server: dialects, re-asks, votes, distributions, cache, secrets."""

from __future__ import annotations

import asyncio
import json
import logging
import math
from pathlib import Path

import pytest
from fake_vlm import API_KEY_ENV, Answer, FakeVLMServer, endpoint_config, make_client
from PIL import Image
from pydantic import BaseModel, Field

from portraitcraft.tools.images import ImageError
from portraitcraft.tools.vlm import ChoiceDistribution, VLMAnswerError, VLMClient, VLMRequestError


class Verdict(BaseModel):
    detected: bool
    instruction: str = Field(max_length=200)


class Level(BaseModel):
    level: int = Field(ge=1, le=5)


def _user_text(body: dict) -> str:
    return next(p["text"] for m in body["messages"] if m["role"] == "user" and isinstance(m["content"], list)
                for p in m["content"] if p["type"] == "text")


def _images(body: dict) -> list[str]:
    return [p["image_url"]["url"] for m in body["messages"] if isinstance(m["content"], list)
            for p in m["content"] if p["type"] == "image_url"]


# ---------------------------------------------------------------- typed answers per dialect


async def test_vllm_kind_sends_structured_outputs_json_and_images(fake_vlm: FakeVLMServer) -> None:
    fake_vlm.script.push({"detected": True, "instruction": "turn the head left"})
    big = Image.new("RGB", (640, 480), (200, 30, 30))
    async with make_client(fake_vlm, max_image_pixels=128 * 128) as vlm:
        verdict = await vlm.ask("Is the head turned?", [big], schema=Verdict, system="You are a critic.")
    assert verdict == Verdict(detected=True, instruction="turn the head left")
    [req] = fake_vlm.chat_requests
    body = req.body
    sent = body["structured_outputs"]["json"]  # extra_body lands top-level
    assert sent == {**Verdict.model_json_schema(), "additionalProperties": False}
    assert "response_format" not in body and "guided_json" not in body
    assert body["messages"][0] == {"role": "system", "content": "You are a critic."}
    assert _user_text(body) == "Is the head turned?"
    assert _images(body)[0].startswith("data:image/png;base64,")
    [(w, h)] = req.images
    assert w * h <= 128 * 128 and abs(w / h - 640 / 480) < 0.05
    assert body["temperature"] == 0.0 and body["seed"] == 0 and "n" not in body


async def test_openai_kind_sends_strict_json_schema(fake_vlm: FakeVLMServer) -> None:
    fake_vlm.script.push({"detected": False, "instruction": ""})
    async with make_client(fake_vlm, dialect="openai") as vlm:
        await vlm.ask("Check.", schema=Verdict)
    body = fake_vlm.chat_requests[0].body
    fmt = body["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    schema = fmt["json_schema"]["schema"]
    assert schema["additionalProperties"] is False and sorted(schema["required"]) == ["detected", "instruction"]
    assert "structured_outputs" not in body


async def test_plain_kind_puts_schema_in_prompt_and_parses_first_json_object(fake_vlm: FakeVLMServer) -> None:
    fake_vlm.script.push('Sure! Here it is:\n```json\n{"detected": true, "instruction": "crop tighter"}\n```')
    async with make_client(fake_vlm, dialect="plain") as vlm:
        verdict = await vlm.ask("Check.", schema=Verdict)
    assert verdict.instruction == "crop tighter"
    body = fake_vlm.chat_requests[0].body
    assert "response_format" not in body and "structured_outputs" not in body
    assert json.dumps(Verdict.model_json_schema()) in _user_text(body)


async def test_config_extra_is_merged_into_extra_body(fake_vlm: FakeVLMServer) -> None:
    fake_vlm.script.push({"detected": True, "instruction": "x"})
    extra = {"chat_template_kwargs": {"enable_thinking": False}, "structured_outputs": {"disable_any_whitespace": True}}
    async with make_client(fake_vlm, extra=extra) as vlm:
        await vlm.ask("Check.", schema=Verdict)
    sent = fake_vlm.chat_requests[0].body
    assert sent["chat_template_kwargs"] == {"enable_thinking": False}
    assert sent["structured_outputs"]["disable_any_whitespace"] is True and "json" in sent["structured_outputs"]


# ---------------------------------------------------------------- invalid answers: one re-ask, then typed error


async def test_truncated_answer_is_reasked_once_with_more_tokens(fake_vlm: FakeVLMServer) -> None:
    fake_vlm.script.push('{"detected": true, "instruction": "move the sub', finish_reason="length")
    fake_vlm.script.push({"detected": True, "instruction": "move the subject left"})
    async with make_client(fake_vlm, max_tokens=64) as vlm:
        verdict = await vlm.ask("Check.", schema=Verdict)
        assert vlm.stats.reasks == 1
    assert verdict.instruction == "move the subject left"
    first, second = (r.body for r in fake_vlm.chat_requests)
    assert first["max_tokens"] == 64 and second["max_tokens"] == 128
    assert second["messages"][-2] == {"role": "assistant", "content": '{"detected": true, "instruction": "move the sub'}
    assert "cut off" in second["messages"][-1]["content"]


async def test_garbage_twice_becomes_typed_answer_error(fake_vlm: FakeVLMServer) -> None:
    fake_vlm.script.push("I cannot see any image.").push("Still no JSON, sorry.")
    async with make_client(fake_vlm) as vlm:
        with pytest.raises(VLMAnswerError) as info:
            await vlm.ask("Check.", schema=Verdict)
        assert vlm.stats.summary()["answer_failures"] == 1 and vlm.stats.reasks == 1
    assert info.value.raw == "Still no JSON, sorry."
    assert "no complete JSON object" in info.value.problem
    assert len(fake_vlm.chat_requests) == 2
    reask = fake_vlm.chat_requests[1].body["messages"]
    assert reask[-2]["content"] == "I cannot see any image."
    assert "no complete JSON object" in reask[-1]["content"]


async def test_schema_violation_is_reasked_with_the_validation_error(fake_vlm: FakeVLMServer) -> None:
    fake_vlm.script.push({"level": 9}).push({"level": 4})
    async with make_client(fake_vlm) as vlm:
        answer = await vlm.ask("Rate.", schema=Level)
    assert answer.level == 4
    note = fake_vlm.chat_requests[1].body["messages"][-1]["content"]
    assert "level" in note and "less than or equal to 5" in note


async def test_bad_image_fails_before_any_request(fake_vlm: FakeVLMServer, tmp_path: Path) -> None:
    broken = tmp_path / "draft_003.png"
    broken.write_bytes(b"<html>this is an error page, not a PNG</html>")
    async with make_client(fake_vlm) as vlm:
        with pytest.raises(ImageError, match=r"draft_003\.png: not a recognised image format"):
            await vlm.ask("Check.", [broken], schema=Verdict)
        with pytest.raises(ImageError, match=r"images\[1\]: empty file"):
            await vlm.ask("Check.", [Image.new("RGB", (8, 8)), b""], schema=Verdict)
    assert fake_vlm.chat_requests == []


async def test_one_bare_image_is_one_image(fake_vlm: FakeVLMServer, tmp_path: Path) -> None:
    path = tmp_path / "portrait.png"
    Image.new("RGB", (20, 10), (1, 2, 3)).save(path)
    fake_vlm.script.default({"level": 2})
    async with make_client(fake_vlm) as vlm:
        for bare in (str(path), path, path.read_bytes(), Image.open(path)):
            assert await vlm.ask("Rate.", bare, schema=Level) == Level(level=2)
    assert [r.images for r in fake_vlm.chat_requests] == [[(20, 10)]] * 4


async def test_bad_arguments_are_clear_errors_before_any_request(fake_vlm: FakeVLMServer) -> None:
    async with make_client(fake_vlm) as vlm:
        with pytest.raises(ValueError, match="samples_if_no_logprobs must be at least 1, got 0"):
            await vlm.choice_probs("Pick.", choices=["A", "B"], samples_if_no_logprobs=0)
        with pytest.raises(ValueError, match="not one string 'AB'"):
            await vlm.choice_probs("Pick.", choices="AB")
        with pytest.raises(ValueError, match=r"at least two different values, got \{\}"):
            await vlm.expected_score("Rate.", levels={})
        with pytest.raises(ValueError, match="map each option to a number"):
            await vlm.expected_score("Rate.", levels={"low": "bad", "high": 2})
        with pytest.raises(TypeError, match="pydantic BaseModel subclass"):
            await vlm.ask("Rate.", schema=dict)  # type: ignore[type-var]
        with pytest.raises(ValueError, match="k must be at least 1"):
            await vlm.ask_votes("Rate.", schema=Level, k=0)
    assert fake_vlm.chat_requests == []


async def test_fake_server_rejects_corrupt_image_data_url(fake_vlm: FakeVLMServer) -> None:
    """The fake validates images like a real server: a corrupt data URL is a 400, which is not retried."""
    import openai

    client = openai.AsyncOpenAI(base_url=fake_vlm.base_url, api_key="x", max_retries=0)
    bad = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAA"}}
    with pytest.raises(openai.BadRequestError, match=r"messages\[0\]\.content\[0\]: invalid image"):
        await client.chat.completions.create(model=fake_vlm.model, messages=[{"role": "user", "content": [bad]}])
    await client.close()


# ---------------------------------------------------------------- votes: n=K in one request, and the fallback


async def test_votes_use_one_request_with_n(fake_vlm: FakeVLMServer) -> None:
    for level in (3, 4, 4, 5, 4):
        fake_vlm.script.push({"level": level})
    async with make_client(fake_vlm) as vlm:
        votes = await vlm.ask_votes("Rate.", schema=Level, k=5, temperature=0.7, seed=11)
    assert [v.level for v in votes] == [3, 4, 4, 5, 4]
    [req] = fake_vlm.chat_requests
    assert req.body["n"] == 5 and req.body["temperature"] == 0.7 and req.body["seed"] == 11


async def test_votes_fall_back_to_single_requests_when_n_is_refused(fake_vlm: FakeVLMServer) -> None:
    fake_vlm.script.refuse_n = True
    fake_vlm.script.default(fn=lambda body: {"level": 1 + body["seed"] % 5})
    async with make_client(fake_vlm) as vlm:
        first = await vlm.ask_votes("Rate.", schema=Level, k=4, temperature=0.7, seed=20)
        assert [r.body.get("n") for r in fake_vlm.chat_requests] == [4, None, None, None, None]
        second = await vlm.ask_votes("Rate again.", schema=Level, k=3, temperature=0.7, seed=20)
        assert vlm.stats.n_fallbacks == 2
    assert sorted(v.level for v in first) == [1, 2, 3, 4]  # seeds 20..23 -> distinct samples
    assert len(second) == 3
    later = fake_vlm.chat_requests[5:]
    assert len(later) == 3 and all("n" not in r.body for r in later)  # remembered: no n=3 attempt
    assert sorted(r.body["seed"] for r in later) == [20, 21, 22]


async def test_votes_are_topped_up_when_the_server_ignores_n(fake_vlm: FakeVLMServer) -> None:
    fake_vlm.script.ignore_n = True
    for level in (1, 2, 3):
        fake_vlm.script.push({"level": level})
    async with make_client(fake_vlm) as vlm:
        votes = await vlm.ask_votes("Rate.", schema=Level, k=3, temperature=0.7, seed=4)
        assert vlm.stats.n_fallbacks == 1
    assert sorted(v.level for v in votes) == [1, 2, 3]
    bodies = [r.body for r in fake_vlm.chat_requests]
    assert bodies[0]["n"] == 3 and all("n" not in b for b in bodies[1:]) and len(bodies) == 3
    assert sorted(b["seed"] for b in bodies[1:]) == [5, 6]


async def test_invalid_vote_is_reasked_alone_and_stays_an_error_in_place(fake_vlm: FakeVLMServer) -> None:
    fake_vlm.script.push({"level": 2}).push("garbage").push({"level": 3})
    fake_vlm.script.push("garbage again")
    async with make_client(fake_vlm) as vlm:
        votes = await vlm.ask_votes("Rate.", schema=Level, k=3, temperature=0.7)
        assert (vlm.stats.reasks, vlm.stats.answer_failures) == (1, 1)
    assert votes[0] == Level(level=2) and votes[2] == Level(level=3)
    assert isinstance(votes[1], VLMAnswerError) and votes[1].raw == "garbage again"
    assert [r.body.get("n") for r in fake_vlm.chat_requests] == [3, None]


# ---------------------------------------------------------------- distributions over choices


async def test_choice_probs_from_vllm_choice_logprobs(fake_vlm: FakeVLMServer) -> None:
    # vLLM under a structured choice: alternatives renormalised, masked ones at -9999, not sorted
    fake_vlm.script.push(top_logprobs=[{"C": math.log(0.2), "A": math.log(0.5), "zz": -9999.0, "B": math.log(0.3)}])
    async with make_client(fake_vlm) as vlm:
        dist = await vlm.choice_probs("Which option?", choices=["A", "B", "C", "D"])
    body = fake_vlm.chat_requests[0].body
    assert body["structured_outputs"]["choice"] == ["A", "B", "C", "D"]
    assert body["logprobs"] is True and body["top_logprobs"] >= 4
    assert dist.source == "logprobs"
    assert math.isclose(sum(dist.probs.values()), 1.0)
    assert dist.probs == pytest.approx({"A": 0.5, "B": 0.3, "C": 0.2, "D": 0.0})


async def test_expected_score_equals_hand_computed_value(fake_vlm: FakeVLMServer) -> None:
    # the top alternatives carry only 80% of the mass; the rest is spread on non-level tokens
    probs = {"1": 0.04, "2": 0.08, "3": 0.16, "4": 0.32, "5": 0.20, "the": 0.2}
    fake_vlm.script.push(top_logprobs=[{t: math.log(p) for t, p in probs.items()}])
    async with make_client(fake_vlm) as vlm:
        value, unit, dist = await vlm.expected_score("Rate 1-5.", levels={str(i): i for i in range(1, 6)})
    # renormalised over the levels: 0.05, 0.10, 0.20, 0.40, 0.25
    hand = 1 * 0.05 + 2 * 0.10 + 3 * 0.20 + 4 * 0.40 + 5 * 0.25
    assert value == pytest.approx(hand)
    assert unit == pytest.approx((hand - 1) / (5 - 1))
    assert sum(dist.probs.values()) == pytest.approx(1.0)


async def test_choice_probs_with_openai_json_enum(fake_vlm: FakeVLMServer) -> None:
    tokens = ['{"', "answer", '":"', "Good", '"}']
    tops = [{'{"': 0.0}, {"answer": 0.0}, {'":"': 0.0},
            {"Good": math.log(0.6), "Medium": math.log(0.3), "Poor": math.log(0.1)}, {'"}': 0.0}]
    fake_vlm.script.push(tokens=tokens, top_logprobs=tops)
    async with make_client(fake_vlm, dialect="openai") as vlm:
        value, unit, dist = await vlm.expected_score("Level?", levels={"Poor": 0, "Medium": 5, "Good": 10})
    schema = fake_vlm.chat_requests[0].body["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["answer"]["enum"] == ["Poor", "Medium", "Good"]
    assert dist.probs == pytest.approx({"Poor": 0.1, "Medium": 0.3, "Good": 0.6})
    assert value == pytest.approx(0 * 0.1 + 5 * 0.3 + 10 * 0.6) and unit == pytest.approx(value / 10)


async def test_no_logprobs_falls_back_to_samples_and_warns_once(
    fake_vlm: FakeVLMServer, caplog: pytest.LogCaptureFixture
) -> None:
    fake_vlm.script.no_logprobs = True
    fake_vlm.script.push("yes")  # the logprob attempt
    for vote in ["yes", "no", "yes", "yes", "no", "yes"]:
        fake_vlm.script.push(vote)
    for vote in ["no", "no", "yes", "no"]:
        fake_vlm.script.push(vote)
    caplog.set_level(logging.WARNING, logger="portraitcraft.tools.vlm")
    async with make_client(fake_vlm) as vlm:
        dist = await vlm.choice_probs("Gaze left?", choices=["yes", "no"], samples_if_no_logprobs=6, seed=5)
        again = await vlm.choice_probs("Gaze right?", choices=["yes", "no"], samples_if_no_logprobs=4, seed=5)
    assert dist == ChoiceDistribution({"yes": 4 / 6, "no": 2 / 6}, "samples", samples=6)
    assert again.probs == {"yes": 0.25, "no": 0.75} and again.source == "samples"
    warnings = [r for r in caplog.records if "no logprobs" in r.getMessage()]
    assert len(warnings) == 1
    bodies = [r.body for r in fake_vlm.chat_requests]
    assert [b.get("logprobs", False) for b in bodies] == [True, False, False]  # remembered after the first
    assert bodies[1]["n"] == 6 and bodies[1]["temperature"] == 1.0


async def test_refused_logprobs_parameter_falls_back_to_samples(fake_vlm: FakeVLMServer) -> None:
    fake_vlm.script.fault("status", status=400, message="logprobs are not supported with this model")
    for vote in ["A", "B", "B", "B"]:
        fake_vlm.script.push(vote)
    fake_vlm.script.push("A").push("A")
    async with make_client(fake_vlm) as vlm:
        dist = await vlm.choice_probs("Pick.", choices=["A", "B"], samples_if_no_logprobs=4)
        again = await vlm.choice_probs("Pick again.", choices=["A", "B"], samples_if_no_logprobs=2)
    assert dist.source == "samples" and dist.probs == {"A": 0.25, "B": 0.75}
    assert again.probs == {"A": 1.0, "B": 0.0}
    assert [bool(r.body.get("logprobs")) for r in fake_vlm.chat_requests] == [True, False, False]


async def test_a_genuine_400_in_choice_probs_is_raised(fake_vlm: FakeVLMServer) -> None:
    # a genuine error recurs on every request: the logprob try, the n=8 sampling try, its n=1 check
    fake_vlm.script.fault("status", status=400, message="too many images", times=3)
    async with make_client(fake_vlm) as vlm:
        with pytest.raises(VLMRequestError, match="too many images"):
            await vlm.choice_probs("Pick.", choices=["A", "B"])
        fake_vlm.script.push(top_logprobs=[{"A": math.log(0.9), "B": math.log(0.1)}])
        dist = await vlm.choice_probs("Pick.", choices=["A", "B"])  # logprobs still tried: it was not their fault
    assert [r.outcome for r in fake_vlm.chat_requests] == ["fault:status:400"] * 3 + ["ok"]
    assert dist.source == "logprobs" and dist.probs["A"] == pytest.approx(0.9)


async def test_invalid_choice_is_reasked_then_typed_error(fake_vlm: FakeVLMServer) -> None:
    fake_vlm.script.push("maybe").push("perhaps")
    async with make_client(fake_vlm, dialect="plain") as vlm:
        with pytest.raises(VLMAnswerError, match="not one of: yes, no"):
            await vlm.choice_probs("Gaze left?", choices=["yes", "no"])
    assert "exactly one of these options" in _user_text(fake_vlm.chat_requests[0].body)


# ---------------------------------------------------------------- cache


async def test_cache_makes_a_rerun_free(fake_vlm: FakeVLMServer, tmp_path: Path) -> None:
    fake_vlm.script.default(fn=lambda body: {"level": 1 + (body.get("seed") or 0) % 5})
    img = Image.new("RGB", (32, 32), (9, 99, 199))

    async def run(vlm: VLMClient) -> tuple:
        one = await vlm.ask("Rate.", [img], schema=Level)
        votes = await vlm.ask_votes("Rate.", [img], schema=Level, k=3, temperature=0.8, seed=7)
        return one, votes

    async with make_client(fake_vlm, cache_dir=tmp_path / "cache") as first:
        before = await run(first)
    sent = len(fake_vlm.chat_requests)
    assert sent == 2
    async with make_client(fake_vlm, cache_dir=tmp_path / "cache") as second:
        after = await run(second)
        assert second.stats.cache_hits == 2 and second.stats.requests == 0
    assert after == before
    assert len(fake_vlm.chat_requests) == sent  # no HTTP at all on the re-run


async def test_cache_key_includes_the_endpoint(fake_vlm: FakeVLMServer, tmp_path: Path) -> None:
    """Two servers may serve different weights under one model name: they never share cached answers."""
    fake_vlm.script.default({"level": 4})
    img = Image.new("RGB", (8, 8), (1, 2, 3))
    other_url = fake_vlm.base_url.replace("127.0.0.1", "localhost")
    for base_url, expected_requests in ((fake_vlm.base_url, 1), (other_url, 2), (fake_vlm.base_url + "/", 2)):
        async with make_client(fake_vlm, cache_dir=tmp_path, base_url=base_url) as vlm:
            await vlm.ask("Rate.", [img], schema=Level)
        assert len(fake_vlm.chat_requests) == expected_requests, base_url


async def test_unseeded_sampling_is_not_cached(fake_vlm: FakeVLMServer, tmp_path: Path) -> None:
    fake_vlm.script.default({"level": 2})
    for _ in range(2):
        async with make_client(fake_vlm, cache_dir=tmp_path, seed=None) as vlm:
            await vlm.ask("Rate.", schema=Level, temperature=0.9)
            await vlm.ask("Rate.", schema=Level, temperature=0.0)
    seen = [r.body["temperature"] for r in fake_vlm.chat_requests]
    assert seen == [0.9, 0.0, 0.9]  # the greedy call came from the cache the second time


async def test_cache_key_follows_image_pixels(fake_vlm: FakeVLMServer, tmp_path: Path) -> None:
    fake_vlm.script.default({"level": 3})
    async with make_client(fake_vlm, cache_dir=tmp_path) as vlm:
        await vlm.ask("Rate.", [Image.new("RGB", (16, 16), (0, 0, 0))], schema=Level)
        await vlm.ask("Rate.", [Image.new("RGB", (16, 16), (0, 0, 0))], schema=Level)
        await vlm.ask("Rate.", [Image.new("RGB", (16, 16), (0, 0, 1))], schema=Level)
        assert vlm.stats.cache_hits == 1
    assert len(fake_vlm.chat_requests) == 2


# ---------------------------------------------------------------- secrets, concurrency, accounting


async def test_api_key_is_a_bearer_header_but_never_logged_or_cached(
    fake_vlm: FakeVLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "sk-test-9f8e7d6c5b4a-DO-NOT-LEAK"
    monkeypatch.setenv(API_KEY_ENV, secret)
    monkeypatch.setenv("OPENAI_LOG", "debug")
    caplog.set_level(logging.DEBUG)
    fake_vlm.script.api_key = secret
    fake_vlm.script.fault("status", status=503, message=f"upstream echoed {secret}")  # a careless server
    fake_vlm.script.push({"level": 2}).push(top_logprobs=[{"A": -0.1, "B": -2.4}])
    fake_vlm.script.fault("status", status=400, message=f"bad request from key {secret}")
    async with make_client(fake_vlm, cache_dir=tmp_path / "cache") as vlm:
        await vlm.ask("Rate.", [Image.new("RGB", (8, 8))], schema=Level)
        await vlm.choice_probs("Pick.", choices=["A", "B"])
        with pytest.raises(VLMRequestError) as info:
            await vlm.ask("Rate again.", schema=Level)
    assert all(r.headers["authorization"] == f"Bearer {secret}" for r in fake_vlm.chat_requests)
    assert len(fake_vlm.chat_requests) == 4
    assert secret not in caplog.text and secret not in str(info.value) and "bad request from key ***" in str(info.value)
    assert "upstream echoed ***" in caplog.text
    assert caplog.records  # the run did log (retries, HTTP lines), just not the key
    files = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert files and all(secret.encode() not in p.read_bytes() for p in files)


async def test_wrong_key_is_a_401_naming_the_env_var(fake_vlm: FakeVLMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(API_KEY_ENV, "sk-wrong")
    fake_vlm.script.api_key = "sk-right"
    async with make_client(fake_vlm) as vlm:
        with pytest.raises(VLMRequestError) as info:
            await vlm.ask("Rate.", schema=Level)
    assert info.value.status == 401 and API_KEY_ENV in str(info.value) and "sk-wrong" not in str(info.value)
    assert len(fake_vlm.chat_requests) == 1


async def test_concurrency_limit_is_shared_by_clients_of_one_endpoint(fake_vlm: FakeVLMServer) -> None:
    fake_vlm.script.default(fn=lambda body: Answer('{"level": 1}', delay=0.03))
    async with make_client(fake_vlm, max_concurrency=2) as a, make_client(fake_vlm, max_concurrency=2) as b:
        await asyncio.gather(*(c.ask(f"Rate {i}.", schema=Level) for i in range(6) for c in (a, b)))
    assert len(fake_vlm.chat_requests) == 12
    assert fake_vlm.max_in_flight == 2


async def test_stats_count_requests_tokens_and_latency(fake_vlm: FakeVLMServer) -> None:
    fake_vlm.script.default({"level": 3})
    async with make_client(fake_vlm) as vlm:
        await asyncio.gather(*(vlm.ask(f"Rate {i}.", schema=Level) for i in range(5)))
        summary = vlm.stats.summary()
    assert summary["requests"] == summary["attempts"] == 5
    assert summary["retries"] == summary["failures"] == 0
    assert summary["prompt_tokens"] > 0 and summary["completion_tokens"] == 5
    assert 0 < summary["latency_p50_s"] <= summary["latency_p90_s"] <= summary["latency_p99_s"]
    assert len(vlm.stats.latencies) == 5


async def test_list_models(fake_vlm: FakeVLMServer) -> None:
    fake_vlm.script.models = ["fake-vl", "Qwen/Qwen3-VL-8B-Instruct"]
    async with VLMClient(endpoint_config(fake_vlm)) as vlm:
        assert await vlm.list_models() == ["fake-vl", "Qwen/Qwen3-VL-8B-Instruct"]
