"""Training data without a model: pairs readers (parquet, JSONL), bad rows, buckets, SFT prompts, the DPO loss
terms and the flow-matching convention against diffusers' scheduler."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from portraitcraft.config import PlannerConfig, load_config
from portraitcraft.schemas import Track2Spec
from portraitcraft.train import TrainError
from portraitcraft.train.data import Buckets, TrainItem, decode_image, fit_to, pose_control, read_pairs, read_sft_items

pytest.importorskip("datasets")


def png(seed: int, w: int = 40, h: int = 40) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def pickapic(path: Path, rows: list[dict]) -> Path:
    """A pairs parquet in the interfaces.md layout (every column present)."""
    columns = {k: [] for k in ("caption", "jpg_0", "jpg_1", "label_0", "label_1", "pose_keypoints", "pose_image",
                               "source", "item_id", "rules_fired", "provenance")}
    for i, row in enumerate(rows):
        full = {"caption": f"prompt {i}", "jpg_0": png(i), "jpg_1": png(100 + i), "label_0": 1.0, "label_1": 0.0,
                "pose_keypoints": None, "pose_image": None, "source": "generate", "item_id": f"item{i}",
                "rules_fired": "[]", "provenance": "{}", **row}
        for k in columns:
            columns[k].append(full[k])
    schema = pa.schema([("caption", pa.string()), ("jpg_0", pa.binary()), ("jpg_1", pa.binary()),
                        ("label_0", pa.float64()), ("label_1", pa.float64()), ("pose_keypoints", pa.string()),
                        ("pose_image", pa.binary()), ("source", pa.string()), ("item_id", pa.string()),
                        ("rules_fired", pa.string()), ("provenance", pa.string())])
    pq.write_table(pa.table(columns, schema=schema), path)
    return path


def test_pickapic_rows_are_read_and_oriented_by_label(tmp_path: Path) -> None:
    path = pickapic(tmp_path / "pairs.parquet", [
        {}, {"label_0": 0.25, "label_1": 0.75}, {"label_0": 0.7, "label_1": 0.3, "pose_image": png(7, 20, 20)},
    ])
    pairs = read_pairs(path)
    assert pairs.total == 3 and pairs.skipped == 0
    a, b, c = pairs.items
    assert a.images == [png(0), png(100)] and a.p_chosen == 1.0 and a.prompt == "prompt 0"
    assert b.images == [png(101), png(1)] and b.p_chosen == pytest.approx(0.75)  # jpg_1 preferred: it goes first
    assert c.p_chosen == pytest.approx(0.7) and c.pose_image == png(7, 20, 20) and c.id == "item2"


def test_bad_rows_are_reported_with_their_row_and_skipped(tmp_path: Path) -> None:
    path = pickapic(tmp_path / "pairs.parquet", [
        {}, {"caption": "  "}, {"jpg_1": None}, {"label_0": float("nan")}, {"pose_keypoints": "{not json"}, {},
    ])
    pairs = read_pairs(path)
    assert [i.row for i in pairs.items] == [0, 5]
    assert pairs.skipped == 4
    text = "\n".join(map(str, pairs.problems))
    assert "row 1 (item1): no caption" in text
    assert "row 2 (item2): jpg_1: missing image" in text
    assert "row 3 (item3): labels" in text
    assert "row 4 (item4)" in text


def test_generate_run_pairs_jsonl_with_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "items" / "a").mkdir(parents=True)
    (tmp_path / "items" / "a" / "round_0.png").write_bytes(png(1))
    (tmp_path / "items" / "a" / "round_2.png").write_bytes(png(2))
    rows = [{"id": "a", "prompt": "a dancer", "chosen": "items/a/round_2.png", "rejected": "items/a/round_0.png",
             "chosen_round": 2, "rejected_round": 0, "rules_fired": ["gaze"]},
            {"id": "b", "prompt": "a runner", "chosen": "items/b/round_1.png", "rejected": "items/a/round_0.png",
             "chosen_round": 1, "rejected_round": 0, "rules_fired": []}]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pairs = read_pairs(tmp_path / "pairs.jsonl")
    (item,) = pairs.items
    assert item.id == "a" and item.images == [png(2), png(1)] and item.p_chosen == 1.0
    assert [str(p) for p in pairs.problems] == ["row 1 (b): chosen: image file 'items/b/round_1.png' not found"]


def test_missing_or_unknown_pairs_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TrainError, match="does not exist"):
        read_pairs(tmp_path / "nope.parquet")
    (tmp_path / "pairs.csv").write_text("a,b\n")
    with pytest.raises(TrainError, match=r"\.parquet \(pickapic\) or \.jsonl"):
        read_pairs(tmp_path / "pairs.csv")


def test_buckets_follow_the_planner_canvas_set_and_fit_centre_crops() -> None:
    buckets = Buckets.from_planner(PlannerConfig(aspect_ratios=[2 / 3, 3 / 2]), long_side=64, multiple=16)
    assert buckets.sizes == ((48, 64), (64, 64), (64, 48))
    assert buckets.nearest(200, 300) == (48, 64) and buckets.nearest(310, 300) == (64, 64)
    image = Image.new("RGB", (100, 50), (0, 0, 0))
    image.paste((255, 255, 255), (25, 0, 75, 50))  # white middle half
    fitted = fit_to(image, (64, 64))
    assert fitted.size == (64, 64)
    assert np.asarray(fitted).mean() > 200  # the crop kept the centre, not the black sides


def test_pose_control_from_keypoints_and_undecodable_bytes() -> None:
    chosen = Image.new("RGB", (40, 40))
    keypoints = np.tile([0.5, 0.5, 1.0], (17, 1)).tolist()  # normalised: the middle of the image
    item = TrainItem(id="x", row=0, prompt="p", images=[b"", b""], pose_keypoints=keypoints)
    control = np.asarray(pose_control(item, chosen, (32, 32)))
    assert control.shape == (32, 32, 3) and control[14:18, 14:18].max() > 0 and control[:4, :4].max() == 0
    blank = pose_control(TrainItem(id="y", row=0, prompt="p", images=[]), chosen, (32, 32))
    assert np.asarray(blank).max() == 0
    with pytest.raises(ValueError, match="jpg_0: undecodable image bytes"):
        decode_image(b"not an image", "jpg_0")


def test_sft_items_use_the_planner_prompt_and_report_missing_images(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(png(1))
    records = [
        {"image_path": "a.png", "content_description": "A man sits. He faces left.", "composition_analysis": "Soft."},
        {"image_path": "b.png", "content_description": "A woman.", "composition_analysis": ""},
    ]
    (tmp_path / "train.json").write_text(json.dumps(records))
    cfg = load_config(overrides={"planner": {"trigger_word": "AES_COMP"}})
    items = read_sft_items(tmp_path / "train.json", tmp_path / "images", cfg)
    from portraitcraft.agents.planner import Planner

    spec = Track2Spec(image_path="a.png", content="A man sits. He faces left.", composition="Soft.")
    expected = Planner.from_config(cfg).plan(spec).prompt  # exactly what generation would prompt with
    (item,) = items.items
    assert item.prompt == expected and item.prompt.startswith("AES_COMP, ") and item.images == [png(1)]
    assert items.skipped == 1 and "b.png" in str(items.problems[0]) and "not found" in str(items.problems[0])


def test_dpo_terms_hand_computed() -> None:
    torch = pytest.importorskip("torch")
    from portraitcraft.train.objectives import dpo_terms

    e_policy = torch.tensor([0.10, 0.20, 0.30, 0.10])  # chosen 0.10, 0.20; rejected 0.30, 0.10
    e_ref = torch.tensor([0.12, 0.20, 0.28, 0.10])
    p = torch.tensor([1.0, 0.5])
    loss, z = dpo_terms(e_policy, e_ref, p, beta=10.0, label_mode="soft")
    z0 = -5.0 * ((0.10 - 0.12) - (0.30 - 0.28))  # = 0.2
    assert z.tolist() == pytest.approx([z0, 0.0], abs=1e-6)
    sig = 1 / (1 + math.exp(-z0))
    assert loss.tolist() == pytest.approx([-math.log(sig), math.log(2)], abs=1e-6)
    hard, _ = dpo_terms(e_policy, e_ref, torch.tensor([0.7, 0.7]), beta=10.0, label_mode="hard")
    assert hard[0].item() == pytest.approx(-math.log(sig), abs=1e-6)
    soft, _ = dpo_terms(e_policy, e_ref, torch.tensor([0.7, 0.7]), beta=10.0, label_mode="soft")
    assert soft[0].item() == pytest.approx(-(0.7 * math.log(sig) + 0.3 * math.log(1 - sig)), abs=1e-6)


def test_flow_convention_matches_the_scheduler() -> None:
    torch = pytest.importorskip("torch")
    from diffusers import FlowMatchEulerDiscreteScheduler

    from portraitcraft.train.objectives import add_noise

    scheduler = FlowMatchEulerDiscreteScheduler()
    scheduler.set_timesteps(4)
    x0, noise = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    t = scheduler.timesteps[1:2]
    sigma = scheduler.sigmas[1:2]
    noisy = add_noise(x0, noise, sigma)
    assert torch.allclose(noisy, scheduler.scale_noise(x0, t, noise), atol=1e-6)
    # the Euler step with the exact target velocity (noise - x0) from sigma to 0 lands on x0
    scheduler._step_index = None
    scheduler._init_step_index(t)
    scheduler.sigmas = torch.tensor([float(sigma), 0.0])
    scheduler._step_index = 0
    out = scheduler.step(noise - x0, t, noisy, return_dict=False)[0]
    assert torch.allclose(out, x0, atol=1e-5)


def test_reads_what_the_pairs_export_writes(tmp_path: Path) -> None:
    """tools.pairs_export's pickapic parquet -> read_pairs, with the keypoints as a {name: [x, y, s]} map. (Its
    JSONL + images layout is not read here: it writes a pair's chosen and rejected image to the same file.)"""
    from portraitcraft.tools.pairs_export import export_pairs
    from portraitcraft.tools.pose_render import COCO17_NAMES

    run = tmp_path / "run"
    (run / "items").mkdir(parents=True)
    rows = []
    for i in range(2):
        (run / "items" / f"c{i}.png").write_bytes(png(i))
        (run / "items" / f"r{i}.png").write_bytes(png(50 + i))
        rows.append({"id": f"it{i}", "prompt": f"prompt {i}", "chosen": f"items/c{i}.png",
                     "rejected": f"items/r{i}.png", "label": 0.8 if i else 1.0})
    (run / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    keypoints = {name: [20.0, 10.0 + k, 0.9] for k, name in enumerate(COCO17_NAMES)}

    def pose(image: Image.Image) -> tuple[dict, bytes | None, dict]:
        return keypoints, None, {}

    for fmt, name in (("pickapic", "pairs.parquet"),):
        export_pairs([run], tmp_path / fmt, fmt=fmt, pose_fn=pose, content_margin=None)
        pairs = read_pairs(tmp_path / fmt / name)
        assert pairs.skipped == 0, pairs.problems
        first, second = sorted(pairs.items, key=lambda item: item.id)
        assert first.id == "it0" and first.images == [png(0), png(50)] and first.p_chosen == 1.0
        assert first.prompt == "prompt 0"
        assert second.p_chosen == pytest.approx(0.8)
        control = np.asarray(pose_control(second, Image.new("RGB", (40, 40)), (32, 32)))
        assert control.max() > 0  # the skeleton is drawn from the exported keypoints
