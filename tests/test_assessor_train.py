"""`portraitcraft train assessor` end to end on the tiny random Qwen2-VL and the records exported from
examples/track_1_train.json: 3 steps on the CPU through the console script, the adapter reloads with peft and
changes the logits, `--resume` continues the curve exactly, and the loss falls on a repeated batch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.diffusion
pytest.importorskip("trl")
pytest_plugins = ["assessor_fixtures"]

from assessor_helpers import IMAGES, TINY_PIXELS, tiny_overrides  # noqa: E402
from console_script import run_script  # noqa: E402

from portraitcraft.config import AssessorConfig, load_config  # noqa: E402
from portraitcraft.train.assessor import train_assessor  # noqa: E402
from portraitcraft.train.assessor_data import read_records  # noqa: E402

SETS = [f"assessor.max_image_pixels={TINY_PIXELS}", "assessor_train.batch_size=2", "assessor_train.grad_accum=1",
        "assessor_train.learning_rate=0.002", "assessor_train.lr_scheduler=\"constant\"",
        "assessor_train.warmup_ratio=0.0", "assessor_train.lora_rank=8", "assessor_train.eval_every=2",
        "assessor_train.lora_dropout=0.0"]


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def three_steps(tiny_qwen2vl, assessor_records, tmp_path_factory) -> tuple[Path, dict]:
    """`train assessor` through the installed console script: 3 steps, --json summary."""
    rec, images = assessor_records
    home = tmp_path_factory.mktemp("assessor-run")
    run = home / "run"
    args = ["train", "assessor", str(rec), "--out", str(run), "--base", str(tiny_qwen2vl), "--images", str(images),
            "--max-steps", "3", "--json"]
    for item in SETS:
        args += ["--set", item]
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HOME": str(home / "hf_home"),
           "PORTRAITCRAFT_CACHE_DIR": str(home / "cache")}
    done = run_script(*args, timeout=600, env=env)
    assert done.code == 0, done.output[-3000:]
    return run, json.loads(done.stdout)


def test_three_cpu_steps_write_adapter_metrics_and_summary(three_steps, tiny_qwen2vl) -> None:
    run, summary = three_steps
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "chat_template.jinja",
                 "preprocessor_config.json", "metrics.jsonl", "summary.json", "problems.jsonl"):
        assert (run / name).is_file(), name
    assert (run / "checkpoints" / "checkpoint-3" / "optimizer.pt").is_file()
    adapter = json.loads((run / "adapter_config.json").read_text())
    assert adapter["peft_type"] == "LORA" and adapter["r"] == 8 and adapter["base_model_name_or_path"] == str(
        tiny_qwen2vl)
    assert summary == json.loads((run / "summary.json").read_text())
    assert summary["base"] == str(tiny_qwen2vl) and summary["steps"] == 3 and summary["resumed_from"] == 0
    assert (summary["used"], summary["held_out"], summary["skipped"]) == (5, 1, 0)
    assert summary["device"] == "cpu" and summary["precision"] == "fp32"
    assert summary["steps_per_second"] > 0 and summary["peak_rss_mb"] > 100
    assert "--enable-lora --lora-modules assessor=" in summary["serve"] and "--max-lora-rank 8" in summary["serve"]
    rows = _rows(run)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all({"loss", "lr"} <= set(r) for r in rows) and all(r["lr"] == pytest.approx(0.002) for r in rows)
    assert "eval_loss" in rows[1] and "eval_loss" in rows[2] and "eval_loss" not in rows[0]  # every 2 + the last
    assert summary["final_loss"] == rows[-1]["loss"] and summary["final_eval_loss"] == rows[-1]["eval_loss"]


def test_adapter_reloads_with_peft_and_changes_the_logits(three_steps, tiny_qwen2vl, assessor_records) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    from portraitcraft.train.assessor_collate import AssessorCollator
    from portraitcraft.train.assessor_model import load_processor

    run, _ = three_steps
    rec, images = assessor_records
    cfg = AssessorConfig(max_image_pixels=TINY_PIXELS)
    record = read_records(rec, cfg, image_roots=[images]).records[0]
    processor = load_processor(str(run))  # the run folder carries the processor files
    batch = AssessorCollator(processor, cfg)([record.row()])
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    base = AutoModelForImageTextToText.from_pretrained(str(tiny_qwen2vl), dtype=torch.float32).eval()
    with torch.no_grad():
        before = base(**inputs).logits
        tuned = PeftModel.from_pretrained(base, str(run)).eval()
        after = tuned(**inputs).logits
        with tuned.disable_adapter():
            again = tuned(**inputs).logits
    assert torch.allclose(before, again)
    assert (after - before).abs().max() > 1e-3
    labels = batch["labels"][0, 1:]
    mask = labels != -100

    def answer_nll(logits: torch.Tensor) -> float:
        return float(torch.nn.functional.cross_entropy(logits[0, :-1][mask], labels[mask]))

    assert answer_nll(after) < answer_nll(before)  # trained toward the answers
    # The peft generation path answers with the adapter (the fallback serving route).
    first_answer = int(mask.nonzero()[0]) + 1
    prompt = {"input_ids": inputs["input_ids"][:, :first_answer],
              "attention_mask": inputs["attention_mask"][:, :first_answer],
              "pixel_values": inputs["pixel_values"], "image_grid_thw": inputs["image_grid_thw"]}
    with torch.no_grad():
        out = tuned.generate(**prompt, max_new_tokens=8, do_sample=False)
    assert out.shape[1] > first_answer


def test_resume_continues_the_curve(three_steps, tiny_qwen2vl, assessor_records, tmp_path) -> None:
    run, _ = three_steps
    rec, images = assessor_records
    cfg = load_config(overrides=tiny_overrides(eval_every=2))
    first = _rows(run)
    resumed = train_assessor(rec, cfg, run, base=str(tiny_qwen2vl), max_steps=5, image_roots=[images])
    assert resumed.resumed_from == 3 and resumed.steps == 5
    rows = _rows(run)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5] and rows[:3] == first
    assert json.loads((run / "summary.json").read_text())["resumed_from"] == 3

    straight = train_assessor(rec, cfg, tmp_path / "straight", base=str(tiny_qwen2vl), max_steps=5,
                              image_roots=[images])
    assert straight.resumed_from == 0
    expected = _rows(tmp_path / "straight")
    for got, want in zip(rows, expected, strict=True):
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-4, abs=1e-5), (got, want)

    # A checkpoint trained on other records is refused, not silently continued.
    from portraitcraft.errors import InputError

    with pytest.raises(InputError, match="other records or settings"):
        train_assessor(rec, load_config(overrides=tiny_overrides(lora_rank=4)), run, base=str(tiny_qwen2vl),
                       max_steps=6, image_roots=[images])


def test_loss_falls_on_a_repeated_batch(tiny_qwen2vl, assessor_records, tmp_path) -> None:
    rec, _ = assessor_records
    one = tmp_path / "one.jsonl"
    one.write_text((rec / "train.jsonl").read_text().splitlines()[0] + "\n")
    cfg = load_config(overrides=tiny_overrides(batch_size=1, eval_fraction=0.0, learning_rate=5e-3))
    result = train_assessor(one, cfg, tmp_path / "run", base=str(tiny_qwen2vl), max_steps=4, image_roots=[IMAGES])
    losses = [r["loss"] for r in result.rows]
    assert result.used == 1 and result.held_out == 0 and len(losses) == 4
    assert losses[-1] < losses[0] - 0.05, losses
    assert all("eval_loss" not in r for r in result.rows)

    # --no-resume starts over: the old checkpoint and metric rows are gone, the curve starts again.
    again = train_assessor(one, cfg, tmp_path / "run", base=str(tiny_qwen2vl), max_steps=1, resume=False,
                           image_roots=[IMAGES])
    assert again.resumed_from == 0 and again.steps == 1
    assert [r["step"] for r in _rows(tmp_path / "run")] == [1]
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("checkpoint-*")) == ["checkpoint-1"]
    assert again.rows[0]["loss"] == pytest.approx(losses[0], rel=1e-5)
