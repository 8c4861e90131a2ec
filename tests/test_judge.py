"""The Track 2 judge and the Track 2 run against the scripted fake VLM server (a real HTTP server)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from fake_vlm import API_KEY_ENV, Answer, FakeVLMServer
from PIL import Image

from portraitcraft.agents.judge import LEVELS, REASON_CHARS, Judge, JudgeError, JudgeResult
from portraitcraft.config import JudgeConfig
from portraitcraft.eval.track2 import judge_items, summarise
from portraitcraft.prompts.loader import load_prompt
from portraitcraft.schemas import Track2Spec
from portraitcraft.tools.vlm import VLMAnswerError, VLMClient

CONTENT_TEXT = "A woman in a red coat on a pier at dusk."
COMPOSITION_TEXT = "Subject on the left third, gaze to the right, wide negative space on the right."
PROBE_TEXT = "plain grey square"  # from prompts/judge/probe.md


def judge_cfg(fake: FakeVLMServer, **overrides: Any) -> JudgeConfig:
    values: dict[str, Any] = {"base_url": fake.base_url, "model": fake.model, "api_key_env": API_KEY_ENV,
                              "dialect": "vllm", "timeout": 5.0, "max_retries": 1, "mode": "sampled", "samples": 3}
    return JudgeConfig(**(values | overrides))


def client_for(cfg: JudgeConfig, cache_dir: Path | None = None) -> VLMClient:
    return VLMClient(cfg, cache_dir=cache_dir, _backoff_base=0.001, _backoff_max=0.01)


def image(red: int) -> Image.Image:
    return Image.new("RGB", (16, 16), (red, 0, 0))


def user_text(body: dict[str, Any]) -> str:
    user = next(m for m in body["messages"] if m["role"] == "user")
    return next(p["text"] for p in user["content"] if p["type"] == "text")


def red_of(body: dict[str, Any]) -> int:
    user = next(m for m in body["messages"] if m["role"] == "user")
    url = next(p["image_url"]["url"] for p in user["content"] if p["type"] == "image_url")
    img = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")
    return img.getpixel((0, 0))[0]


def verdict(content: int, composition: int, tag: str = "") -> dict[str, Any]:
    return {"content_reason": f"content {content}{tag}", "content_score": content,
            "composition_reason": f"composition {composition}{tag}", "composition_score": composition}


def logprob_answer(probs: dict[str, float]) -> Answer:
    top = max(probs, key=lambda k: probs[k])
    return Answer(content=top, tokens=[top], top_logprobs=[{k: math.log(p) for k, p in probs.items()}])


async def test_sampled_mode_means_votes_from_one_request(fake_vlm: FakeVLMServer) -> None:
    for c, k in ((80, 60), (70, 65), (90, 70)):
        fake_vlm.script.push(verdict(c, k))
    cfg = judge_cfg(fake_vlm)
    async with client_for(cfg) as client:
        result = await Judge(cfg, client).score(image(10), CONTENT_TEXT, COMPOSITION_TEXT)
    assert (result.content, result.composition) == (80.0, 65.0)
    assert result.content_std == pytest.approx(math.sqrt(200 / 3))
    assert result.composition_std == pytest.approx(math.sqrt(50 / 3))
    assert result.content_reason == "content 80" and result.n_samples == 3  # the sample nearest the means
    [req] = fake_vlm.chat_requests
    assert req.body["n"] == 3 and req.body["temperature"] == cfg.temperature
    assert req.body["messages"][0]["content"] == Judge(cfg, client).system
    assert "Composition score" in req.body["messages"][0]["content"]
    assert CONTENT_TEXT in user_text(req.body) and COMPOSITION_TEXT in user_text(req.body)
    assert "json" in req.body["structured_outputs"]


async def test_sampled_mode_drops_garbage_votes_and_fails_when_all_are_garbage(
    fake_vlm: FakeVLMServer,
) -> None:
    fake_vlm.script.push(verdict(60, 40)).push("not json at all").push(verdict(80, 50)).push("still not json")
    cfg = judge_cfg(fake_vlm)
    async with client_for(cfg) as client:
        judge = Judge(cfg, client)
        result = await judge.score(image(1), CONTENT_TEXT, COMPOSITION_TEXT)
        assert (result.content, result.composition, result.n_samples) == (70.0, 45.0, 2)
        fake_vlm.script.default('{"content_score": 500}')
        with pytest.raises(JudgeError, match="none of the 3 judge samples"):
            await judge.score(image(2), CONTENT_TEXT, COMPOSITION_TEXT)


async def test_logprob_mode_expected_value_equals_hand_computed(fake_vlm: FakeVLMServer) -> None:
    content_probs = {"6": 0.2, "7": 0.5, "8": 0.3}
    composition_probs = {"2": 0.25, "3": 0.5, "4": 0.25}

    def reply(body: dict[str, Any]) -> Any:
        text = user_text(body)
        if PROBE_TEXT in text:
            return logprob_answer({"9": 0.9, "8": 0.1})
        if "Do not score yet" in text:
            return {"content_reason": "clean hands", "composition_reason": "subject centred, not left"}
        if "Rate the CONTENT" in text:
            assert "clean hands" in text  # the level question sees the judge's own notes
            return logprob_answer(content_probs)
        assert "Rate how well the image follows the COMPOSITION" in text and "not left" in text
        return logprob_answer(composition_probs)

    fake_vlm.script.default(fn=reply)
    cfg = judge_cfg(fake_vlm, mode="logprob")
    async with client_for(cfg) as client:
        result = await Judge(cfg, client).score(image(3), CONTENT_TEXT, COMPOSITION_TEXT)
    # digits 0-9 normalised to 0-100: (6*0.2 + 7*0.5 + 8*0.3) / 9 * 100
    assert result.content == pytest.approx((1.2 + 3.5 + 2.4) / 9 * 100)
    assert result.composition == pytest.approx(3.0 / 9 * 100)
    assert result.content_std == pytest.approx(math.sqrt(0.2 * 1.21 + 0.5 * 0.01 + 0.3 * 0.81) * 100 / 9)
    assert result.composition_std == pytest.approx(math.sqrt(0.5) * 100 / 9)
    assert (result.mode, result.source, result.content_reason) == ("logprob", "logprobs", "clean hands")
    probe, *scoring = fake_vlm.chat_requests
    assert PROBE_TEXT in user_text(probe.body) and probe.body["logprobs"]  # one probe per run, first
    level_requests = [r for r in scoring if r.body.get("logprobs")]
    assert len(level_requests) == 2
    assert all(r.body["structured_outputs"]["choice"] == list(LEVELS) for r in level_requests)


def probing_reply(body: dict[str, Any]) -> Any:
    """The probe and the level questions get a digit; the explain step notes; the sampled mode verdicts."""
    text = user_text(body)
    if "Do not score yet" in text:
        return {"content_reason": "ok", "composition_reason": "ok"}
    if "single digit" in text:
        return logprob_answer({"7": 0.5, "8": 0.5})
    return verdict(55, 45)


async def test_auto_mode_probes_once_and_scores_every_image_the_same_way(fake_vlm: FakeVLMServer) -> None:
    """An endpoint without logprobs: the probe decides "sampled" BEFORE the first image, so no image is scored
    on the digit scale (the old auto mode scored the first image by sampled digits, the rest by verdicts)."""
    fake_vlm.script.no_logprobs = True
    fake_vlm.script.default(fn=probing_reply)
    cfg = judge_cfg(fake_vlm, mode="auto", samples=4)
    async with client_for(cfg) as client:
        judge = Judge(cfg, client)
        results = await asyncio.gather(*(judge.score(image(r), CONTENT_TEXT, COMPOSITION_TEXT) for r in (5, 6, 7)))
    assert judge.method == "sampled"
    assert [(r.mode, r.source, r.content, r.composition) for r in results] == [("sampled", "samples", 55.0, 45.0)] * 3
    probe, *scoring = fake_vlm.chat_requests
    assert PROBE_TEXT in user_text(probe.body) and probe.body["logprobs"]
    assert len(scoring) == 3 and all(r.body["n"] == 4 and not r.body.get("logprobs") for r in scoring)


async def test_auto_mode_with_logprobs_scores_every_image_by_logprobs(fake_vlm: FakeVLMServer) -> None:
    fake_vlm.script.default(fn=probing_reply)
    cfg = judge_cfg(fake_vlm, mode="auto")
    async with client_for(cfg) as client:
        judge = Judge(cfg, client)
        results = await asyncio.gather(*(judge.score(image(r), CONTENT_TEXT, COMPOSITION_TEXT) for r in (1, 2)))
        assert judge.method == "logprob" and await judge.prepare() == "logprob"
    assert {(r.mode, r.source) for r in results} == {("logprob", "logprobs")}
    assert results[0].content == pytest.approx(7.5 / 9 * 100)
    assert sum(PROBE_TEXT in user_text(r.body) for r in fake_vlm.chat_requests) == 1


async def test_logprob_mode_never_falls_back_to_sampling(fake_vlm: FakeVLMServer) -> None:
    fake_vlm.script.default(fn=probing_reply)
    cfg = judge_cfg(fake_vlm, mode="logprob")
    async with client_for(cfg) as client:
        judge = Judge(cfg, client)
        assert (await judge.score(image(1), CONTENT_TEXT, COMPOSITION_TEXT)).mode == "logprob"
        fake_vlm.script.no_logprobs = True  # the endpoint stops sending logprobs mid-run: that image fails
        with pytest.raises(VLMAnswerError, match="no usable logprobs"):
            await judge.score(image(2), CONTENT_TEXT, COMPOSITION_TEXT)
    assert not any(r.body.get("n", 1) > 1 for r in fake_vlm.chat_requests)  # no sampled votes were drawn
    async with client_for(cfg) as client:  # a new run on an endpoint without logprobs: a clear error
        with pytest.raises(JudgeError, match=r"judge.mode is 'logprob' but .* returns no usable logprobs"):
            await Judge(cfg, client).prepare()


def test_rubric_digits_match_the_logprob_normalisation() -> None:
    low, high = min(LEVELS.values()), max(LEVELS.values())
    for aspect in ("content", "composition"):
        lines = re.findall(r"^(\d) = about (\d+),", load_prompt(f"judge/level_{aspect}.md"), flags=re.M)
        assert sorted(d for d, _ in lines) == sorted(LEVELS)
        for digit, shown in lines:
            assert int(shown) == round(100 * (LEVELS[digit] - low) / (high - low))


async def test_unknown_rubric_is_a_clear_error_and_a_rubric_file_is_used(
    fake_vlm: FakeVLMServer, tmp_path: Path,
) -> None:
    custom = tmp_path / "strict.md"
    custom.write_text("{# my rubric #}Score harshly.")
    async with client_for(judge_cfg(fake_vlm)) as client:
        with pytest.raises(JudgeError, match="'nope'"):
            Judge(judge_cfg(fake_vlm, rubric="nope"), client)
        assert Judge(judge_cfg(fake_vlm, rubric=str(custom)), client).system == "Score harshly."
        binary = tmp_path / "binary.md"
        binary.write_bytes(b"\xff\xfe\x00 not text")
        with pytest.raises(JudgeError, match=r"binary\.md: not a readable UTF-8"):
            Judge(judge_cfg(fake_vlm, rubric=str(binary)), client)


def write_images(folder: Path, reds: list[int]) -> list[Track2Spec]:
    folder.mkdir(parents=True, exist_ok=True)
    specs = []
    for i, red in enumerate(reds):
        image(red).save(folder / f"img_{i}.png")
        specs.append(Track2Spec(image_path=f"img_{i}.png", content=f"{CONTENT_TEXT} #{i}",
                                composition=COMPOSITION_TEXT))
    return specs


def scores_by_red(body: dict[str, Any]) -> Any:
    red = red_of(body)
    if red == 250:
        return "garbage, not a verdict"
    return verdict(60 + red // 2, 50 + red)  # red 0, 10, 20, 30 -> content 60..75, composition 50..80


async def test_run_gives_exact_auto_and_final_and_lists_per_image_failures(
    fake_vlm: FakeVLMServer, tmp_path: Path,
) -> None:
    specs = write_images(tmp_path / "images", [0, 10, 20, 30, 250])
    (tmp_path / "images" / "broken.png").write_bytes(b"not an image at all")
    specs += [Track2Spec(image_path="broken.png", content="c", composition="k"),
              Track2Spec(image_path="missing.png", content="c", composition="k")]
    fake_vlm.script.default(fn=scores_by_red)
    cfg = judge_cfg(fake_vlm, samples=2, max_concurrency=3)
    async with client_for(cfg) as client:
        scores = await judge_items(specs, tmp_path / "images", Judge(cfg, client))
    human = {"img_0.png": 75.0, "img_1.png": 60.0, "img_2.png": 95.0, "img_3.png": 50.0}
    report = summarise(scores, human)
    # content 60, 65, 70, 75 and composition 50, 60, 70, 80: Auto = 0.3 * 67.5 + 0.7 * 65
    assert report.content == pytest.approx(67.5) and report.composition == pytest.approx(65.0)
    assert report.auto == pytest.approx(65.75)
    assert report.human == pytest.approx(70.0) and report.final == pytest.approx(0.4 * 65.75 + 0.6 * 70.0)
    assert (report.n_scored, report.n_failed) == (4, 3)
    errors = {f["image_path"]: f["error"] for f in report.failures}
    assert set(errors) == {"img_4.png", "broken.png", "missing.png"}
    assert "JudgeError" in errors["img_4.png"]
    assert "ImageError" in errors["broken.png"] and "not found" in errors["missing.png"]
    assert [s.image_path for s in scores] == [s.image_path for s in specs]  # item order kept
    assert isinstance(scores[0].result, JudgeResult) and scores[0].result.content_reason == "content 60"


async def test_server_errors_become_per_image_failures(fake_vlm: FakeVLMServer, tmp_path: Path) -> None:
    specs = write_images(tmp_path / "images", [0, 10, 20])
    fake_vlm.script.fault("status", status=503, times=2)  # the first image's request and its one retry
    fake_vlm.script.default(fn=scores_by_red)
    cfg = judge_cfg(fake_vlm, samples=1, max_retries=1)
    async with client_for(cfg) as client:
        scores = await judge_items(specs, tmp_path / "images", Judge(cfg, client), max_in_flight=1)
    report = summarise(scores)
    assert (report.n_scored, report.n_failed) == (2, 1)
    assert report.failures[0]["image_path"] == "img_0.png" and "VLMTransportError" in report.failures[0]["error"]
    assert report.auto == pytest.approx((0.3 * 65 + 0.7 * 60 + 0.3 * 70 + 0.7 * 70) / 2)


async def test_rerun_is_served_from_the_cache(fake_vlm: FakeVLMServer, tmp_path: Path) -> None:
    specs = write_images(tmp_path / "images", [0, 10, 20])
    fake_vlm.script.default(fn=scores_by_red)
    cfg = judge_cfg(fake_vlm, samples=3)
    runs = []
    for _ in range(2):
        async with client_for(cfg, cache_dir=tmp_path / "cache") as client:
            runs.append(summarise(await judge_items(specs, tmp_path / "images", Judge(cfg, client))))
        if len(runs) == 1:
            first_requests = len(fake_vlm.chat_requests)
    assert first_requests == 3
    assert len(fake_vlm.chat_requests) == first_requests  # the second run sent nothing
    assert runs[0].auto == runs[1].auto and runs[1].n_scored == 3
    changed = [s.model_copy(update={"composition": s.composition + " Low camera angle."}) for s in specs]
    async with client_for(cfg, cache_dir=tmp_path / "cache") as client:
        await judge_items(changed, tmp_path / "images", Judge(cfg, client))
    assert len(fake_vlm.chat_requests) == first_requests + 3  # a new description is judged again


async def test_run_judges_images_concurrently_within_the_client_limit(
    fake_vlm: FakeVLMServer, tmp_path: Path,
) -> None:
    specs = write_images(tmp_path / "images", [0, 10, 20, 30, 0, 10])

    def slow(body: dict[str, Any]) -> Answer:
        red = red_of(body)
        return Answer(content=json.dumps(verdict(60 + red // 2, 50 + red)), delay=0.2)

    fake_vlm.script.default(fn=slow)
    cfg = judge_cfg(fake_vlm, samples=1, max_concurrency=2)
    async with client_for(cfg) as client:
        scores = await judge_items(specs, tmp_path / "images", Judge(cfg, client), progress=True)
    assert fake_vlm.max_in_flight == 2  # concurrent, and never past judge.max_concurrency
    assert summarise(scores).n_scored == 6


async def test_a_long_reason_is_clipped_not_a_lost_score(fake_vlm: FakeVLMServer) -> None:
    fake_vlm.script.push(verdict(88, 77, tag=" and more" * 200))
    cfg = judge_cfg(fake_vlm, samples=1, dialect="openai")
    async with client_for(cfg) as client:
        result = await Judge(cfg, client).score(image(7), CONTENT_TEXT, COMPOSITION_TEXT)
    assert (result.content, result.composition, result.n_samples) == (88.0, 77.0, 1)
    assert len(result.content_reason) == REASON_CHARS and result.content_reason.startswith("content 88 and more")
    [req] = fake_vlm.chat_requests  # no re-ask
    schema = req.body["response_format"]["json_schema"]["schema"]
    assert "maxLength" not in json.dumps(schema) and schema["properties"]["content_score"]["maximum"] == 100
