"""LoRA training through the real diffusers + peft code on the tiny random Z-Image and Qwen-Image: Diffusion-DPO
starts at ln 2 and learns, the saved LoRA loads through the generator, resuming replays the same curve, SFT
learns, the pose ControlNet runs in policy and reference, the cache spares the encoders, bad rows are skipped."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_train_data import pickapic, png

from portraitcraft.config import GeneratorConfig, LoraConfig, PortraitcraftConfig, load_config
from portraitcraft.train import TrainError

pytest_plugins = ["diffusion_fixtures"]
pytestmark = pytest.mark.diffusion
pytest.importorskip("datasets")

ROOT = Path(__file__).resolve().parent.parent
LN2 = math.log(2.0)


def make_cfg(model: Path, cache_dir: Path, controlnet: Path | None = None, **train: Any) -> PortraitcraftConfig:
    """configs/train-offline.toml pointed at the session's tiny models and a test cache."""
    generator = {"model": str(model), "controlnet": str(controlnet) if controlnet else None}
    return load_config(ROOT / "configs" / "train-offline.toml", {
        "generator": generator, "run": {"cache_dir": str(cache_dir)},
        "train": {"learning_rate": 1e-2, "beta": 1000.0, "checkpoint_every": 1000, **train},
    })


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four pairs (two canvases), one soft label, one with a pose image, one with pose keypoints."""
    keypoints = json.dumps(np.tile([20.0, 20.0, 1.0], (17, 1)).tolist())
    return pickapic(tmp_path_factory.mktemp("pairs") / "pairs.parquet", [
        {}, {"jpg_0": png(1, 40, 60), "jpg_1": png(101, 40, 60), "pose_image": png(9, 40, 60)},
        {"label_0": 0.8, "label_1": 0.2, "pose_keypoints": keypoints}, {"label_0": 0.0, "label_1": 1.0},
    ])


@pytest.fixture(scope="module")
def dpo_run(tiny_zimage: Path, pairs_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from portraitcraft.train.data import read_pairs
    from portraitcraft.train.runner import run_training

    base = tmp_path_factory.mktemp("dpo")
    cfg = make_cfg(tiny_zimage, base / "cache", seed=3)
    return run_training("dpo", read_pairs(pairs_file), cfg, base / "run", max_steps=24, validate=True)


def test_dpo_starts_at_ln2_and_learns_the_pairs(dpo_run: Any) -> None:
    from portraitcraft.train.runner import evaluate

    rows = [json.loads(line) for line in (dpo_run.out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(24))
    assert abs(rows[0]["loss"] - LN2) < 1e-6  # policy == reference at step 0
    assert rows[0]["reward_accuracy"] == 0.0 and rows[0]["reward_margin"] == 0.0
    assert {"loss", "reward_accuracy", "reward_margin"} <= set(rows[-1])
    after = evaluate(dpo_run, draws=3)  # fixed noise over every pair: the training rows are one noisy draw each
    assert after["loss"] < LN2 - 0.05, after
    assert after["reward_accuracy"] > 0.5, after  # from 0 at step 0 (every margin exactly 0)
    assert np.mean([r["loss"] for r in rows[-8:]]) < LN2
    summary = json.loads((dpo_run.out / "summary.json").read_text())
    assert summary["used"] == 4 and summary["skipped"] == 0 and summary["steps"] == 24


def test_the_saved_lora_loads_unchanged_through_the_generator(dpo_run: Any, tiny_zimage: Path,
                                                             cpu_cfg: Callable[..., Any]) -> None:
    import torch
    from diffusers import ZImagePipeline

    from portraitcraft.tools.diffusion import build_generator
    from portraitcraft.tools.gpu import ModelPool
    from portraitcraft.train.models import FlowModel

    # the file computes exactly what the trained adapter computes (rank, alpha, keys survive the round trip)
    pipe = ZImagePipeline.from_pretrained(tiny_zimage)
    pipe.load_lora_weights(str(dpo_run.lora))
    loaded = FlowModel(pipe, str(tiny_zimage), "cpu")
    x, sigma = torch.randn(2, 16, 16, 16, generator=torch.Generator().manual_seed(0)), torch.tensor([0.3, 0.8])
    embeds = dpo_run.model.encode_prompts(["a person on the left", "x"], 64)
    with torch.no_grad():
        trained = dpo_run.model.velocity(x, sigma, embeds)
        assert torch.allclose(loaded.velocity(x, sigma, embeds), trained, atol=1e-5)
        with dpo_run.model.adapters_disabled():
            assert not torch.allclose(dpo_run.model.velocity(x, sigma, embeds), trained, atol=1e-4)

    pool = ModelPool(device="cpu")
    plain = build_generator(cpu_cfg(GeneratorConfig, tiny_zimage), pool)
    adapted = build_generator(cpu_cfg(GeneratorConfig, tiny_zimage, loras=[LoraConfig(path=str(dpo_run.lora))]),
                              pool)
    a = np.asarray(plain.generate("a woman on the left third", 32, 32, seed=1), dtype=np.int16)
    b = np.asarray(adapted.generate("a woman on the left third", 32, 32, seed=1), dtype=np.int16)
    assert np.abs(a - b).max() > 0


def test_validate_draws_each_prompt_with_and_without_the_lora(dpo_run: Any) -> None:
    from PIL import Image

    names = sorted(p.name for p in dpo_run.validation)
    assert names == ["00_base.png", "00_lora.png", "01_base.png", "01_lora.png"]
    folder = dpo_run.out / "validation"
    base, lora = (np.asarray(Image.open(folder / n), dtype=np.int16) for n in ("00_base.png", "00_lora.png"))
    assert base.shape == (32, 32, 3) and np.abs(base - lora).max() > 0


def test_resume_continues_the_same_loss_curve(tiny_zimage: Path, pairs_file: Path, tmp_path: Path) -> None:
    from portraitcraft.train.data import read_pairs
    from portraitcraft.train.runner import run_training

    cfg = make_cfg(tiny_zimage, tmp_path / "cache", batch_size=1, checkpoint_every=3, seed=5)
    whole = run_training("dpo", read_pairs(pairs_file), cfg, tmp_path / "whole", max_steps=6)
    first = run_training("dpo", read_pairs(pairs_file), cfg, tmp_path / "split", max_steps=4)
    assert [p.name for p in sorted((tmp_path / "split" / "checkpoints").iterdir())] == ["step_3", "step_4"]
    (tmp_path / "split" / "checkpoints" / "step_4").rename(tmp_path / "split" / "killed")  # as if killed after 3
    second = run_training("dpo", read_pairs(pairs_file), cfg, tmp_path / "split", max_steps=6)
    assert first.start_step == 0 and second.start_step == 3
    rows = [json.loads(x) for x in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(6))
    expected = [r["loss"] for r in whole.rows]
    assert np.allclose([r["loss"] for r in rows], expected, atol=1e-6, rtol=0)
    assert np.allclose([r["reward_margin"] for r in rows], [r["reward_margin"] for r in whole.rows], atol=1e-5)
    cfg2 = make_cfg(tiny_zimage, tmp_path / "cache", batch_size=1, checkpoint_every=3, seed=6)
    with pytest.raises(TrainError, match="other data or settings"):
        run_training("dpo", read_pairs(pairs_file), cfg2, tmp_path / "split", max_steps=7)


@pytest.fixture()
def sft_set(tmp_path: Path) -> tuple[Path, Path]:
    images = tmp_path / "images"
    images.mkdir()
    records = []
    for i, (w, h) in enumerate([(40, 40), (40, 60), (60, 40), (40, 40)]):
        (images / f"img{i}.png").write_bytes(png(10 + i, w, h))
        records.append({"image_path": f"img{i}.png", "content_description": f"Person {i} stands on the left.",
                        "composition_analysis": "Rule of thirds."})
    records.append({"image_path": "gone.png", "content_description": "Missing.", "composition_analysis": ""})
    (tmp_path / "train.json").write_text(json.dumps(records))
    return tmp_path / "train.json", images


def test_sft_learns_and_later_epochs_run_no_encoder(tiny_zimage: Path, sft_set: tuple[Path, Path],
                                                    tmp_path: Path) -> None:
    from portraitcraft.train.data import read_sft_items
    from portraitcraft.train.runner import evaluate, run_training

    cfg = make_cfg(tiny_zimage, tmp_path / "cache", batch_size=2, timestep_sampling="uniform")
    items = read_sft_items(*sft_set, cfg)
    assert items.skipped == 1
    res = run_training("sft", items, cfg, tmp_path / "sft", max_steps=12)  # 12 steps = 4 epochs of 3 batches
    # every image and prompt was encoded once, in the first pass; epochs 2-4 read the cache only
    assert res.forwards["vae"] == 4 and res.forwards["text_encoder"] == 4
    assert res.cache_hits == 4 * 4 * 2  # 4 epochs x 4 items x (latent, text)
    after, before = evaluate(res, draws=2), evaluate(res, draws=2, lora=False)
    assert after["loss"] < before["loss"] * 0.98, (before, after)
    again = run_training("sft", read_sft_items(*sft_set, cfg), cfg, tmp_path / "sft2", max_steps=2)
    assert again.forwards == {"vae": 0, "text_encoder": 0, "controlnet": 0}  # a re-run: all from disk


def test_without_the_cache_every_step_encodes(tiny_zimage: Path, sft_set: tuple[Path, Path], tmp_path: Path) -> None:
    from portraitcraft.train.data import read_sft_items
    from portraitcraft.train.runner import run_training

    cfg = make_cfg(tiny_zimage, tmp_path / "cache", batch_size=2, cache=False)
    res = run_training("sft", read_sft_items(*sft_set, cfg), cfg, tmp_path / "sft", max_steps=6)
    # 6 steps = 2 epochs of 3 batches (4 items): each epoch encodes every item again
    assert res.forwards["vae"] == 8 and res.forwards["text_encoder"] == 8 and res.cache_hits == 0
    assert not (tmp_path / "cache").exists()


def test_pose_controlnet_runs_in_policy_and_reference(tiny_zimage: Path, tiny_controlnet: Path, pairs_file: Path,
                                                      tmp_path: Path) -> None:
    from portraitcraft.train.data import read_pairs
    from portraitcraft.train.runner import run_training

    cfg = make_cfg(tiny_zimage, tmp_path / "cache", tiny_controlnet, pose=True, batch_size=1)
    res = run_training("dpo", read_pairs(pairs_file), cfg, tmp_path / "pose", max_steps=2)
    assert res.forwards["controlnet"] == 2 * 2  # per step: the reference pass and the policy pass
    assert abs(res.rows[0]["loss"] - LN2) < 1e-6
    # the control latents matter: the same batch without them predicts something else
    import torch

    batch = res.encoder.batch(res.prepared[:1])
    assert batch.control is not None and batch.control.shape == batch.latents[:, 0].shape
    x, sigma = batch.latents[:, 0], torch.tensor([0.5])
    with torch.no_grad():
        posed = res.model.velocity(x, sigma, batch.embeds, batch.control)
        plain = res.model.velocity(x, sigma, batch.embeds)
    assert not torch.allclose(posed, plain, atol=1e-4)


def test_pose_needs_a_controlnet_and_qwen_has_none(tiny_zimage: Path, pairs_file: Path, tmp_path: Path) -> None:
    from portraitcraft.train.data import read_pairs
    from portraitcraft.train.runner import run_training

    cfg = make_cfg(tiny_zimage, tmp_path / "cache", pose=True)
    with pytest.raises(TrainError, match="needs a pose ControlNet"):
        run_training("dpo", read_pairs(pairs_file), cfg, tmp_path / "x", max_steps=1)


def test_bad_rows_are_skipped_and_counted_without_stopping(tiny_zimage: Path, tmp_path: Path) -> None:
    from portraitcraft.train.data import read_pairs
    from portraitcraft.train.runner import run_training

    path = pickapic(tmp_path / "bad.parquet", [{}, {"jpg_0": b"\x89PNG garbage"}, {"caption": ""}, {"jpg_1": None}, {}])
    cfg = make_cfg(tiny_zimage, tmp_path / "cache")
    res = run_training("dpo", read_pairs(path), cfg, tmp_path / "run", max_steps=2)
    assert res.used == 2 and res.skipped == 3 and res.steps == 2
    problems = [json.loads(x) for x in (tmp_path / "run" / "problems.jsonl").read_text().splitlines()]
    assert [(p["row"], p["item"]) for p in problems] == [(2, "item2"), (3, "item3"), (1, "item1")]
    assert "undecodable image bytes" in problems[2]["problem"] and "chosen" in problems[2]["problem"]


def test_an_incompatible_lora_target_fails_before_training(tiny_zimage: Path, pairs_file: Path,
                                                           tmp_path: Path) -> None:
    from portraitcraft.train.data import read_pairs
    from portraitcraft.train.runner import run_training

    cfg = make_cfg(tiny_zimage, tmp_path / "cache", lora_targets=["to_q", "attn.qkv_proj"])
    with pytest.raises(TrainError, match=r"LoRA target 'attn\.qkv_proj' matches no linear layer.*to_q"):
        run_training("dpo", read_pairs(pairs_file), cfg, tmp_path / "run", max_steps=1)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_qwen_image_dpo_starts_at_ln2_learns_and_saves_a_loadable_lora(tiny_qwen_image: Path, pairs_file: Path,
                                                                       tmp_path: Path) -> None:
    import torch
    from diffusers import QwenImagePipeline

    from portraitcraft.train.data import read_pairs
    from portraitcraft.train.models import FlowModel
    from portraitcraft.train.runner import evaluate, run_training

    cfg = make_cfg(tiny_qwen_image, tmp_path / "cache", max_sequence_length=300, seed=1)
    res = run_training("dpo", read_pairs(pairs_file), cfg, tmp_path / "qwen", max_steps=12)
    assert abs(res.rows[0]["loss"] - LN2) < 1e-6
    after = evaluate(res, draws=2)
    assert after["loss"] < LN2 - 0.05 and after["reward_accuracy"] >= 0.75, after
    pipe = QwenImagePipeline.from_pretrained(tiny_qwen_image)
    pipe.load_lora_weights(str(res.lora))
    loaded = FlowModel(pipe, str(tiny_qwen_image), "cpu")
    batch = res.encoder.batch(res.prepared[:1])
    x, sigma = batch.latents[:, 0], torch.tensor([0.4])
    with torch.no_grad():
        assert torch.allclose(loaded.velocity(x, sigma, batch.embeds), res.model.velocity(x, sigma, batch.embeds),
                              atol=1e-5)


def test_cli_train_dpo(tiny_zimage: Path, pairs_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                       monkeypatch: pytest.MonkeyPatch) -> None:
    from cli_run import run_cli

    args = ["train", "dpo", str(pairs_file), "--config", str(ROOT / "configs" / "train-offline.toml"),
            "--set", f'generator.model="{tiny_zimage}"', "--set", f'run.cache_dir="{tmp_path / "cache"}"',
            "--out", str(tmp_path / "run"), "--max-steps", "2", "--json"]
    result = run_cli(args, capsys, monkeypatch)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["steps"] == 2 and summary["used"] == 4 and Path(summary["lora"]).is_file()
    bad = run_cli([*args[:-3], "--set", 'train.lora_targets=["nope"]', "--max-steps", "1"], capsys, monkeypatch)
    assert bad.exit_code != 0 and "LoRA target 'nope'" in bad.stderr
