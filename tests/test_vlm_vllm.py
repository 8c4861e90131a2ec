"""portraitcraft.tools.vlm.VLMClient against a REAL vLLM CPU server serving a tiny random Qwen2-VL (`-m vllm`).

The weights are random, so answers are schema-valid garbage: these tests assert structure, counts,
probability shapes, token accounting and error codes, never content. Server-side counts come from vLLM's
own Prometheus metrics (`http_requests_total`, `vllm:request_params_n`).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Literal

import pytest
from PIL import Image
from pydantic import BaseModel, Field
from vllm_server import settled, steady

from portraitcraft.tools.images import ImageError
from portraitcraft.tools.vlm import VLMAnswerError, VLMClient, VLMRequestError

if TYPE_CHECKING:
    from vllm_server import VLLMServer

pytest_plugins = ["vllm_server"]  # the session-scoped `vllm_server` fixture
pytestmark = pytest.mark.vllm
VERDICTS = ("yes", "no", "unsure")
CHAT = "/v1/chat/completions"


class Verdict(BaseModel):
    """One enum field: the grammar leaves the tiny model nothing to get wrong."""

    verdict: Literal["yes", "no", "unsure"]


class Note(BaseModel):
    """Free text plus a bounded number: the random model may fail these, which must surface typed."""

    reason: str = Field(max_length=40)
    score: int = Field(ge=0, le=10)


class BrokenSchema(BaseModel):
    """A schema no grammar backend accepts (an unknown JSON type)."""

    verdict: str = Field(json_schema_extra={"type": "nonsense"})


def picture(seed: int, size: tuple[int, int] = (224, 224)) -> Image.Image:
    """A distinct RGB gradient per seed (distinct images also keep vLLM's image cache honest)."""
    width, height = size
    img = Image.new("RGB", size)
    img.putdata([((x * 7 + seed * 37) % 256, (y * 5 + seed * 11) % 256, (x + y + seed * 53) % 256)
                 for y in range(height) for x in range(width)])
    return img


def posts(server: VLLMServer, status: str) -> float:
    return server.metric("http_requests_total", handler=CHAT, method="POST", status=status)


@pytest.fixture()
async def client(vllm_server: VLLMServer) -> AsyncIterator[VLMClient]:
    async with VLMClient(vllm_server.endpoint()) as vlm:
        yield vlm


async def test_list_models_names_the_served_model(client: VLMClient, vllm_server: VLLMServer) -> None:
    assert await client.list_models() == [vllm_server.model]


async def test_ask_returns_a_schema_valid_answer_and_sends_the_image(vllm_server: VLLMServer) -> None:
    async with VLMClient(vllm_server.endpoint()) as text_only, VLMClient(vllm_server.endpoint()) as with_image:
        plain = await text_only.ask("Is the subject facing left?", schema=Verdict)
        seen = await with_image.ask("Is the subject facing left?", [picture(1)], schema=Verdict)
    for answer, vlm in ((plain, text_only), (seen, with_image)):
        assert isinstance(answer, Verdict)
        assert answer.verdict in VERDICTS
        assert (vlm.stats.requests, vlm.stats.failures, vlm.stats.reasks) == (1, 0, 0)
        assert vlm.stats.completion_tokens > 0
    # 224x224 px = 16x16 patches of 14 px, merged 2x2 -> 64 image tokens, plus <|vision_start|>/<|vision_end|>
    assert with_image.stats.prompt_tokens - text_only.stats.prompt_tokens == 64 + 2


async def test_client_pixel_budget_shrinks_what_the_server_sees(vllm_server: VLLMServer) -> None:
    big = picture(2, (640, 640))
    async with VLMClient(vllm_server.endpoint(max_image_pixels=224 * 224)) as full, \
            VLMClient(vllm_server.endpoint(max_image_pixels=112 * 112)) as small:
        await full.ask("Rate it.", [big], schema=Verdict)
        await small.ask("Rate it.", [big], schema=Verdict)
    assert full.stats.reasks == small.stats.reasks == 0
    assert full.stats.prompt_tokens - small.stats.prompt_tokens == 64 - 16  # 8x8 vs 4x4 merged patches


async def test_free_text_answers_are_valid_or_a_typed_answer_error(client: VLMClient) -> None:
    answers = await client.ask_votes("Explain and score the pose.", [picture(3)], schema=Note, k=4,
                                     temperature=1.0, seed=3)
    assert len(answers) == 4
    for answer in answers:
        if isinstance(answer, VLMAnswerError):
            assert answer.problem and isinstance(answer.raw, str)
        else:
            assert isinstance(answer, Note)
            assert len(answer.reason) <= 40 and 0 <= answer.score <= 10


async def test_ask_votes_gets_k_answers_from_one_request(client: VLMClient, vllm_server: VLLMServer) -> None:
    ok_before = steady(lambda: posts(vllm_server, "2xx"))
    n_count = steady(lambda: vllm_server.metric("vllm:request_params_n_count"))
    n_sum = vllm_server.metric("vllm:request_params_n_sum")

    votes = await client.ask_votes("Which way does the subject face?", [picture(4)], schema=Verdict, k=5,
                                   temperature=1.0, seed=11)

    assert len(votes) == 5
    assert all(isinstance(v, Verdict) and v.verdict in VERDICTS for v in votes)
    assert settled(lambda: vllm_server.metric("vllm:request_params_n_count"), n_count + 1) == n_count + 1
    assert vllm_server.metric("vllm:request_params_n_sum") == n_sum + 5  # one request with n=5
    assert settled(lambda: posts(vllm_server, "2xx"), ok_before + 1) == ok_before + 1
    assert (client.stats.requests, client.stats.n_fallbacks, client.stats.failures) == (1, 0, 0)


async def test_greedy_votes_do_not_cost_n_for_later_sampled_votes(client: VLMClient,
                                                                  vllm_server: VLLMServer) -> None:
    """vLLM refuses n>1 with temperature 0; greedy votes must not make the client give up n=K for good."""
    greedy = await client.ask_votes("Facing left?", [picture(5)], schema=Verdict, k=3, temperature=0.0)
    assert len(greedy) == 3 and all(isinstance(v, Verdict) for v in greedy)
    assert len({v.verdict for v in greedy}) == 1  # greedy decoding is deterministic

    n_count = steady(lambda: vllm_server.metric("vllm:request_params_n_count"))
    n_sum = vllm_server.metric("vllm:request_params_n_sum")
    sampled = await client.ask_votes("Facing left?", [picture(5)], schema=Verdict, k=3, temperature=1.0, seed=5)
    assert len(sampled) == 3
    assert settled(lambda: vllm_server.metric("vllm:request_params_n_count"), n_count + 1) == n_count + 1
    assert vllm_server.metric("vllm:request_params_n_sum") == n_sum + 3
    assert client.stats.failures == 0


async def test_choice_probs_sum_to_one_over_the_allowed_set(client: VLMClient) -> None:
    choices = ["A", "B", "C", "D"]
    dist = await client.choice_probs("Which crop is best? Answer A, B, C or D.", [picture(6)], choices=choices)
    again = await client.choice_probs("Which crop is best? Answer A, B, C or D.", [picture(6)], choices=choices)

    assert dist.source == "logprobs"
    assert list(dist.probs) == choices
    assert math.isclose(sum(dist.probs.values()), 1.0, abs_tol=1e-9)
    assert all(p > 0 for p in dist.probs.values())  # the structured choice leaves every option allowed
    assert dist.probs == pytest.approx(again.probs, abs=1e-3)  # logprobs at temperature 0 repeat


async def test_choice_probs_with_many_options_stays_within_the_logprob_limit(client: VLMClient) -> None:
    choices = [chr(ord("A") + i) for i in range(12)]  # top_logprobs asked = min(20, 12 + 10)
    dist = await client.choice_probs("Pick a letter.", [picture(7)], choices=choices)
    assert dist.source == "logprobs"
    assert set(dist.probs) == set(choices)
    assert math.isclose(sum(dist.probs.values()), 1.0, abs_tol=1e-9)


async def test_expected_score_lies_within_the_level_range(client: VLMClient) -> None:
    levels = {"1": 1.0, "2": 2.0, "3": 3.0, "4": 4.0, "5": 5.0}
    value, unit, dist = await client.expected_score("Rate the composition from 1 to 5.", [picture(8)],
                                                    levels=levels)
    assert dist.source == "logprobs"
    assert 1.0 <= value <= 5.0
    assert unit == pytest.approx((value - 1.0) / 4.0)
    assert value == pytest.approx(dist.expected(levels))


async def test_eight_concurrent_image_requests_all_complete(vllm_server: VLLMServer) -> None:
    ok_before = steady(lambda: posts(vllm_server, "2xx"))
    async with VLMClient(vllm_server.endpoint(max_concurrency=8)) as vlm:
        answers = await asyncio.gather(*(
            vlm.ask(f"Image {i}: facing left?", [picture(100 + i)], schema=Verdict, temperature=1.0, seed=i)
            for i in range(8)
        ))
    assert [type(a) for a in answers] == [Verdict] * 8
    assert (vlm.stats.requests, vlm.stats.failures, len(vlm.stats.latencies)) == (8, 0, 8)
    assert settled(lambda: posts(vllm_server, "2xx"), ok_before + 8) == ok_before + 8


async def test_too_many_images_is_a_clear_request_error(client: VLMClient, vllm_server: VLLMServer) -> None:
    limit = vllm_server.max_images
    images = [picture(20 + i, (112, 112)) for i in range(limit + 1)]
    with pytest.raises(VLMRequestError) as caught:
        await client.ask("Compare them.", images, schema=Verdict)
    assert caught.value.status == 400
    assert f"At most {limit} image" in str(caught.value)
    assert client.cfg.model in str(caught.value)
    assert client.stats.retries == 0  # a 400 is never retried

    answer = await client.ask("Compare them.", images[:limit], schema=Verdict)
    assert answer.verdict in VERDICTS


async def test_corrupt_image_fails_before_any_request(client: VLMClient) -> None:
    with pytest.raises(ImageError, match=r"images\[0\]"):
        await client.ask("Facing left?", [b"\x89PNG\r\n\x1a\n definitely not a PNG body"], schema=Verdict)
    assert (client.stats.requests, client.stats.attempts) == (0, 0)


async def test_image_the_server_cannot_process_is_a_request_error(client: VLMClient) -> None:
    sliver = Image.new("RGB", (1, 400), (200, 40, 40))  # aspect ratio beyond what Qwen2-VL's processor takes
    with pytest.raises(VLMRequestError) as caught:
        await client.ask("Facing left?", [sliver], schema=Verdict)
    assert caught.value.status == 400
    assert client.cfg.model in str(caught.value)
    assert client.stats.retries == 0


async def test_bad_schema_is_a_clear_request_error_and_the_image_still_works(client: VLMClient) -> None:
    image = picture(30)
    with pytest.raises(VLMRequestError) as caught:
        await client.ask("Facing left?", [image], schema=BrokenSchema)
    assert caught.value.status == 400
    assert "nonsense" in str(caught.value)
    # vLLM 0.32 can answer the next request with the same image with a one-off 500 ("P0/P1 cache drift");
    # the client's retry layer must absorb it
    answer = await client.ask("Facing left?", [image], schema=Verdict)
    assert answer.verdict in VERDICTS


async def test_unknown_model_is_a_404_naming_the_served_model(vllm_server: VLLMServer) -> None:
    async with VLMClient(vllm_server.endpoint(model="no-such-model")) as vlm:
        with pytest.raises(VLMRequestError) as caught:
            await vlm.ask("Facing left?", schema=Verdict)
    assert caught.value.status == 404
    assert "no-such-model" in str(caught.value)
    assert vllm_server.model in str(caught.value)
    assert vlm.stats.retries == 0


async def test_judge_logprob_mode_reads_real_digit_probabilities(vllm_server: VLLMServer, tmp_path) -> None:
    """The Track 2 judge's logprob path against real vLLM tokens: a distribution over the ten digits
    (renormalised by the structured `choice`) and a 0-100 expected score.

    The tiny model's tokenizer is byte-level (one token per byte) and its context 2048 tokens, so the shipped
    rubric (about 4,000 bytes) does not fit: a short rubric file stands in for it here."""
    from portraitcraft.agents.judge import Judge
    from portraitcraft.config import JudgeConfig

    rubric = tmp_path / "short.md"
    rubric.write_text("Score Content and Composition from 0 to 100.")
    cfg = JudgeConfig(**{**vllm_server.endpoint().model_dump(), "mode": "logprob", "samples": 3,
                         "max_tokens": 96, "rubric": str(rubric)})
    async with VLMClient(cfg) as client:
        result = await Judge(cfg, client).score(picture(41), "A woman in a red coat.", "Subject on the left third.")
        assert client.stats.requests == 4  # the probe, the reasons, then one digit distribution per score
    assert result.mode == "logprob" and result.source == "logprobs" and result.n_samples == 0
    for score, spread in ((result.content, result.content_std), (result.composition, result.composition_std)):
        # random weights: a spread-out distribution over the ten digits, its mean on the 0-100 scale
        assert 0.0 <= score <= 100.0 and 0.0 < spread <= 50.0
