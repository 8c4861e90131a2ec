"""Fixtures for the assessor LoRA tests: the tiny random Qwen2-VL and the records exported from the examples.

    pytest_plugins = ["assessor_fixtures"]

    def test_x(tiny_qwen2vl, assessor_records): ...   # a model folder; (records folder, images folder)
"""

from __future__ import annotations

from pathlib import Path

import pytest
from assessor_helpers import IMAGES, build_tiny, export_records

from portraitcraft.config import AssessorConfig


@pytest.fixture(scope="session")
def tiny_qwen2vl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny(tmp_path_factory.mktemp("assessor-model") / "tiny-qwen2vl")


@pytest.fixture(scope="session")
def assessor_records(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(records folder, images folder) for the default assessor config."""
    return export_records(tmp_path_factory.mktemp("assessor-records"), AssessorConfig()), IMAGES
