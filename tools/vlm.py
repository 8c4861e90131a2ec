"""The one async client every role (critic, judge, assessor, miner) uses to talk to a VLM.

It speaks the OpenAI chat-completions protocol to vLLM, hosted APIs and Gemini's OpenAI-compatible
endpoint, and owns everything between a prompt and a typed answer: images as data URLs, the endpoint's
structured-output dialect (tools/vlm_formats.py), K samples in one request, logprob distributions
(tools/vlm_logprobs.py), transport retries (tools/retry.py: the one retry policy, shared with the remote image
backend; the SDK's own retries are off), a shared per-endpoint concurrency limit, the on-disk cache
(tools/vlm_cache.py) and accounting (tools/vlm_stats.py).

Example:
    >>> class Verdict(BaseModel):
    ...     detected: bool
    ...     instruction: str
    >>> async with VLMClient(cfg.critic, cache_dir=Path(".cache/portraitcraft")) as vlm:  # doctest: +SKIP
    ...     verdict = await vlm.ask("Is the subject facing left?", ["draft.png"], schema=Verdict)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import openai
from openai.types.chat import ChatCompletion
from pydantic import BaseModel

from portraitcraft.config import EndpointConfig, mask_secrets, merge
from portraitcraft.tools.images import ImageInput, encode_image
from portraitcraft.tools.retry import (
    MalformedReply,
    RetriesExhausted,
    RetryPolicy,
    Sleep,
    client_settings,
    describe_fault,
    server_message,
)
from portraitcraft.tools.vlm_cache import VLMCache
from portraitcraft.tools.vlm_errors import VLMAnswerError, VLMError, VLMRequestError, VLMTransportError
from portraitcraft.tools.vlm_formats import AnswerFormat, AnswerInvalid, choice_format, json_format
from portraitcraft.tools.vlm_logprobs import (
    ChoiceDistribution,
    TokenLogprob,
    distribution_from_logprobs,
    distribution_from_samples,
)
from portraitcraft.tools.vlm_stats import EndpointStats
from portraitcraft.tools.vlm_transport import shared_semaphore

__all__ = [
    "ChoiceDistribution",
    "EndpointStats",
    "VLMAnswerError",
    "VLMClient",
    "VLMError",
    "VLMRequestError",
    "VLMTransportError",
]

log = logging.getLogger(__name__)
T = TypeVar("T", bound=BaseModel)
MAX_TOP_LOGPROBS = 20  # vLLM's default --max-logprobs; OpenAI's limit too


@dataclass(frozen=True)
class _Reply:
    """One completion choice, reduced to what the client reads (this is what the cache stores)."""

    text: str
    finish_reason: str | None
    tokens: tuple[TokenLogprob, ...] | None

    @classmethod
    def from_choice(cls, choice: Any) -> _Reply:
        content = getattr(choice.logprobs, "content", None) if choice.logprobs is not None else None
        tokens = None
        if content:
            tokens = tuple(
                TokenLogprob(t.token, float(t.logprob),
                             tuple((a.token, float(a.logprob)) for a in (t.top_logprobs or [])))
                for t in content
            )
        return cls(choice.message.content or "", choice.finish_reason, tokens)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> _Reply:
        tokens = data.get("tokens")
        return cls(
            data["text"],
            data.get("finish_reason"),
            None if tokens is None else tuple(
                TokenLogprob(t["token"], t["logprob"], tuple((a, lp) for a, lp in t["top"])) for t in tokens
            ),
        )


@dataclass(frozen=True)
class _Conversation:
    """Chat messages as sent (`wire`, images as data URLs) and as hashed for the cache (`key`)."""

    wire: list[dict[str, Any]]
    key: list[dict[str, Any]]

    def followed_by(self, assistant: str, user: str) -> _Conversation:
        turns = [{"role": "assistant", "content": assistant}, {"role": "user", "content": user}]
        return _Conversation(self.wire + turns, self.key + turns)


class VLMClient:
    """An OpenAI-compatible VLM endpoint, with typed answers, votes, logprob scores, retries and a cache.

    Args:
        cfg (EndpointConfig): base_url, model, api_key_env, dialect (structured-output dialect), timeout,
            connect_timeout, max_concurrency, max_retries, retry_backoff, temperature, max_tokens,
            max_image_pixels, seed, cache, extra.
        cache_dir (Path, optional): folder of the on-disk reply cache; None (or cfg.cache False) disables it.

    Example:
        >>> async with VLMClient(cfg.judge) as vlm:                                   # doctest: +SKIP
        ...     value, unit, dist = await vlm.expected_score("Rate the composition.", ["a.png"],
        ...                                                  levels={"1": 1, "2": 2, "3": 3, "4": 4, "5": 5})
    """

    def __init__(
        self,
        cfg: EndpointConfig,
        *,
        cache_dir: Path | None = None,
        _backoff_base: float | None = None,
        _backoff_max: float = 30.0,
        _retry_after_cap: float = 60.0,
        _sleep: Sleep = asyncio.sleep,
        _image_format: Literal["PNG", "JPEG"] = "PNG",
    ) -> None:
        self.cfg = cfg
        self.stats = EndpointStats()
        settings = client_settings(cfg)
        self.url = mask_secrets(settings["base_url"].rstrip("/"))
        self._client = openai.AsyncOpenAI(**settings)
        self._secrets = [v for v in (settings["api_key"], *(settings["default_query"] or {}).values())
                         if isinstance(v, str) and len(v) >= 8]
        self._retry = RetryPolicy(max_retries=cfg.max_retries,
                                  base_delay=cfg.retry_backoff if _backoff_base is None else _backoff_base,
                                  max_delay=_backoff_max, retry_after_cap=_retry_after_cap, sleep=_sleep)
        self._cache = VLMCache(cache_dir) if cache_dir is not None and cfg.cache else None
        self._image_format = _image_format
        self._n_supported: bool | None = None
        self._logprobs_supported: bool | None = None
        self._warned: set[str] = set()

    async def __aenter__(self) -> VLMClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP connection pool and the cache."""
        await self._client.close()
        if self._cache is not None:
            self._cache.close()

    # ------------------------------------------------------------------ public calls

    async def ask(
        self,
        prompt: str,
        images: Sequence[ImageInput] = (),
        *,
        schema: type[T],
        system: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        seed: int | None = None,
    ) -> T:
        """Ask for one answer typed by a pydantic model.

        Args:
            prompt (str): the user text.
            images (sequence of path | bytes | PIL image, optional): images shown with the prompt (one image
                may be given bare).
            schema (type[BaseModel]): the answer's type, enforced by the endpoint's dialect.
            system (str, optional): a system message.
            temperature (float, optional, defaults to cfg.temperature): sampling temperature.
            max_tokens (int, optional, defaults to cfg.max_tokens): completion token limit.
            seed (int, optional, defaults to cfg.seed): sampling seed (sampled replies are cached only seeded).

        Raises:
            VLMAnswerError: the answer did not parse/validate after one re-ask with the error.
            VLMRequestError: the server refused the request (400/401/403/404).
            VLMTransportError: transient faults outlasted cfg.max_retries.
            ImageError: an image cannot be used.

        Example:
            >>> verdict = await vlm.ask("Is the horizon level?", ["a.png"], schema=Verdict)  # doctest: +SKIP
        """
        fmt = json_format(schema, self.cfg.dialect)
        conv = await self._conversation(prompt, images, system, fmt)
        params = self._params(temperature, max_tokens, seed)
        [reply] = await self._samples(conv, fmt, n=1, **params)
        value, _ = await self._read(conv, fmt, reply, **params)
        if isinstance(value, VLMAnswerError):
            raise value
        return value

    async def ask_votes(
        self,
        prompt: str,
        images: Sequence[ImageInput] = (),
        *,
        schema: type[T],
        k: int,
        temperature: float | None = None,
        system: str | None = None,
        seed: int | None = None,
    ) -> list[T | VLMAnswerError]:
        """K sampled answers for self-consistency voting, from ONE request (`n=k`) when the server allows.

        Servers that refuse n>1 (HTTP 400) or ignore it get K single requests instead (remembered per client).
        An answer that stays invalid after its one re-ask is returned as a VLMAnswerError in its place.

        Args:
            prompt, images, schema, system, seed: as for `ask`.
            k (int): the number of samples.
            temperature (float, optional, defaults to cfg.temperature): use > 0 for diverse votes.

        Example:
            >>> votes = await vlm.ask_votes("Which level?", ["a.png"], schema=LevelAnswer, k=5,
            ...                             temperature=0.7)                                 # doctest: +SKIP
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        fmt = json_format(schema, self.cfg.dialect)
        conv = await self._conversation(prompt, images, system, fmt)
        params = self._params(temperature, None, seed)
        replies = await self._samples(conv, fmt, n=k, **params)
        read = await asyncio.gather(*(self._read(conv, fmt, r, **params) for r in replies))
        return [value for value, _ in read]

    async def choice_probs(
        self,
        prompt: str,
        images: Sequence[ImageInput] = (),
        *,
        choices: Sequence[str],
        system: str | None = None,
        samples_if_no_logprobs: int = 8,
        seed: int | None = None,
        fallback: bool = True,
    ) -> ChoiceDistribution:
        """The model's probability of each option of a closed set (levels, yes/no, A-D).

        Read from top_logprobs at the deciding token (vLLM structured `choice`, a JSON-schema enum on
        `openai` endpoints, the bare reply on `plain` ones). Where the endpoint returns no logprobs, a
        warning is logged once and the distribution is estimated from `samples_if_no_logprobs` votes at
        temperature cfg.temperature (1.0 when that is 0), with source="samples".

        Args:
            prompt, images, system, seed: as for `ask`.
            choices (sequence of str): the options, e.g. ["A", "B", "C", "D"]; best if they differ in their
                first token.
            samples_if_no_logprobs (int, optional, defaults to 8): votes for the sampled fallback.
            fallback (bool, optional, defaults to True): False raises VLMAnswerError instead of sampling
                when the reply carries no usable logprobs (a caller that must score every item one way).

        Example:
            >>> dist = await vlm.choice_probs("Is the gaze to the left? Answer yes or no.", ["a.png"],
            ...                               choices=["yes", "no"])                          # doctest: +SKIP
            >>> dist.probs                                                                     # doctest: +SKIP
            {'yes': 0.83, 'no': 0.17}
        """
        if samples_if_no_logprobs < 1:
            raise ValueError(f"samples_if_no_logprobs must be at least 1, got {samples_if_no_logprobs}")
        fmt = choice_format(choices, self.cfg.dialect)
        options = [str(c) for c in choices]
        conv = await self._conversation(prompt, images, system, fmt)
        params = self._params(None, None, seed)
        refused: VLMRequestError | None = None
        if self._logprobs_supported is not False:
            try:
                dist = await self._logprob_distribution(conv, fmt, options, params, samples_if_no_logprobs)
            except VLMRequestError as exc:
                if exc.status not in (400, 422) or not fallback:
                    raise
                refused, dist = exc, None  # some hosted models refuse the logprobs parameter itself
            if dist is not None:
                return dist
        if not fallback:
            raise VLMAnswerError(f"{self.cfg.model} at {self.url}: the reply carries no usable logprobs for the "
                                 f"choices {options}", raw="", problem="no usable logprobs")
        sample_params = dict(params, temperature=self.cfg.temperature or 1.0)
        replies = await self._samples(conv, fmt, n=samples_if_no_logprobs, **sample_params)
        if refused is not None:  # sampling worked, so the 400 was about logprobs
            self._logprobs_supported = False
            self._warn_once("logprobs", "%s (%s) refused logprobs (%s): estimating choice probabilities from "
                            "%d samples instead", self.url, self.cfg.model, refused, samples_if_no_logprobs)
        read = await asyncio.gather(*(self._read(conv, fmt, r, **sample_params) for r in replies))
        votes = [v for v, _ in read if not isinstance(v, VLMAnswerError)]
        if not votes:
            raise next(v for v, _ in read if isinstance(v, VLMAnswerError))
        return distribution_from_samples(votes, options)

    async def _logprob_distribution(self, conv: _Conversation, fmt: AnswerFormat, options: list[str],
                                    params: dict[str, Any], fallback_k: int) -> ChoiceDistribution | None:
        """The distribution from top_logprobs, or None (after one warning) when the endpoint gives none."""
        top = min(MAX_TOP_LOGPROBS, len(options) + 10)  # room for non-option tokens competing
        [reply] = await self._samples(conv, fmt, n=1, top_logprobs=top, **params)
        value, used = await self._read(conv, fmt, reply, top_logprobs=top, **params)
        if isinstance(value, VLMAnswerError):
            raise value
        if not used.tokens:
            self._logprobs_supported = False
            then = f": estimating choice probabilities from {fallback_k} samples instead" if fallback_k else ""
            self._warn_once("logprobs", "%s (%s) returns no logprobs%s", self.url, self.cfg.model, then)
            return None
        offset = fmt.value_offset(used.text)
        dist = distribution_from_logprobs(used.tokens, offset, options) if offset is not None else None
        if dist is None:
            self._warn_once("locate", "%s: could not find the answer token in the logprobs of %r; estimating "
                            "from samples", self.url, used.text[:80])
            return None
        self._logprobs_supported = True
        return dist

    async def expected_score(
        self,
        prompt: str,
        images: Sequence[ImageInput] = (),
        *,
        levels: Mapping[str, float],
        system: str | None = None,
        samples_if_no_logprobs: int = 8,
        seed: int | None = None,
        fallback: bool = True,
    ) -> tuple[float, float, ChoiceDistribution]:
        """The probability-weighted score over discrete levels (Q-Align / PortraitRL).

        Returns (S, S', dist) with S = sum_i m_i * p_i and S' = (S - min M) / (max M - min M) in [0, 1].

        Args:
            prompt, images, system, seed: as for `ask`.
            levels (mapping str -> float): each option's numeric value, e.g. {"Poor": 0, "Medium": 5,
                "Good": 10}.
            samples_if_no_logprobs (int, optional, defaults to 8): votes drawn where the endpoint gives no
                logprobs (as for `choice_probs`).
            fallback (bool, optional, defaults to True): as for `choice_probs`.

        Example:
            >>> value, unit, dist = await vlm.expected_score("Rate 1-5.", ["a.png"],
            ...                                              levels={str(i): i for i in range(1, 6)})  # doctest: +SKIP
        """
        try:
            values = {str(k): float(v) for k, v in levels.items()}
        except (TypeError, ValueError):
            raise ValueError(f"levels must map each option to a number, got {dict(levels)!r}") from None
        if len(values) < 2 or (high := max(values.values())) <= (low := min(values.values())):
            raise ValueError(f"levels need at least two different values, got {dict(levels)}")
        dist = await self.choice_probs(prompt, images, choices=list(values), system=system, seed=seed,
                                       samples_if_no_logprobs=samples_if_no_logprobs, fallback=fallback)
        value = dist.expected(values)
        return value, (value - low) / (high - low), dist

    async def logprobs_available(
        self,
        prompt: str,
        images: Sequence[ImageInput] = (),
        *,
        choices: Sequence[str],
        system: str | None = None,
    ) -> bool:
        """Whether the endpoint returns usable top_logprobs for a closed-set answer: one request (remembered by
        the client), for callers that choose ONE scoring method before a run (e.g. the judge's auto mode).

        A refusal of the logprobs parameter (HTTP 400/422) counts as "no"; transport faults and other
        refusals raise as for `ask`.

        Example:
            >>> await vlm.logprobs_available("Answer with one digit.", ["a.png"],
            ...                              choices=list("0123456789"))                   # doctest: +SKIP
            True
        """
        if self._logprobs_supported is not None:
            return self._logprobs_supported
        fmt = choice_format(choices, self.cfg.dialect)
        conv = await self._conversation(prompt, images, system, fmt)
        try:
            dist = await self._logprob_distribution(conv, fmt, [str(c) for c in choices],
                                                    self._params(None, None, None), 0)
        except VLMRequestError as exc:
            if exc.status not in (400, 422):
                raise
            self._warn_once("logprobs", "%s (%s) refused logprobs (%s)", self.url, self.cfg.model, exc)
            dist = None
        self._logprobs_supported = dist is not None
        return self._logprobs_supported

    async def list_models(self) -> list[str]:
        """The model names the endpoint serves (GET /models), with the same retries as chat requests."""

        async def once() -> list[str]:
            page = await self._client.models.list()
            return [m.id for m in page.data]

        try:
            return await self._retry.call(once)
        except RetriesExhausted as exc:
            raise self._gave_up(exc, f"{self.url}/models") from exc.last
        except openai.APIStatusError as exc:
            raise VLMRequestError(self._scrub(f"{self.url}/models refused the request (HTTP {exc.status_code}): "
                                              f"{server_message(exc)}"), status=exc.status_code) from None

    # ------------------------------------------------------------------ building requests

    def _params(self, temperature: float | None, max_tokens: int | None, seed: int | None) -> dict[str, Any]:
        return {
            "temperature": self.cfg.temperature if temperature is None else temperature,
            "max_tokens": max_tokens or self.cfg.max_tokens,
            "seed": self.cfg.seed if seed is None else seed,
        }

    async def _conversation(self, prompt: str, images: Sequence[ImageInput], system: str | None,
                            fmt: AnswerFormat) -> _Conversation:
        if isinstance(images, ImageInput):  # one image given bare: a str or bytes would iterate as pieces
            images = [images]
        encoded = await asyncio.gather(*(
            asyncio.to_thread(encode_image, img, fmt=self._image_format, max_pixels=self.cfg.max_image_pixels,
                              name=None if isinstance(img, str | Path) else f"images[{i}]")
            for i, img in enumerate(images)
        ))
        text = f"{prompt}\n\n{fmt.instructions}" if fmt.instructions else prompt
        wire: list[dict[str, Any]] = []
        key: list[dict[str, Any]] = []
        if system:
            wire.append({"role": "system", "content": system})
            key.append({"role": "system", "content": system})
        wire.append({"role": "user", "content": [
            *({"type": "image_url", "image_url": {"url": e.url}} for e in encoded), {"type": "text", "text": text}]})
        key.append({"role": "user", "content": [
            *({"type": "image", "sha256": e.hash} for e in encoded), {"type": "text", "text": text}]})
        return _Conversation(wire, key)

    def _body(self, conv: _Conversation, fmt: AnswerFormat, *, n: int, temperature: float, max_tokens: int,
              seed: int | None, top_logprobs: int | None) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.cfg.model, "messages": conv.wire, "temperature": temperature}
        if "max_completion_tokens" not in self.cfg.extra:
            body["max_tokens"] = max_tokens
        if n > 1:
            body["n"] = n
        if seed is not None:
            body["seed"] = seed
        if top_logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = top_logprobs
        if "response_format" in fmt.fields:
            body["response_format"] = fmt.fields["response_format"]
        extra_body = merge(self.cfg.extra, fmt.fields.get("extra_body", {}))
        if extra_body:
            body["extra_body"] = extra_body
        return body

    # ------------------------------------------------------------------ sampling, parsing, re-asking

    async def _samples(self, conv: _Conversation, fmt: AnswerFormat, *, n: int, temperature: float,
                       max_tokens: int, seed: int | None, top_logprobs: int | None = None) -> list[_Reply]:
        """n replies: one request with n=K, or K requests where the server refuses or ignores n>1."""
        params = {"temperature": temperature, "max_tokens": max_tokens, "top_logprobs": top_logprobs}

        async def singles(first: int, count: int) -> list[_Reply]:
            seeds = [None if seed is None else seed + i for i in range(first, first + count)]
            batches = await asyncio.gather(*(self._request(conv, fmt, n=1, seed=s, **params) for s in seeds))
            return [b[0] for b in batches]

        if n == 1:
            return await self._request(conv, fmt, n=1, seed=seed, **params)
        if temperature == 0:  # vLLM refuses n>1 with greedy sampling (400): not a reason to drop n=K for good
            return await singles(0, n)
        if self._n_supported is False:
            self.stats.n_fallbacks += 1
            return await singles(0, n)
        try:
            replies = await self._request(conv, fmt, n=n, seed=seed, **params)
        except VLMRequestError as exc:
            if exc.status not in (400, 422):
                raise
            first = await self._request(conv, fmt, n=1, seed=seed, **params)  # the real error raises here
            self._n_supported = False
            self.stats.n_fallbacks += 1
            log.info("%s refused n=%d (%s); sending single requests from now on", self.url, n, exc)
            return first + await singles(1, n - 1)
        if len(replies) < n:
            self._n_supported = False
            self.stats.n_fallbacks += 1
            log.info("%s returned %d of n=%d choices; sending single requests from now on", self.url,
                     len(replies), n)
            return replies + await singles(len(replies), n - len(replies))
        self._n_supported = True
        return replies[:n]

    async def _read(self, conv: _Conversation, fmt: AnswerFormat, reply: _Reply, *, temperature: float,
                    max_tokens: int, seed: int | None, top_logprobs: int | None = None) -> tuple[Any, _Reply]:
        """Parse a reply; if it is invalid or cut off, ask again ONCE with the problem, then give up typed."""
        problem = self._problem(fmt, reply)
        if problem is None:
            return fmt.parse(reply.text), reply
        self.stats.reasks += 1
        truncated = reply.finish_reason == "length"
        if truncated:
            note = ("Your previous answer was cut off at the length limit before it was complete. Reply again "
                    "with the complete answer, as briefly as the format allows.")
        else:
            note = f"Your previous answer could not be used: {problem}. Reply again with only a valid answer."
        if fmt.instructions:
            note = f"{note}\n\n{fmt.instructions}"
        again = conv.followed_by(reply.text, note)
        [second] = await self._request(again, fmt, n=1, temperature=temperature,
                                       max_tokens=max_tokens * 2 if truncated else max_tokens,
                                       seed=seed, top_logprobs=top_logprobs)
        second_problem = self._problem(fmt, second)
        if second_problem is None:
            return fmt.parse(second.text), second
        self.stats.answer_failures += 1
        error = VLMAnswerError(
            f"{self.cfg.model} at {self.url}: unusable answer after one re-ask: {second_problem} "
            f"(reply: {second.text[:200]!r})",
            raw=second.text, problem=second_problem)
        return error, second

    @staticmethod
    def _problem(fmt: AnswerFormat, reply: _Reply) -> str | None:
        if reply.finish_reason == "length":
            return "the reply was cut off at max_tokens (finish_reason 'length')"
        if not reply.text.strip():
            return "the reply is empty"
        try:
            fmt.parse(reply.text)
        except AnswerInvalid as exc:
            return exc.problem
        return None

    # ------------------------------------------------------------------ one HTTP request (retried, cached)

    async def _request(self, conv: _Conversation, fmt: AnswerFormat, *, n: int, temperature: float,
                       max_tokens: int, seed: int | None, top_logprobs: int | None) -> list[_Reply]:
        body = self._body(conv, fmt, n=n, temperature=temperature, max_tokens=max_tokens, seed=seed,
                          top_logprobs=top_logprobs)
        cache_key = None
        if self._cache is not None and (temperature == 0 or seed is not None):
            # The endpoint is part of the key: two servers may serve different weights under one model name.
            # Its secret query values are masked: a rotated `?key=` keeps the cache (and no key reaches it).
            cache_key = VLMCache.key(dict(body, messages=conv.key, endpoint=self.cfg.safe_url.rstrip("/")))
            hit = self._cache.get(cache_key)
            if hit is not None:
                self.stats.cache_hits += 1
                return [_Reply.from_json(r) for r in hit["replies"]]

        semaphore = shared_semaphore(self.cfg.base_url, self.cfg.model, self.cfg.max_concurrency)

        async def once() -> tuple[ChatCompletion, list[_Reply]]:
            async with semaphore:
                completion = await self._client.chat.completions.create(**body)
            if not isinstance(completion, ChatCompletion) or not completion.choices:
                raise MalformedReply(f"not a chat completion: {str(completion)[:120]!r}")
            try:  # the SDK does not validate shapes: a choice without a message is only seen here
                choices = sorted(completion.choices, key=lambda c: c.index or 0)
                return completion, [_Reply.from_choice(c) for c in choices]
            except (AttributeError, TypeError, ValueError, KeyError) as exc:
                raise MalformedReply(f"unreadable choices ({type(exc).__name__}: {exc}) in "
                                     f"{str(completion.choices)[:120]!r}") from None

        self.stats.requests += 1
        started = time.perf_counter()
        try:
            completion, replies = await self._retry.call(once, on_attempt=self._count_attempt,
                                                         on_retry=self._note_retry)
        except RetriesExhausted as exc:
            self.stats.failures += 1
            raise self._gave_up(exc, f"{self.url}/chat/completions ({self.cfg.model})") from exc.last
        except openai.APIStatusError as exc:
            self.stats.failures += 1
            raise await self._refusal(exc) from None
        except openai.OpenAIError as exc:
            self.stats.failures += 1
            raise VLMRequestError(self._scrub(f"{self.url}/chat/completions: {type(exc).__name__}: {exc}"),
                                  status=0) from None
        self.stats.latencies.append(time.perf_counter() - started)
        if completion.usage is not None:
            self.stats.prompt_tokens += completion.usage.prompt_tokens or 0
            self.stats.completion_tokens += completion.usage.completion_tokens or 0
        if cache_key is not None:
            self._cache.put(cache_key, {"replies": [r.to_json() for r in replies]})
        return replies

    def _count_attempt(self) -> None:
        self.stats.attempts += 1

    def _note_retry(self, exc: BaseException, delay: float) -> None:
        self.stats.retries += 1
        log.info("%s: %s; retrying in %.2fs", self.url, self._scrub(describe_fault(exc, self.cfg.timeout)), delay)

    async def _refusal(self, exc: openai.APIStatusError) -> VLMRequestError:
        """A non-retryable HTTP error as a clear message (for 404: which models the server does serve)."""
        status, detail = exc.status_code, server_message(exc)
        where = f"{self.url}/chat/completions"
        if status == 401:
            text = (f"{where}: authentication failed (HTTP 401): {detail}; check the key in env var "
                    f"{self.cfg.api_key_env}")
        elif status == 403:
            text = f"{where}: permission denied (HTTP 403) for model {self.cfg.model}: {detail}"
        elif status == 404:
            try:
                served = await self.list_models()
            except VLMError as list_exc:
                text = (f"{where} not found (HTTP 404): {detail}; listing models failed too ({list_exc}): "
                        "is base_url right (it usually ends in /v1)?")
            else:
                if self.cfg.model in served:
                    text = f"{where}: HTTP 404 for model {self.cfg.model}: {detail}"
                else:
                    text = (f"model {self.cfg.model} is not served at {self.url}; it serves: "
                            f"{', '.join(served) or '(nothing)'}")
        else:
            text = f"{where} refused the request for model {self.cfg.model} (HTTP {status}): {detail}"
        return VLMRequestError(self._scrub(text), status=status)

    def _gave_up(self, exc: RetriesExhausted, where: str) -> VLMTransportError:
        return VLMTransportError(
            self._scrub(f"{where}: gave up after {exc.attempts} attempt(s): "
                        f"{describe_fault(exc.last, self.cfg.timeout)}"), attempts=exc.attempts)

    def _scrub(self, text: str) -> str:
        """Server messages can echo the API key (e.g. on a 401) or a key from the URL's query: never let one
        into an error or a log."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return mask_secrets(text)

    def _warn_once(self, topic: str, message: str, *args: Any) -> None:
        if topic not in self._warned:
            self._warned.add(topic)
            log.warning(message, *args)
