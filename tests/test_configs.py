from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from portraitcraft.config import load_config

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.toml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_config_loads(path: Path) -> None:
    cfg = load_config(path).model_dump()
    with open(path, "rb") as fh:
        written = tomllib.load(fh)

    def check(expected: dict, actual: dict, where: str) -> None:
        for key, value in expected.items():
            if isinstance(value, dict):
                check(value, actual[key], f"{where}{key}.")
            else:
                assert actual[key] == value, f"{path.name}: {where}{key}"

    check(written, cfg, "")


def test_gemini_judge_config_keeps_the_key_out() -> None:
    cfg = load_config(Path(__file__).resolve().parent.parent / "configs" / "judge-gemini.toml")
    assert cfg.judge.api_key_env == "GEMINI_API_KEY" and cfg.judge.dialect == "openai"
    assert cfg.judge.api_key() == "EMPTY"  # the test env has no key set
