"""On-disk cache of chat-completion replies, one small SQLite file under the run's cache folder.

Keys are sha256 digests of the request as the model sees it, with images replaced by their pixel hashes
(`VLMCache.key`). Values are the server's JSON reply. Request headers (and so API keys) are never part of
either. Safe to share between processes (SQLite WAL, busy timeout).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from portraitcraft.tools.vlm_errors import VLMError

CACHE_FILE = "vlm_cache.sqlite3"
_FORMAT = 1  # bump when the stored value format changes


class VLMCache:
    """A key -> JSON-reply store.

    Args:
        directory (str | Path): folder for the SQLite file (created if missing).

    Example:
        >>> cache = VLMCache(tmp_path)                                  # doctest: +SKIP
        >>> key = VLMCache.key({"model": "m", "messages": [], "temperature": 0})
        >>> cache.put(key, {"choices": []}); cache.get(key)             # doctest: +SKIP
        {'choices': []}
    """

    def __init__(self, directory: str | Path) -> None:
        self.path = Path(directory) / CACHE_FILE
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL)"
            )
        except (OSError, sqlite3.Error) as exc:
            raise VLMError(f"VLM reply cache {self.path}: cannot be opened ({type(exc).__name__}: {exc}); "
                           "choose another cache folder or delete the file") from None

    @staticmethod
    def key(request: Mapping[str, Any]) -> str:
        """A stable digest of a request view (model, messages with image hashes, schema, params, seed)."""
        canonical = json.dumps({"format": _FORMAT, "request": request}, sort_keys=True, ensure_ascii=False,
                               separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM replies WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, value: Mapping[str, Any]) -> None:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO replies (key, value, created) VALUES (?, ?, ?)",
                             (key, text, time.time()))

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM replies").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
