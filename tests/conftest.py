"""Shared pytest fixtures. Area fixtures live in their own modules and are re-exported here."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_vlm import fake_vlm, fake_vlm_server  # noqa: E402, F401  (the scripted VLM server fixtures)


@pytest.fixture()
def examples_dir() -> Path:
    return EXAMPLES


@pytest.fixture(autouse=True)
def _no_real_endpoints(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never reach a real hub or a real API: offline hub, throwaway caches, no stray keys."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    for key in list(__import__("os").environ):
        if key.startswith("PORTRAITCRAFT_"):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PORTRAITCRAFT_CACHE_DIR", str(tmp_path / "portraitcraft-cache"))  # never ~/.cache
