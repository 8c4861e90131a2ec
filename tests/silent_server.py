"""A TCP server on 127.0.0.1 that accepts connections and never answers: the hung endpoint of the timeout
tests and benchmarks/eval_track2_hung.py. `max_open` is the most connections it held at once."""

from __future__ import annotations

import selectors
import socket
import threading


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never answers; counts how many are open at once."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.setblocking(False)
        self.port = self._sock.getsockname()[1]
        self.accepted = 0
        self.open = 0
        self.max_open = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True, name="silent-server")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _serve(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._sock, selectors.EVENT_READ)
        while not self._stop.is_set():
            for key, _ in sel.select(timeout=0.05):
                if key.fileobj is self._sock:
                    conn, _ = self._sock.accept()
                    conn.setblocking(False)
                    sel.register(conn, selectors.EVENT_READ)
                    self.accepted += 1
                    self.open += 1
                    self.max_open = max(self.max_open, self.open)
                    continue
                conn = key.fileobj
                try:
                    data = conn.recv(65536)  # type: ignore[union-attr]
                except OSError:
                    data = b""
                if not data:  # the client gave up and closed: never a reply from here
                    sel.unregister(conn)
                    conn.close()  # type: ignore[union-attr]
                    self.open -= 1
        for key in list(sel.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        sel.close()

    def __enter__(self) -> SilentServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
