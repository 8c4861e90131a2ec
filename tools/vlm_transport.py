"""The shared per-endpoint concurrency limit of VLM clients. Which faults are retried, how long to wait and
the client's timeouts are tools/retry.py (shared with the remote image backend).
"""

from __future__ import annotations

import asyncio
import weakref

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
