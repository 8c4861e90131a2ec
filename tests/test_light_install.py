"""A user who only scores with a remote judge must not need torch: a core-only install must work."""

from __future__ import annotations

import json
import subprocess
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def light_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    env_dir = tmp_path_factory.mktemp("light") / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "-e", str(ROOT)], check=True, capture_output=True)
    return env_dir


def _run(env_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(env_dir / "bin" / "portraitcraft"), *args], capture_output=True, text=True, timeout=120)


def test_core_install_has_no_torch_and_the_cli_works(light_venv: Path) -> None:
    probe = subprocess.run([str(light_venv / "bin" / "python"), "-c", "import torch"], capture_output=True)
    assert probe.returncode != 0, "the core install pulled in torch"
    for args in (["--help"], ["data", "validate", "--help"]):
        res = _run(light_venv, *args)
        assert res.returncode == 0, res.stderr
        assert "Usage" in res.stdout
    res = _run(light_venv, "doctor", "--json", "--no-endpoints")
    assert res.returncode == 0, res.stderr
    checks = {c["name"]: c for c in json.loads(res.stdout)["checks"]}
    assert checks["extra [diffusion]"]["status"] == "warn"
    assert checks["gpu"]["status"] == "warn" and "torch is not installed" in checks["gpu"]["detail"]
    examples = ROOT / "examples"
    res = _run(light_venv, "data", "validate", str(examples / "track_1_train.json"),
               "--images", str(examples / "images"))
    assert res.returncode == 0, res.stdout + res.stderr


def test_help_of_every_registered_group_works_in_the_light_install(light_venv: Path) -> None:
    from portraitcraft.cli import COMMANDS, SUBAPPS

    for name in [*SUBAPPS, *COMMANDS]:
        res = _run(light_venv, name, "--help")
        assert res.returncode == 0, f"{name} --help failed without torch: {res.stderr[-500:]}"
