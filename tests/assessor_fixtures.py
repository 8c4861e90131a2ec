"""Fixtures for the assessor LoRA tests: the tiny random Qwen2-VL and the records exported from the examples.

    pytest_plugins = ["assessor_fixtures"]

    def test_x(tiny_qwen2vl, assessor_records): ...   # a model folder; (records folder, images folder)
"""

from __future__ import annotations

from pathlib import Path

import pytest
from assessor_helpers import EXAMPLES, IMAGES, build_tiny
from console_script import run_script


@pytest.fixture(scope="session")
def tiny_qwen2vl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny(tmp_path_factory.mktemp("assessor-model") / "tiny-qwen2vl")


@pytest.fixture(scope="session")
def assessor_records(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(records folder, images folder): `understand export-sft --format openai` of examples/track_1_train.json,
    through the installed console script, with the default assessor config."""
    out = tmp_path_factory.mktemp("assessor-records")
    done = run_script("understand", "export-sft", EXAMPLES / "track_1_train.json", "--images", IMAGES, "--format",
                      "openai", "--out", out, timeout=300)
    assert done.code == 0, done.output[-2000:]
    return out, IMAGES
