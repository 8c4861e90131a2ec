"""The docstring examples run (`>>>` lines not marked `# doctest: +SKIP`): every module of the source packages
that has examples, found by scanning the tree, so a new example is tested without registering it. A module
whose import needs an extra that is not installed (torch for the diffusers backends) is skipped."""

from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# source folder -> installed package name (pyproject.toml's package-dir)
PACKAGES = {"portraitcraft": "portraitcraft", "cli": "portraitcraft.cli", "tools": "portraitcraft.tools",
            "agents": "portraitcraft.agents", "graphs": "portraitcraft.graphs", "eval": "portraitcraft.eval",
            "train": "portraitcraft.train", "prompts": "portraitcraft.prompts"}
OPTIONAL = {"torch", "diffusers", "transformers", "accelerate", "peft", "rtmlib", "onnxruntime", "onnx", "cv2",
            "mediapipe", "ray"}


def modules_with_examples() -> list[str]:
    found = []
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            if re.search(r"^\s*>>> ", path.read_text(encoding="utf-8"), flags=re.M):
                parts = path.relative_to(ROOT / folder).with_suffix("").parts
                found.append(".".join([package, *(p for p in parts if p != "__init__")]))
    return found


MODULES = modules_with_examples()


def test_the_scan_finds_the_modules_with_examples() -> None:
    assert {"portraitcraft.eval.track2", "portraitcraft.config", "portraitcraft.urls", "portraitcraft.tools.retry",
            "portraitcraft.paths"} <= set(
        MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in OPTIONAL:
            pytest.skip(f"{name} needs {exc.name}")
        raise
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, report=True)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name} (see stdout)"
