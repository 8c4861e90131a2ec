"""The endpoint part of the config: one base for VLM and image endpoints, the `dialect` key (old key `kind`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from portraitcraft.config import (
    DiffusionConfig,
    EditorConfig,
    EndpointConfig,
    GeneratorConfig,
    JudgeConfig,
    RemoteEndpoint,
    load_config,
)


def test_vlm_and_image_endpoints_share_one_base(monkeypatch: pytest.MonkeyPatch) -> None:
    shared = set(RemoteEndpoint.model_fields)
    assert {"base_url", "api_key_env", "timeout", "connect_timeout", "max_retries", "retry_backoff"} <= shared
    for cls in (EndpointConfig, JudgeConfig, DiffusionConfig, GeneratorConfig, EditorConfig):
        assert issubclass(cls, RemoteEndpoint) and shared <= set(cls.model_fields)
        assert "api_key" not in cls.__dict__  # one implementation, inherited
    monkeypatch.setenv("SHARED_KEY", "sk-1")
    assert EndpointConfig(api_key_env="SHARED_KEY").api_key() == GeneratorConfig(api_key_env="SHARED_KEY").api_key()
    # each keeps its own defaults (image generation is slower than a chat reply)
    assert GeneratorConfig().timeout == 300.0 and EndpointConfig().timeout == 120.0
    assert GeneratorConfig().retry_backoff == 1.0 and EndpointConfig().retry_backoff == 0.5


def test_dialect_is_the_key_and_kind_is_still_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = tmp_path / "old.toml"
    old.write_text('[judge]\nkind = "openai"\n[critic]\ndialect = "plain"\n')
    cfg = load_config(old)
    assert (cfg.judge.dialect, cfg.critic.dialect, cfg.assessor.dialect) == ("openai", "plain", "vllm")
    assert cfg.judge.kind == "openai"  # the old attribute reads the same value
    dumped = cfg.model_dump()["judge"]
    assert dumped["dialect"] == "openai" and "kind" not in dumped
    assert load_config(overrides={"miner": {"kind": "plain"}}).miner.dialect == "plain"
    monkeypatch.setenv("PORTRAITCRAFT_JUDGE__KIND", "openai")
    assert load_config().judge.dialect == "openai"
    assert EndpointConfig.model_validate(EndpointConfig(kind="plain").model_dump()).dialect == "plain"
    assert EndpointConfig(**{**EndpointConfig().model_dump(), "kind": "openai"}).dialect == "openai"  # an override
