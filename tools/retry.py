"""The ONE transient-fault policy for every HTTP model endpoint (VLM chat completions, image APIs).

What is worth retrying (`is_transient`): timeouts, cut connections, malformed HTTP 200 bodies
(`MalformedReply`, broken JSON) and 408/409/425/429/5xx answers. Anything else (400/401/403/404/422...)
propagates at once. How long to wait (`RetryPolicy.delay`): the server's `retry-after-ms` / `Retry-After`
(seconds or an HTTP date, capped), else exponential backoff with jitter (`base * 2**retry + U(0, base)`, capped).
The same policy object drives async calls (`call`) and sync calls (`call_sync`), so the VLM client and the
remote image backend cannot drift apart. `client_settings` builds their openai clients the way the policy
needs: the SDK's own retries off, a connect timeout apart from the read timeout, URL query secrets sent as
default query parameters.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import openai
from tenacity import AsyncRetrying, RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from portraitcraft.config import RemoteEndpoint
from portraitcraft.urls import split_query

T = TypeVar("T")
RETRYABLE_STATUS = frozenset({408, 409, 425, 429})
Sleep = Callable[[float], Awaitable[None]]
SyncSleep = Callable[[float], None]


class MalformedReply(Exception):
    """An HTTP 200 whose body is not the expected answer (broken JSON, no choices, no image)."""


class RetriesExhausted(Exception):
    """A transient fault outlasted every retry; `last` is the final fault (also the `__cause__`).

    Attributes:
        last (BaseException): the fault of the last attempt.
        attempts (int): attempts made (max_retries + 1).
    """

    def __init__(self, last: BaseException, attempts: int) -> None:
        super().__init__(f"gave up after {attempts} attempt(s): {last}")
        self.last = last
        self.attempts = attempts


def status_of(exc: BaseException) -> int | None:
    """The HTTP status of an openai status error, else None."""
    return exc.status_code if isinstance(exc, openai.APIStatusError) else None


def is_transient(exc: BaseException) -> bool:
    """True for faults worth retrying: timeouts, connection errors, malformed 200s, 408/409/425/429/5xx.

    Example:
        >>> is_transient(MalformedReply("no choices")), is_transient(ValueError("bad argument"))
        (True, False)
    """
    if isinstance(exc, openai.APIConnectionError | MalformedReply | json.JSONDecodeError
                  | openai.APIResponseValidationError):  # APITimeoutError is an APIConnectionError
        return True
    status = status_of(exc)
    return status is not None and (status in RETRYABLE_STATUS or status >= 500)


def parse_retry_after(value: str | None, *, milliseconds: str | None = None, now: float | None = None) -> float | None:
    """Seconds to wait from a `retry-after-ms` value (preferred) or a `Retry-After` value (seconds or an
    HTTP date); None when absent or unreadable. Never negative.

    Example:
        >>> parse_retry_after("7"), parse_retry_after(None, milliseconds="1500"), parse_retry_after("soon")
        (7.0, 1.5, None)
        >>> parse_retry_after("Thu, 01 Jan 2026 00:00:30 GMT", now=1767225600.0)
        30.0
    """
    if milliseconds is not None:
        try:
            return max(0.0, float(milliseconds) / 1000)
        except ValueError:
            pass
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def retry_after_seconds(exc: BaseException) -> float | None:
    """The wait a failed response asks for (`retry-after-ms` or `Retry-After`), or None."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    return parse_retry_after(headers.get("retry-after"), milliseconds=headers.get("retry-after-ms"))


def server_message(exc: openai.APIStatusError) -> str:
    """The server's own error text, without the SDK's 'Error code: ...' wrapping."""
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:500]
        if isinstance(inner, str):
            return inner[:500]
    return str(exc.message)[:500]


def describe_fault(exc: BaseException, timeout: float | None = None) -> str:
    """One line for a transient fault, for the final error message."""
    if isinstance(exc, openai.APITimeoutError):
        return f"timed out after {timeout:g}s" if timeout else "timed out"
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc.__context__
        return f"connection failed ({type(cause).__name__ if cause else 'no detail'}: {cause or exc})"
    if isinstance(exc, MalformedReply | json.JSONDecodeError | openai.APIResponseValidationError):
        return f"malformed reply ({exc})"
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}: {server_message(exc)}"
    return f"{type(exc).__name__}: {exc}"


