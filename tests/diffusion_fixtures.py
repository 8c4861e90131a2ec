"""Session fixtures for the diffusion tests: tiny random models built once per test run (in a pytest temp
folder) and loaded through the same `from_pretrained` path as real checkpoints.

Use from a test module with `pytest_plugins = ["diffusion_fixtures"]`; `cpu_cfg(cls, model, **overrides)`
makes a backend config for this machine (CPU, float32, 2 steps).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from portraitcraft.config import DiffusionConfig


def _import_diffusers() -> None:
    """Import diffusers even after colour-science ran: without matplotlib, `import colour` (the eval tests)
    puts MagicMock `matplotlib*` modules into sys.modules, and diffusers' import-time probe then fails
    ("matplotlib.__spec__ is not set"). Hide those stubs while diffusers is first imported."""
    stubs = {name: mod for name, mod in sys.modules.items()
             if name.split(".")[0] == "matplotlib" and getattr(mod, "__spec__", None) is None}
    for name in stubs:
        del sys.modules[name]
    try:
        import diffusers  # noqa: F401
    finally:
        sys.modules.update(stubs)


_import_diffusers()

C = TypeVar("C", bound=DiffusionConfig)


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny-models")


def _ensure(kind: str, root: Path) -> Path:
    from portraitcraft.tools.diffusion.tiny import ensure_tiny_model

    return ensure_tiny_model(kind, root)


@pytest.fixture(scope="session")
def tiny_zimage(tiny_root: Path) -> Path:
    return _ensure("zimage", tiny_root)


@pytest.fixture(scope="session")
def tiny_controlnet(tiny_root: Path) -> Path:
    return _ensure("zimage-controlnet", tiny_root)


@pytest.fixture(scope="session")
def tiny_qwen_image(tiny_root: Path) -> Path:
    return _ensure("qwen-image", tiny_root)


@pytest.fixture(scope="session")
def tiny_qwen_edit(tiny_root: Path) -> Path:
    return _ensure("qwen-image-edit", tiny_root)


@pytest.fixture(scope="session")
def tiny_lora(tiny_zimage: Path, tiny_root: Path) -> Path:
    """A random rank-4 LoRA for the tiny Z-Image transformer (peft, diffusers key layout)."""
    from portraitcraft.tools.diffusion.tiny import build_tiny_lora

    return build_tiny_lora(tiny_zimage, tiny_root / "loras" / "tiny_zimage_lora.safetensors")


@pytest.fixture(scope="session")
def cpu_cfg() -> Callable[..., Any]:
    """`cpu_cfg(GeneratorConfig, model_dir, backend="zimage-turbo", steps=2, ...)` -> a config for this box."""

    def make(cls: type[C], model: Path | str, **overrides: Any) -> C:
        values: dict[str, Any] = {"model": str(model), "device": "cpu", "dtype": "float32", "steps": 2}
        values.update(overrides)
        return cls(**values)

    return make


@pytest.fixture(scope="session")
def cpu_pool() -> Any:
    """One model pool for the session's backends, so each tiny model is loaded once."""
    from portraitcraft.tools.gpu import ModelPool

    return ModelPool(device="cpu")
