"""A user who only scores with a remote judge must not need torch: a core-only install must work. The install is
NON-editable (a wheel copied into site-packages), so it also checks the one-namespace packaging."""

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
    subprocess.run([str(py), "-m", "pip", "install", "-q", str(ROOT)], check=True, capture_output=True)
    return env_dir


def _run(env_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(env_dir / "bin" / "portraitcraft"), *args], capture_output=True, text=True, timeout=120)


def test_one_namespace_nothing_generic_in_site_packages(light_venv: Path, tmp_path: Path) -> None:
    """From an empty folder (so the source tree is not on sys.path), the folders import only under
    `portraitcraft.`: a user's own `tools/` or `train/` is never shadowed by ours."""
    empty = tmp_path / "empty"
    empty.mkdir()
    py = str(light_venv / "bin" / "python")
    for generic in ("tools", "eval", "agents", "graphs", "prompts", "train", "cli"):
        probe = subprocess.run([py, "-c", f"import {generic}"], capture_output=True, text=True, cwd=empty)
        assert probe.returncode != 0 and "ModuleNotFoundError" in probe.stderr, f"`import {generic}` worked"
    code = ("import portraitcraft.tools, portraitcraft.agents, portraitcraft.graphs, portraitcraft.eval, "
            "portraitcraft.train, portraitcraft.cli, portraitcraft.predictions, portraitcraft.submission\n"
            "import importlib.resources as r, portraitcraft.tools as t\n"
            "assert 'site-packages' in t.__file__, t.__file__\n"
            "assert r.files('portraitcraft.prompts').joinpath('rules').is_dir()\n"
            "assert r.files('portraitcraft.graphs').joinpath('templates').is_dir()\n")
    res = subprocess.run([py, "-c", code], capture_output=True, text=True, cwd=empty)
    assert res.returncode == 0, res.stderr


def test_every_package_folder_is_installed() -> None:
    """`packages` in pyproject.toml lists every folder with an `__init__.py` (setuptools' find does not follow
    the package-dir mapping, so a new subpackage left out of the list would be missing from a wheel)."""
    import tomllib

    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = {folder: name for name, folder in setup["package-dir"].items()}
    found = set()
    for folder, name in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([name, *rel.parts]))
    assert found == set(setup["packages"])


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
