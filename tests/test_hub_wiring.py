"""The GPU-box path, wired here: a config naming real hub ids loads from the Hugging Face cache.

A tiny random Z-Image is laid out in a Hugging Face cache exactly as `hf download Tongyi-MAI/Z-Image-Turbo`
would leave it (models--org--name/snapshots/<commit>/, refs/main), then the DEFAULT generator config
(model = "Tongyi-MAI/Z-Image-Turbo") is loaded offline through the same from_pretrained call as on a GPU box,
and `doctor` reports the weights as cached. Run in a subprocess so HF_HOME is read fresh.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ["diffusion_fixtures"]

COMMIT = "0123456789abcdef0123456789abcdef01234567"
SCRIPT = """
import json, sys
from portraitcraft.config import load_config
from portraitcraft.tools.diffusion import build_generator, meta_of
cfg = load_config(sys.argv[1])
gen = build_generator(cfg.generator)
img = gen.generate("a woman on the left third", 64, 48, seed=3)
print(json.dumps({"size": img.size, "model": meta_of(img).model}))
"""


def _fake_hf_cache(hf_home: Path, repo_id: str, model_dir: Path) -> Path:
    repo = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    shutil.copytree(model_dir, snapshot, ignore=shutil.ignore_patterns(".complete"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return snapshot


@pytest.mark.diffusion
def test_default_hub_id_loads_from_the_hf_cache_offline(tmp_path: Path, tiny_zimage: Path) -> None:
    hf_home = tmp_path / "hf"
    _fake_hf_cache(hf_home, "Tongyi-MAI/Z-Image-Turbo", tiny_zimage)
    cfg = tmp_path / "gpu-box.toml"
    cfg.write_text('[generator]\nmodel = "Tongyi-MAI/Z-Image-Turbo"\ndevice = "cpu"\ndtype = "float32"\n'
                   "steps = 2\nmax_sequence_length = 64\n"
                   '[editor]\nbackend = "img2img"\nmodel = "Tongyi-MAI/Z-Image-Turbo"\n')
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(cfg)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {"size": [64, 48], "model": "Tongyi-MAI/Z-Image-Turbo"}

    doctor = subprocess.run([sys.executable, "-m", "portraitcraft.cli", "doctor", "--json", "--no-endpoints",
                             "--config", str(cfg)], capture_output=True, text=True, env=env, timeout=120)
    checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert checks["weights generator.model"]["status"] == "ok"
    assert "Tongyi-MAI/Z-Image-Turbo cached" in checks["weights generator.model"]["detail"]
    assert checks["weights editor.model"]["status"] == "ok"


@pytest.mark.diffusion
def test_a_hub_id_missing_from_the_cache_is_a_clear_error(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[generator]\nmodel = "Tongyi-MAI/Z-Image-Turbo"\ndevice = "cpu"\ndtype = "float32"\n')
    env = {**os.environ, "HF_HOME": str(tmp_path / "empty-hf"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(cfg)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode != 0
    assert "model 'Tongyi-MAI/Z-Image-Turbo' could not be loaded" in proc.stderr
    assert "nor in the Hugging Face cache" in proc.stderr and "hf download Tongyi-MAI/Z-Image-Turbo" in proc.stderr
