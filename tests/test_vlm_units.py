"""The VLM layer's pure parts: dialect schemas, JSON extraction, logprob reading, cache, transport helpers."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import httpx2
import openai
import pytest
from pydantic import BaseModel, Field

from portraitcraft.tools.retry import is_transient, retry_after_seconds
from portraitcraft.tools.vlm_cache import CACHE_FILE, VLMCache
from portraitcraft.tools.vlm_errors import VLMError
from portraitcraft.tools.vlm_formats import (
    AnswerInvalid,
    choice_format,
    first_json_object,
    json_format,
    strict_json_schema,
)
from portraitcraft.tools.vlm_logprobs import (
    ChoiceDistribution,
    TokenLogprob,
    distribution_from_logprobs,
    distribution_from_samples,
)
from portraitcraft.tools.vlm_stats import EndpointStats


class Finding(BaseModel):
    rule: str
    confidence: float = 0.5


class Critique(BaseModel):
    findings: list[Finding]
    passed: bool = False
    note: str | None = None


# ---------------------------------------------------------------- dialects


def test_strict_schema_closes_every_object_and_requires_every_property() -> None:
    schema = strict_json_schema(Critique.model_json_schema())
    assert schema["additionalProperties"] is False
    assert sorted(schema["required"]) == ["findings", "note", "passed"]
    finding = schema["$defs"]["Finding"]
    assert finding["additionalProperties"] is False and sorted(finding["required"]) == ["confidence", "rule"]
    assert "default" not in str(schema)
    assert "default" in str(Critique.model_json_schema())  # the input was not modified


def test_json_format_per_dialect() -> None:
    vllm_schema = json_format(Critique, "vllm").fields["extra_body"]["structured_outputs"]["json"]
    assert vllm_schema["additionalProperties"] is False  # closed, so the grammar cannot invent keys
    assert vllm_schema["$defs"]["Finding"]["additionalProperties"] is False
    assert vllm_schema["required"] == Critique.model_json_schema()["required"]  # optional fields stay optional
    assert vllm_schema["properties"]["passed"]["default"] is False
    assert json_format(Critique, "openai").fields["response_format"]["json_schema"]["name"] == "Critique"
    plain = json_format(Critique, "plain")
    assert plain.fields == {} and "JSON schema" in (plain.instructions or "")
    with pytest.raises(ValueError, match="unknown endpoint dialect"):
        json_format(Critique, "guided")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ('Here you go:\n```json\n{"a": {"b": [1, 2]}}\n```\nDone.', {"a": {"b": [1, 2]}}),
        ('{not json} but then {"a": "x}"}', {"a": "x}"}),
    ],
)
def test_first_json_object(text: str, expected: dict) -> None:
    assert first_json_object(text) == expected


@pytest.mark.parametrize("text", ["", "no braces", '{"a": 1', "[1, 2]"])
def test_first_json_object_none_found(text: str) -> None:
    with pytest.raises(AnswerInvalid, match="no complete JSON object"):
        first_json_object(text)


def test_json_parse_reports_the_failing_field() -> None:
    with pytest.raises(AnswerInvalid, match=r"findings\.0\.rule: Field required"):
        json_format(Critique, "vllm").parse('{"findings": [{"confidence": 0.2}]}')


def test_choice_parsing_per_kind() -> None:
    plain = choice_format(["A", "B", "C", "D"], "plain")
    assert plain.parse(" B. ") == "B" and plain.parse("C) the third") == "C" and plain.parse('"D"') == "D"
    with pytest.raises(AnswerInvalid, match="not one of: A, B, C, D"):
        plain.parse("Both")
    assert choice_format(["B", "Bad"], "vllm").parse("Bad") == "Bad"
    openai_fmt = choice_format(["yes", "no"], "openai")
    assert openai_fmt.parse('{"answer": "no"}') == "no"
    assert openai_fmt.value_offset('{"answer": "no"}') == len('{"answer": "')
    with pytest.raises(AnswerInvalid, match="'maybe', not one of"):
        openai_fmt.parse('{"answer": "maybe"}')
    with pytest.raises(ValueError, match="distinct"):
        choice_format(["A", "A"], "vllm")


# ---------------------------------------------------------------- logprob reading


def _tok(token: str, **alternatives: float) -> TokenLogprob:
    return TokenLogprob(token, alternatives.get(token, 0.0), tuple(alternatives.items()))


def test_reads_the_token_that_covers_the_offset_even_when_merged() -> None:
    tokens = [
        TokenLogprob('{"answer', 0.0, ()),
        TokenLogprob('": "Good', math.log(0.7), (('": "Good', math.log(0.7)), ('": "Poor', math.log(0.2)),
                                                 ('":"Good', math.log(0.1)))),
        TokenLogprob('"}', 0.0, ()),
    ]
    dist = distribution_from_logprobs(tokens, len('{"answer": "'), ["Poor", "Good"])
    assert dist is not None
    assert dist.probs == pytest.approx({"Poor": 0.2 / 0.9, "Good": 0.7 / 0.9})  # '":"Good' has another prefix


def test_token_running_past_the_option_still_counts() -> None:
    tokens = [TokenLogprob('B"}', math.log(0.6), (('B"}', math.log(0.6)), ('A"', math.log(0.2)),
                                                  ("Banana", math.log(0.2))))]
    dist = distribution_from_logprobs(tokens, 0, ["A", "B"])
    assert dist is not None and dist.probs == pytest.approx({"A": 0.25, "B": 0.75})


def test_ambiguous_first_tokens_go_to_the_exact_option_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    tokens = [TokenLogprob("1", math.log(0.5), (("1", math.log(0.5)), ("9", math.log(0.5))))]
    for _ in range(3):
        dist = distribution_from_logprobs(tokens, 0, ["1", "9", "10"])
        assert dist is not None and dist.probs == pytest.approx({"1": 0.5, "9": 0.5, "10": 0.0})
    assert sum("share a first token" in r.getMessage() for r in caplog.records) == 1


def test_nothing_readable_gives_none() -> None:
    masked = [TokenLogprob("A", -9999.0, (("A", -9999.0), ("B", -math.inf)))]
    assert distribution_from_logprobs(masked, 0, ["A", "B"]) is None
    assert distribution_from_logprobs([_tok("A", A=0.0)], 5, ["A", "B"]) is None  # offset past the reply


def test_sample_distribution_and_expected_value() -> None:
    dist = distribution_from_samples(["3", "5", "3", "x", "1"], ["1", "3", "5"])
    assert dist.probs == {"1": 0.25, "3": 0.5, "5": 0.25} and dist.samples == 4 and dist.source == "samples"
    assert dist.expected({"1": 1, "3": 3, "5": 5}) == pytest.approx(0.25 * 1 + 0.5 * 3 + 0.25 * 5)
    assert dist.top == "3"
    with pytest.raises(ValueError, match="no numeric value"):
        dist.expected({"1": 1, "3": 3})
    with pytest.raises(ValueError, match="no valid votes"):
        distribution_from_samples(["x"], ["1", "3"])
    assert ChoiceDistribution({"a": 1.0, "b": 0.0}, "logprobs").expected({"a": 2.0}) == 2.0


# ---------------------------------------------------------------- cache, transport, stats


def test_cache_round_trip_persists_and_keys_are_canonical(tmp_path: Path) -> None:
    request = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0, "seed": 1}
    key = VLMCache.key(request)
    assert key == VLMCache.key(dict(reversed(list(request.items()))))
    assert key != VLMCache.key(dict(request, seed=2))
    cache = VLMCache(tmp_path / "c")
    assert cache.get(key) is None
    cache.put(key, {"replies": [{"text": "é", "finish_reason": "stop", "tokens": None}]})
    cache.close()
    reopened = VLMCache(tmp_path / "c")
    assert reopened.get(key) == {"replies": [{"text": "é", "finish_reason": "stop", "tokens": None}]}
    assert len(reopened) == 1
    reopened.close()


def test_unusable_cache_location_is_a_clear_error(tmp_path: Path) -> None:
    a_file = tmp_path / "cache_is_a_file"
    a_file.write_text("x")
    with pytest.raises(VLMError, match=r"cache_is_a_file.*cannot be opened"):
        VLMCache(a_file)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / CACHE_FILE).write_bytes(b"not a database " * 200)
    with pytest.raises(VLMError, match=r"cannot be opened \(DatabaseError"):
        VLMCache(tmp_path / "junk")


def _status_error(status: int, headers: dict[str, str] | None = None) -> openai.APIStatusError:
    request = httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions")
    response = httpx2.Response(status, headers=headers or {}, request=request)
    return openai.APIStatusError("x", response=response, body=None)


@pytest.mark.parametrize(("status", "transient"), [(400, False), (401, False), (404, False), (422, False),
                                                   (408, True), (429, True), (500, True), (503, True)])
def test_transient_classification(status: int, transient: bool) -> None:
    assert is_transient(_status_error(status)) is transient


def test_retry_after_forms() -> None:
    assert retry_after_seconds(_status_error(429, {"Retry-After": "3"})) == 3.0
    assert retry_after_seconds(_status_error(429, {"retry-after-ms": "1500", "Retry-After": "9"})) == 1.5
    assert retry_after_seconds(_status_error(429, {"Retry-After": "soon"})) is None
    assert retry_after_seconds(_status_error(429)) is None


def test_stats_summary_when_empty_and_filled() -> None:
    assert EndpointStats().summary()["latency_p50_s"] is None
    stats = EndpointStats(requests=3, latencies=[0.1, 0.2, 0.9])
    summary = stats.summary()
    assert summary["latency_p50_s"] == pytest.approx(0.2) and summary["latency_max_s"] == pytest.approx(0.9)
    assert summary["requests"] == 3


def test_strict_schema_keeps_field_constraints() -> None:
    class Bounded(BaseModel):
        instruction: str = Field("", max_length=20)

    schema = strict_json_schema(Bounded.model_json_schema())
    assert schema["properties"]["instruction"]["maxLength"] == 20 and schema["required"] == ["instruction"]


def test_answer_format_is_built_once_and_never_shared() -> None:
    """The schema is built once per (schema, dialect); every call still gets its own dicts to mutate."""
    from pydantic import BaseModel as _Model

    from portraitcraft.tools.vlm_formats import _schema_texts, json_format

    class Probe(_Model):
        ok: bool

    _schema_texts.cache_clear()
    first = json_format(Probe, "vllm")
    first.fields["extra_body"]["structured_outputs"]["json"]["type"] = "mutated"
    second = json_format(Probe, "vllm")
    assert second.fields["extra_body"]["structured_outputs"]["json"]["type"] == "object"
    assert _schema_texts.cache_info().hits == 1
    with pytest.raises(ValueError, match="unknown endpoint dialect"):
        json_format(Probe, "grpc")  # type: ignore[arg-type]
