"""Tiny offline models: built once into a cache folder (lock file, atomic move), deterministic, CLI-buildable."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from portraitcraft.tools.diffusion import tiny

pytest_plugins = ["diffusion_fixtures"]
pytestmark = pytest.mark.diffusion
ROOT = Path(__file__).resolve().parent.parent


def test_a_built_model_is_reused(tiny_zimage: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> Path:
        raise AssertionError("rebuilt a model that was already built")

    monkeypatch.setattr(tiny, "build_tiny_model", refuse)
    assert tiny.ensure_tiny_model("zimage", tiny_zimage.parent) == tiny_zimage
    index = json.loads((tiny_zimage / "model_index.json").read_text())
    assert index["_class_name"] == "ZImagePipeline" and index["tokenizer"] == ["transformers", "Qwen2Tokenizer"]


def test_parallel_callers_build_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_build = tiny.build_tiny_model
    calls: list[str] = []

    def slow_build(kind: str, out: Path, **kwargs: object) -> Path:
        calls.append(kind)
        time.sleep(0.3)  # widen the race window
        return real_build(kind, out, **kwargs)

    monkeypatch.setattr(tiny, "build_tiny_model", slow_build)
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(tiny.ensure_tiny_model("zimage-controlnet", tmp_path)))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == ["zimage-controlnet"]
    assert len(set(results)) == 1 and len(results) == 3
    (target,) = set(results)
    assert (target / ".complete").is_file() and (target / "config.json").is_file()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != target.name and not p.name.endswith(".lock")]
    assert leftovers == []


def test_a_failed_build_leaves_nothing_behind_and_a_stale_folder_is_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(kind: str, out: Path, **kwargs: object) -> Path:
        (Path(out) / "half-written").write_text("x")
        raise RuntimeError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(tiny, "build_tiny_model", broken)
        with pytest.raises(RuntimeError, match="disk full"):
            tiny.ensure_tiny_model("zimage-controlnet", tmp_path)
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []
    stale = tmp_path / f"zimage-controlnet-v{tiny.RECIPE_VERSION}"
    stale.mkdir()
    (stale / "junk").write_text("from a killed build")
    built = tiny.ensure_tiny_model("zimage-controlnet", tmp_path)
    assert built == stale and not (built / "junk").exists() and (built / ".complete").is_file()


def test_builds_are_deterministic(tmp_path: Path) -> None:
    a = tiny.build_tiny_model("zimage-controlnet", tmp_path / "a")
    b = tiny.build_tiny_model("zimage-controlnet", tmp_path / "b")
    c = tiny.build_tiny_model("zimage-controlnet", tmp_path / "c", seed=1)
    wa, wb, wc = (load_file(d / "diffusion_pytorch_model.safetensors") for d in (a, b, c))
    assert wa.keys() == wb.keys() and all((wa[k] == wb[k]).all() for k in wa)
    assert any(not (wa[k] == wc[k]).all() for k in wa)
    assert any("after_proj" in k and wa[k].abs().sum() > 0 for k in wa)  # the zero projections randomised


def test_edit_checkpoint_has_the_real_layout(tiny_qwen_edit: Path) -> None:
    index = json.loads((tiny_qwen_edit / "model_index.json").read_text())
    assert index["_class_name"] == "QwenImageEditPipeline"
    assert index["processor"] == ["transformers", "Qwen2VLProcessor"]


def test_byte_tokenizer_round_trips_with_special_tokens_at_their_real_ids(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    tok = tiny.byte_tokenizer()
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = "<|im_start|>user\nune femme à gauche<|im_end|><|vision_start|><|image_pad|><|vision_end|>"
    ids = loaded(text)["input_ids"]
    assert ids == tok(text)["input_ids"]
    assert ids[0] == 151644 and ids[-3:] == [151652, 151655, 151653]
    assert loaded.decode(ids) == text
    chat = loaded.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                      add_generation_prompt=True)
    assert chat == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_unknown_kind_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown tiny model kind 'sdxl'"):
        tiny.ensure_tiny_model("sdxl", tmp_path)


def test_cli_builds_into_the_given_folder(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "portraitcraft.tools.diffusion.tiny", "build", "--out", str(tmp_path), "--kind",
         "zimage-controlnet"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stderr
    target = tmp_path / f"zimage-controlnet-v{tiny.RECIPE_VERSION}"
    assert f"zimage-controlnet: {target}" in res.stdout
    assert (target / ".complete").is_file()
