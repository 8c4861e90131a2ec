"""A FastAPI app served by uvicorn on 127.0.0.1 in a background thread: the base of the test fakes.

Port 0 lets the OS pick a free port. (Handing uvicorn a pre-bound socket instead leaves TCP_NODELAY off on
its connections: every reply then waits ~40 ms for a delayed ACK.)
"""

from __future__ import annotations

import threading
import time
from typing import Any, Self

import uvicorn


class LocalServer:
    """Subclasses set `self.app` (an ASGI app) before `start()`; `with Server() as s:` starts and stops it."""

    name = "local-server"
    app: Any

    def __init__(self) -> None:
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> Self:
        config = uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="critical", access_log=False,
                                lifespan="off", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True, name=self.name)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"{self.name} did not start")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