class RetryPolicy:
    """Retry a call on transient faults, async (`call`) or sync (`call_sync`), with one wait rule.

    Args:
        max_retries (int): retries after the first attempt (attempts <= max_retries + 1).
        base_delay (float, optional, defaults to 0.5): first backoff in seconds; doubles per retry, plus a
            uniform jitter of up to `base_delay`. 0 retries at once.
        max_delay (float, optional, defaults to 30): cap for the exponential backoff.
        retry_after_cap (float, optional, defaults to 60): cap for a server's Retry-After.
        sleep (callable, optional): the async sleep (tests inject a recorder).
        sync_sleep (callable, optional): the blocking sleep of `call_sync`.

    Example:
        >>> policy = RetryPolicy(max_retries=3, base_delay=0.0)
        >>> tries = []
        >>> def flaky() -> str:
        ...     tries.append(1)
        ...     if len(tries) < 3:
        ...         raise MalformedReply("half a body")
        ...     return "ok"
        >>> policy.call_sync(flaky), len(tries)
        ('ok', 3)
    """

    def __init__(self, *, max_retries: int, base_delay: float = 0.5, max_delay: float = 30.0,
                 retry_after_cap: float = 60.0, sleep: Sleep = asyncio.sleep,
                 sync_sleep: SyncSleep = time.sleep) -> None:
        if max_retries < 0 or base_delay < 0 or max_delay < 0 or retry_after_cap < 0:
            raise ValueError("retry settings must not be negative")
        self.max_retries = max_retries
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.retry_after_cap = retry_after_cap
        self._sleep = sleep
        self._sync_sleep = sync_sleep

    def delay(self, retry: int, exc: BaseException | None) -> float:
        """Seconds to wait before retry number `retry` (0-based) after the fault `exc`."""
        requested = retry_after_seconds(exc) if exc is not None else None
        if requested is not None:
            return min(requested, self.retry_after_cap)
        if self.base_delay == 0:
            return 0.0
        return min(self.base_delay * 2**retry + random.uniform(0, self.base_delay), self.max_delay)

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        return self.delay(state.attempt_number - 1, exc)

    def _settings(self, on_retry: Callable[[BaseException, float], None] | None) -> dict[str, object]:
        def before_sleep(state: RetryCallState) -> None:
            if on_retry and state.outcome is not None and state.next_action is not None:
                on_retry(state.outcome.exception(), state.next_action.sleep)

        return {"stop": stop_after_attempt(self.max_retries + 1), "wait": self._wait,
                "retry": retry_if_exception(is_transient), "reraise": True, "before_sleep": before_sleep}

    async def call(self, fn: Callable[[], Awaitable[T]], *, on_attempt: Callable[[], None] | None = None,
                   on_retry: Callable[[BaseException, float], None] | None = None) -> T:
        """Await `fn()` until it succeeds, a non-transient error propagates, or retries run out.

        Args:
            fn (callable): makes one attempt (a fresh awaitable per call).
            on_attempt (callable, optional): called before every attempt (accounting).
            on_retry (callable, optional): `on_retry(fault, delay)` before each wait (logging).

        Raises:
            RetriesExhausted: the last transient fault after max_retries + 1 attempts.
        """
        attempts = 0

        async def attempt() -> T:
            nonlocal attempts
            attempts += 1
            if on_attempt:
                on_attempt()
            return await fn()

        retrying = AsyncRetrying(sleep=self._sleep, **self._settings(on_retry))  # type: ignore[arg-type]
        try:
            return await retrying(attempt)
        except Exception as exc:
            if not is_transient(exc):
                raise
            raise RetriesExhausted(exc, attempts) from exc

    def call_sync(self, fn: Callable[[], T], *, on_attempt: Callable[[], None] | None = None,
                  on_retry: Callable[[BaseException, float], None] | None = None) -> T:
        """`call` for a blocking `fn` (same faults, same waits)."""
        attempts = 0

        def attempt() -> T:
            nonlocal attempts
            attempts += 1
            if on_attempt:
                on_attempt()
            return fn()

        retrying = Retrying(sleep=self._sync_sleep, **self._settings(on_retry))  # type: ignore[arg-type]
        try:
            return retrying(attempt)
        except Exception as exc:
            if not is_transient(exc):
                raise
            raise RetriesExhausted(exc, attempts) from exc


def client_settings(cfg: RemoteEndpoint) -> dict[str, Any]:
    """Keyword arguments for `openai.OpenAI` / `openai.AsyncOpenAI` on this endpoint.

    The base URL's query (`?key=...` for APIs that take the key there) goes to `default_query`, so the SDK
    builds `.../v1/chat/completions?key=...`; the read timeout (`timeout`) and the connect timeout
    (`connect_timeout`) are separate; the SDK's own retries are off (tools/retry.py is the one retry layer).

    Example:
        >>> from portraitcraft.config import EndpointConfig
        >>> s = client_settings(EndpointConfig(base_url="https://host/v1?key=abc", timeout=30, connect_timeout=2))
        >>> s["base_url"], s["default_query"], s["timeout"].connect, s["timeout"].read, s["max_retries"]
        ('https://host/v1', {'key': 'abc'}, 2.0, 30.0, 0)
    """
    base_url, query = split_query(cfg.base_url)
    return {
        "base_url": base_url,
        "api_key": cfg.api_key(),
        "default_query": query or None,
        "timeout": openai.Timeout(cfg.timeout, connect=min(cfg.connect_timeout, cfg.timeout)),
        "max_retries": 0,
    }
