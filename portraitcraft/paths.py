"""The one cache root of portraitcraft: where the VLM reply cache, the tiny test models and other caches live.

Chosen, first match wins:
1. the config key `run.cache_dir` (TOML, `PORTRAITCRAFT_RUN__CACHE_DIR` or `--set run.cache_dir=...`),
2. the environment variable `PORTRAITCRAFT_CACHE_DIR`,
3. the platform's user cache folder + `portraitcraft`: `$XDG_CACHE_HOME/portraitcraft` or
   `~/.cache/portraitcraft` on Linux, `~/Library/Caches/portraitcraft` on macOS,
   `%LOCALAPPDATA%\\portraitcraft\\Cache` on Windows.

Never the current directory unless asked for. `portraitcraft doctor` shows the root in use. Sub-folders:
`vlm/` (model-call replies, tools/vlm_cache.py), `tiny-models/` (tools/diffusion/tiny.py).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENV_CACHE_DIR = "PORTRAITCRAFT_CACHE_DIR"
APP = "portraitcraft"


def platform_cache_dir() -> Path:
    """The platform's per-user cache folder for portraitcraft (XDG on Linux and other Unixes)."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / APP / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / APP
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"  # XDG: relative = unset
    return base / APP


def cache_root(configured: str | Path | None = None) -> Path:
    """The cache root: `configured` (the `run.cache_dir` key), else `$PORTRAITCRAFT_CACHE_DIR`, else the
    platform cache folder. `~` is expanded; the folder is not created here.

    Args:
        configured (str | Path, optional): the config's `run.cache_dir` (None or "" = not set).

    Example:
        >>> str(cache_root("/data/pc-cache")), platform_cache_dir().name
        ('/data/pc-cache', 'portraitcraft')
    """
    chosen = str(configured) if configured else os.environ.get(ENV_CACHE_DIR, "")
    return Path(chosen).expanduser() if chosen else platform_cache_dir()


def cache_source(configured: str | Path | None = None) -> str:
    """Which rule chose the cache root (for `doctor`)."""
    if configured:
        return "run.cache_dir"
    return f"${ENV_CACHE_DIR}" if os.environ.get(ENV_CACHE_DIR) else "platform default"
