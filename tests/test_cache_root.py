"""One documented cache root (portraitcraft/paths.py): config key > $PORTRAITCRAFT_CACHE_DIR > platform folder;
used by the VLM cache of `eval track2` and the tiny models, shown by `doctor`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from fake_vlm import API_KEY_ENV, FakeVLMServer
from PIL import Image
from typer.testing import CliRunner

from portraitcraft.cli import app
from portraitcraft.paths import ENV_CACHE_DIR, cache_root, platform_cache_dir


def test_precedence_config_key_then_env_then_platform(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ENV_CACHE_DIR, str(tmp_path / "env"))
    assert cache_root(str(tmp_path / "key")) == tmp_path / "key"
    assert cache_root(None) == cache_root("") == tmp_path / "env"
    monkeypatch.delenv(ENV_CACHE_DIR)
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == platform_cache_dir() == tmp_path / "xdg" / "portraitcraft"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # the XDG spec: a relative path is invalid
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "portraitcraft"
    assert cache_root("~/pc") == tmp_path / "home" / "pc"


def test_eval_track2_caches_under_the_cache_root_not_the_working_directory(
    fake_vlm: FakeVLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before: the VLM cache went to ./.cache/portraitcraft in whatever folder the command ran from."""
    work = tmp_path / "work"
    (work / "images").mkdir(parents=True)
    Image.new("RGB", (16, 16), "red").save(work / "images" / "a.png")
    (work / "items.json").write_text(json.dumps([{"image_path": "a.png", "content_description": "a person",
                                                  "composition_analysis": "centred"}]))
    root = tmp_path / "root"
    monkeypatch.setenv(ENV_CACHE_DIR, str(root))
    monkeypatch.chdir(work)
    fake_vlm.script.default({"content_reason": "ok", "content_score": 80, "composition_reason": "ok",
                             "composition_score": 70})
    res = CliRunner().invoke(app, ["eval", "track2", "items.json", "--images", "images", "--json", "--no-progress",
                                   "--set", f"judge.base_url={fake_vlm.base_url}",
                                   "--set", f"judge.model={fake_vlm.model}",
                                   "--set", f"judge.api_key_env={API_KEY_ENV}",
                                   "--set", "judge.mode=sampled", "--set", "judge.samples=1"])
    assert res.exit_code == 0, res.output
    assert (root / "vlm" / "vlm_cache.sqlite3").is_file()
    assert sorted(p.name for p in work.iterdir()) == ["images", "items.json"]  # nothing written here


def test_tiny_models_default_to_the_cache_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from portraitcraft.tools.diffusion.tiny import ENV_ROOT, default_root

    monkeypatch.setenv(ENV_CACHE_DIR, str(tmp_path / "root"))
    monkeypatch.delenv(ENV_ROOT, raising=False)
    assert default_root() == tmp_path / "root" / "tiny-models"
    monkeypatch.setenv(ENV_ROOT, str(tmp_path / "explicit"))
    assert default_root() == tmp_path / "explicit"


def test_doctor_shows_the_cache_root_and_where_it_came_from(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ENV_CACHE_DIR, str(tmp_path / "root"))
    res = CliRunner().invoke(app, ["doctor", "--json", "--no-endpoints"])
    checks = {c["name"]: c for c in json.loads(res.stdout)["checks"]}
    assert checks["cache"]["status"] == "ok"
    assert checks["cache"]["detail"].startswith(f"{tmp_path / 'root'} (from ${ENV_CACHE_DIR})")
    (tmp_path / "a_file").write_text("not a folder")
    res = CliRunner().invoke(app, ["doctor", "--json", "--no-endpoints", "--set",
                                   f"run.cache_dir={tmp_path / 'a_file' / 'cache'}"])
    cache = {c["name"]: c for c in json.loads(res.stdout)["checks"]}["cache"]
    assert cache["status"] == "warn" and "(from run.cache_dir)" in cache["detail"] and "writable" in cache["hint"]
