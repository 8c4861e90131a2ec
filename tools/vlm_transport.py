"""The ONE retry layer for VLM HTTP traffic, and the shared per-endpoint concurrency limit.

Transient faults (timeouts, cut connections, malformed replies, 408/409/429/5xx) are retried with
exponential backoff and jitter, honouring Retry-After (capped), up to `max_retries` retries. Anything else
(400/401/403/404/422...) propagates at once. The openai SDK's own retries are switched off by the client.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import TypeVar

import openai
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from tools.vlm_errors import VLMTransportError

T = TypeVar("T")
RETRYABLE_STATUS = frozenset({408, 409, 425, 429})
Sleep = Callable[[float], Awaitable[None]]


class MalformedReply(Exception):
    """An HTTP 200 whose body is not a chat completion (broken JSON, wrong content type)."""


def status_of(exc: BaseException) -> int | None:
    return exc.status_code if isinstance(exc, openai.APIStatusError) else None


def is_transient(exc: BaseException) -> bool:
    """True for faults worth retrying: timeouts, connection errors, malformed bodies, 408/409/429/5xx."""
    if isinstance(exc, openai.APIConnectionError | MalformedReply | json.JSONDecodeError
                  | openai.APIResponseValidationError):
        return True
    status = status_of(exc)
    return status is not None and (status in RETRYABLE_STATUS or status >= 500)


def retry_after_seconds(exc: BaseException) -> float | None:
    """The server's requested wait from `retry-after-ms` or `Retry-After` (seconds or an HTTP date)."""
    response = getattr(exc, "response", None)
    if response is None:
        return None
    headers = response.headers
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
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
    return max(0.0, when.timestamp() - time.time())


def describe_fault(exc: BaseException, timeout: float) -> str:
    """One line for a transient fault, for the final error message."""
    if isinstance(exc, openai.APITimeoutError):
        return f"timed out after {timeout:g}s"
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc.__context__
        return f"connection failed ({type(cause).__name__ if cause else 'no detail'}: {cause or exc})"
    if isinstance(exc, MalformedReply | json.JSONDecodeError | openai.APIResponseValidationError):
        return f"malformed reply ({exc})"
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}: {server_message(exc)}"
    return f"{type(exc).__name__}: {exc}"


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


class Backoff:
    """Retry an async HTTP call on transient faults.

    Args:
        max_retries (int): retries after the first attempt (attempts <= max_retries + 1).
        timeout (float): the per-attempt timeout, only for messages.
        base_delay (float, optional, defaults to 0.5): first backoff in seconds; doubles per retry, + jitter.
        max_delay (float, optional, defaults to 30): cap for exponential backoff.
        retry_after_cap (float, optional, defaults to 60): cap for a server's Retry-After.
        sleep (callable, optional): the async sleep (tests inject a recorder).

    Example:
        >>> backoff = Backoff(max_retries=3, timeout=10, base_delay=0.01)
        >>> reply = await backoff.call(lambda: client.chat.completions.create(...), where=url)  # doctest: +SKIP
    """

    def __init__(self, *, max_retries: int, timeout: float, base_delay: float = 0.5, max_delay: float = 30.0,
                 retry_after_cap: float = 60.0, sleep: Sleep = asyncio.sleep) -> None:
        self.max_retries = max_retries
        self.timeout = timeout
        self.retry_after_cap = retry_after_cap
        self._sleep = sleep
        self._exponential = wait_exponential_jitter(multiplier=base_delay, max=max_delay, exp_base=2,
                                                    jitter=base_delay)

    def wait_for(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        requested = retry_after_seconds(exc) if exc is not None else None
        if requested is not None:
            return min(requested, self.retry_after_cap)
        return float(self._exponential(state))

    async def call(self, fn: Callable[[], Awaitable[T]], *, where: str,
                   on_attempt: Callable[[], None] | None = None,
                   on_retry: Callable[[BaseException, float], None] | None = None) -> T:
        """Run `fn` until it succeeds, a non-transient error propagates, or retries run out.

        Raises:
            VLMTransportError: the last transient fault after max_retries + 1 attempts.
        """
        attempts = 0

        async def attempt() -> T:
            nonlocal attempts
            attempts += 1
            if on_attempt:
                on_attempt()
            return await fn()

        def before_sleep(state: RetryCallState) -> None:
            if on_retry and state.outcome is not None and state.next_action is not None:
                on_retry(state.outcome.exception(), state.next_action.sleep)

        retrying = AsyncRetrying(stop=stop_after_attempt(self.max_retries + 1), wait=self.wait_for,
                                 retry=retry_if_exception(is_transient), sleep=self._sleep, reraise=True,
                                 before_sleep=before_sleep)
        try:
            return await retrying(attempt)
        except Exception as exc:
            if not is_transient(exc):
                raise
            raise VLMTransportError(
                f"{where}: gave up after {attempts} attempt(s): {describe_fault(exc, self.timeout)}",
                attempts=attempts,
            ) from exc


_SEMAPHORES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str], asyncio.Semaphore]] = (
    weakref.WeakKeyDictionary()
)


def shared_semaphore(base_url: str, model: str, limit: int) -> asyncio.Semaphore:
    """The concurrency limit shared by every client of (base_url, model) on the running event loop.

    The first client to ask sets the limit; asyncio semaphores belong to one loop, hence one per loop.
    """
    loop = asyncio.get_running_loop()
    per_loop = _SEMAPHORES.setdefault(loop, {})
    key = (base_url.rstrip("/"), model)
    if key not in per_loop:
        per_loop[key] = asyncio.Semaphore(limit)
    return per_loop[key]
