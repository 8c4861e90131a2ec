from __future__ import annotations

from pathlib import Path

import pytest

from portraitcraft.config import ConfigError, load_config, mask_secrets, parse_override


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.toml"
    p.write_text(text)
    return p


def test_defaults_and_partial_file(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, '[judge]\nmodel = "gemini-3.1-pro"\n'))
    assert cfg.judge.model == "gemini-3.1-pro"
    assert cfg.critic.model == "Qwen/Qwen3-VL-8B-Instruct"  # untouched section keeps defaults
    assert cfg.loop.max_rounds == 3


def test_precedence_file_env_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, '[critic]\nbase_url = "http://file/v1"\ntimeout = 11\n[loop]\nmax_rounds = 2\n')
    assert load_config(path).critic.base_url == "http://file/v1"
    monkeypatch.setenv("PORTRAITCRAFT_CRITIC__BASE_URL", "http://env/v1")
    cfg = load_config(path)
    assert cfg.critic.base_url == "http://env/v1" and cfg.critic.timeout == 11  # env beats file, keeps the rest
    cfg = load_config(path, {"critic": {"base_url": "http://flag/v1"}})
    assert cfg.critic.base_url == "http://flag/v1" and cfg.loop.max_rounds == 2


def test_unknown_key_and_wrong_type_name_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"judge\.bogus: unknown key"):
        load_config(_write(tmp_path, "[judge]\nbogus = 1\n"))
    with pytest.raises(ConfigError, match=r"critic\.timeout"):
        load_config(_write(tmp_path, '[critic]\ntimeout = "soon"\n'))
    with pytest.raises(ConfigError, match=r"nosuchsection"):
        load_config(_write(tmp_path, "[nosuchsection]\na = 1\n"))
    monkeypatch.setenv("PORTRAITCRAFT_LOOP__MAX_ROUNDS", "many")
    with pytest.raises(ConfigError, match=r"loop\.max_rounds"):
        load_config()


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(_write(tmp_path, "[judge\n"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_keys_are_never_stored_and_secrets_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_JUDGE_KEY", "sk-secret-123")
    cfg = load_config(overrides={"judge": {"api_key_env": "MY_JUDGE_KEY",
                                           "base_url": "https://user:pw@example.com/v1",
                                           "extra": {"api_key": "sk-inline", "top_k": 5}}})
    assert cfg.judge.api_key() == "sk-secret-123"
    dumped = str(cfg.masked())
    assert "sk-secret-123" not in dumped and "sk-inline" not in dumped and "pw@" not in dumped
    assert "MY_JUDGE_KEY" in dumped and "'top_k': 5" in dumped
    assert mask_secrets({"token": "t", "name": "n"}) == {"token": "***", "name": "n"}


def test_parse_override() -> None:
    assert parse_override("judge.samples=7") == {"judge": {"samples": 7}}
    assert parse_override("judge.model=gemini-3.1-pro") == {"judge": {"model": "gemini-3.1-pro"}}
    with pytest.raises(ConfigError):
        parse_override("nodot=1")


def test_cli_flags_beat_set_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    from portraitcraft.cli.common import config_from_cli

    monkeypatch.setenv("PORTRAITCRAFT_PLANNER__LONG_SIDE", "1584")
    cfg = config_from_cli(None, ["judge.samples=3", "planner.trigger_word='A'"],
                          planner={"trigger_word": "B", "policy": None})
    assert cfg.judge.samples == 3 and cfg.planner.trigger_word == "B"
    assert cfg.planner.policy is None and cfg.planner.long_side == 1584
