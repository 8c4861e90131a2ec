"""Pairs export: every format round trips, filters drop what they should, bad rows are named and skipped."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from portraitcraft.tools.pairs_export import ExportReport, PairsError, export_pairs, read_pairs

KEYPOINTS = {"nose": [10.0, 12.0, 0.9], "left_shoulder": [20.0, 30.0, 0.8]}
PROMPT_A = ("Generate an image based on the following description.\n\n[Content]\nA dancer in a red dress.\n\n"
            "[Composition]\nShe stands on the left third line, facing right, with open space on the right.")


def _fake_pose(image: Image.Image) -> tuple[dict, bytes, dict]:
    """Stands in for the vision models: a pose that depends on the image (its mean brightness)."""
    buffer = io.BytesIO()
    Image.new("RGB", image.size).save(buffer, format="PNG")
    return dict(KEYPOINTS), buffer.getvalue(), {"mean": float(np.asarray(image).mean())}


def _image(seed: int, size: tuple[int, int] = (48, 64)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    for name, seed in (("a0", 0), ("a1", 1), ("b0", 2), ("b1", 3)):
        (run / "items").mkdir(parents=True, exist_ok=True)
        _image(seed).save(run / "items" / f"{name}.png")
    _image(0).save(run / "items" / "a0_copy.png")
    rows = [
        {"id": "a", "prompt": PROMPT_A, "chosen": "items/a1.png", "rejected": "items/a0.png",
         "rules_fired": ["horizontal"], "chosen_round": 1, "rejected_round": 0},
        {"id": "b", "prompt": "a man facing right", "chosen": "items/b1.png", "rejected": "items/b0.png",
         "label": 0.8, "source": "group", "chosen_content": 70, "rejected_content": 72},
        {"id": "same", "prompt": "identical images", "chosen": "items/a0_copy.png", "rejected": "items/a0.png"},
        {"id": "judged-worse", "prompt": "content got worse", "chosen": "items/b1.png", "rejected": "items/b0.png",
         "chosen_content": 40, "rejected_content": 80},
        {"id": "gone", "prompt": "missing image", "chosen": "items/nope.png", "rejected": "items/a0.png"},
        {"id": "escape", "prompt": "outside", "chosen": "../outside.png", "rejected": "items/a0.png"},
        {"id": "nocap", "prompt": "", "chosen": "items/a1.png", "rejected": "items/a0.png"},
    ]
    _image(9).save(run.parent / "outside.png")
    (run / "pairs.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n{broken\n")
    return run


def test_pickapic_round_trip_with_datasets_and_pyarrow(run_dir: Path, tmp_path: Path) -> None:
    import pyarrow.parquet as pq
    from datasets import load_dataset

    report = export_pairs([run_dir], tmp_path / "out", fmt="pickapic", pose_fn=_fake_pose)
    assert (report.read, report.written) == (8, 2)
    assert report.near_identical == 1 and report.content_margin == 1
    problems = " | ".join(report.skipped)
    for needle in ("(gone): chosen image missing", "(escape): chosen image missing", "prompt", ":8: "):
        assert needle in problems
    table = pq.read_table(tmp_path / "out" / "pairs.parquet").to_pylist()
    assert [r["item_id"] for r in table] == ["a", "b"]
    assert [r["label_0"] for r in table] == [1.0, 0.8]
    assert table[1]["label_1"] == pytest.approx(0.2)
    chosen = Image.open(io.BytesIO(table[0]["jpg_0"]))
    assert np.array_equal(np.asarray(chosen.convert("RGB")), np.asarray(_image(1)))
    assert json.loads(table[0]["pose_keypoints"]) == KEYPOINTS
    assert json.loads(table[0]["rules_fired"]) == ["horizontal"]
    provenance = json.loads(table[0]["provenance"])
    assert provenance["chosen_round"] == 1 and set(provenance["features"]) == {"chosen", "rejected"}
    ds = load_dataset("parquet", data_files=str(tmp_path / "out" / "pairs.parquet"), split="train",
                      cache_dir=str(tmp_path / "hf"))
    assert ds.num_rows == 2 and ds[1]["caption"] == "a man facing right"


@pytest.mark.parametrize("fmt", ["jsonl", "diffsynth", "kohya", "flowfactory-prompts"])
def test_folder_formats(run_dir: Path, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / fmt
    report = export_pairs([run_dir], out, fmt=fmt, pose_fn=_fake_pose)
    assert report.written == 2
    if fmt == "jsonl":
        rows = [json.loads(line) for line in (out / "pairs.jsonl").read_text().splitlines()]
        assert [r["id"] for r in rows] == ["a", "b"]
        assert np.array_equal(np.asarray(Image.open(out / rows[0]["chosen"])), np.asarray(_image(1)))
        assert np.array_equal(np.asarray(Image.open(out / rows[0]["rejected"])), np.asarray(_image(0)))
        assert (out / rows[0]["pose_image"]).is_file() and rows[1]["label"] == 0.8
    elif fmt == "diffsynth":
        rows = list(csv.DictReader((out / "metadata.csv").open()))
        assert list(rows[0]) == ["prompt", "image", "lose_image"]
        assert np.array_equal(np.asarray(Image.open(out / rows[0]["lose_image"])), np.asarray(_image(0)))
        assert np.array_equal(np.asarray(Image.open(out / rows[0]["image"])), np.asarray(_image(1)))
    elif fmt == "kohya":
        assert sorted(p.name for p in (out / "w").iterdir()) == sorted(p.name for p in (out / "l").iterdir())
        assert (out / "w" / "000001.caption").read_text() == "a man facing right\n"
        assert sorted(Path(p).relative_to(out).as_posix() for p in report.images) == [
            "l/000000.png", "l/000001.png", "w/000000.png", "w/000001.png"]
    else:
        assert [json.loads(x)["prompt"] for x in (out / "train.jsonl").read_text().splitlines()] == [
            PROMPT_A, "a man facing right"]


def test_margin_none_keeps_judged_pairs(run_dir: Path, tmp_path: Path) -> None:
    report = export_pairs([run_dir], tmp_path / "o", fmt="jsonl", content_margin=None, pose_fn=None)
    assert report.written == 3 and report.content_margin == 0


def test_not_a_run_folder_and_unknown_format(tmp_path: Path, run_dir: Path) -> None:
    with pytest.raises(PairsError, match=r"no pairs\.jsonl"):
        read_pairs([tmp_path / "empty"], ExportReport())
    with pytest.raises(PairsError, match="unknown pairs format 'tar'"):
        export_pairs([run_dir], tmp_path / "o", fmt="tar")


def test_cli_exit_codes(run_dir: Path, tmp_path: Path) -> None:
    from console_script import run_script_many

    empty = tmp_path / "emptyrun"
    empty.mkdir()
    (empty / "pairs.jsonl").write_text("")
    ok, none, missing = run_script_many([
        ["pairs", "export", run_dir, "--format", "jsonl", "--no-pose", "--out", tmp_path / "cli", "--json"],
        ["pairs", "export", empty, "--no-pose", "--out", tmp_path / "x"],
        ["pairs", "export", tmp_path / "nothing-here", "--no-pose", "--out", tmp_path / "y"]], timeout=120)
    assert ok.code == 0, ok.stderr
    assert json.loads(ok.stdout)["written"] == 2
    assert none.code == 1
    assert missing.code == 2 and "no pairs.jsonl" in missing.stderr


# ---------------------------------------------------------------------------------------------- Flow-Factory V2
# Written from Flow-Factory's documented V2 schema (X-GenGroup/Flow-Factory guidance/datasets.md, "Offline V2
# records", and src/flow_factory/data_utils/schema.py): strict, frozen, unknown keys forbidden, no NaN/inf.


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class V2Image(_Strict):
    type: Literal["image"]
    path: str = Field(min_length=1)
    slot: None = None  # input-only; an output candidate may not carry one


class V2Input(_Strict):
    prompt: str
    negative_prompt: str | None = None
    media: list[V2Image] = Field(default_factory=list)


class V2Candidate(_Strict):
    media: list[V2Image] = Field(min_length=1)


class V2Preference(_Strict):
    type: Literal["preference"]
    chosen: V2Candidate
    rejected: V2Candidate


class V2Record(_Strict):
    schema_version: Literal[2]
    input: V2Input
    supervision: V2Preference
    metadata: dict[str, JsonValue] = Field(default_factory=dict)


def test_flowfactory_rows_are_v2_preference_records(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ff"
    report = export_pairs([run_dir], out, fmt="flowfactory", pose_fn=_fake_pose)
    assert report.written == 2
    lines = (out / "train.jsonl").read_text(encoding="utf-8").split("\n")
    assert lines[-1] == "" and all(line.strip() for line in lines[:-1])  # Flow-Factory refuses blank lines
    records = [V2Record.model_validate(json.loads(line)) for line in lines[:-1]]
    assert [r.input.prompt for r in records] == [PROMPT_A, "a man facing right"]
    for record in records:
        for side in (record.supervision.chosen, record.supervision.rejected):
            (media,) = side.media
            assert not Path(media.path).is_absolute() and (out / media.path).is_file()
    first = records[0].supervision
    assert np.array_equal(np.asarray(Image.open(out / first.chosen.media[0].path)), np.asarray(_image(1)))
    assert np.array_equal(np.asarray(Image.open(out / first.rejected.media[0].path)), np.asarray(_image(0)))
    assert records[1].metadata["label"] == 0.8 and records[0].metadata["id"] == "a"
    assert records[0].metadata["pose_keypoints"] == KEYPOINTS


def test_flowfactory_swaps_a_pair_whose_rejected_side_is_preferred(run_dir: Path, tmp_path: Path) -> None:
    rows = [json.loads(line) for line in (run_dir / "pairs.jsonl").read_text().splitlines()[:1]]
    rows[0]["label"] = 0.25
    (run_dir / "pairs.jsonl").write_text(json.dumps(rows[0]) + "\n")
    export_pairs([run_dir], tmp_path / "ff", fmt="flowfactory", pose_fn=None)
    record = V2Record.model_validate_json((tmp_path / "ff" / "train.jsonl").read_text().strip())
    chosen = np.asarray(Image.open(tmp_path / "ff" / record.supervision.chosen.media[0].path))
    assert np.array_equal(chosen, np.asarray(_image(0))) and record.metadata["label"] == 0.75


def test_kohya_captions_are_one_line_with_the_composition(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "k"
    export_pairs([run_dir], out, fmt="kohya", pose_fn=None)
    for side in ("w", "l"):
        caption = (out / side / "000000.caption").read_text(encoding="utf-8")
        assert caption.count("\n") == 1 and caption.endswith("\n")
        first_line = caption.splitlines()[0]  # what sd-scripts' read_caption keeps
        assert "left third line, facing right" in first_line and "A dancer in a red dress." in first_line


def test_hard_labels_drop_soft_pairs(run_dir: Path, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    report = export_pairs([run_dir], tmp_path / "p", fmt="pickapic", hard_labels=True, pose_fn=None)
    assert report.written == 1 and report.soft_label == 1
    table = pq.read_table(tmp_path / "p" / "pairs.parquet").to_pylist()
    assert [(r["item_id"], r["label_0"]) for r in table] == [("a", 1.0)]


def test_non_empty_out_is_refused_or_replaced_whole(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "k"
    export_pairs([run_dir], out, fmt="kohya", pose_fn=None)
    (out / "w" / "000007.png").write_bytes((out / "w" / "000000.png").read_bytes())  # a stale pair
    with pytest.raises(PairsError, match="not empty"):
        export_pairs([run_dir], out, fmt="kohya", pose_fn=None)
    report = export_pairs([run_dir], out, fmt="kohya", replace=True, pose_fn=None)
    assert report.replaced and report.written == 2
    assert sorted(p.name for p in (out / "w").glob("*.png")) == ["000000.png", "000001.png"]
    assert not list(tmp_path.glob(".k.*"))  # no staging or old folder left behind
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(PairsError, match="not an earlier pairs export"):
        export_pairs([run_dir], mine, fmt="jsonl", replace=True, pose_fn=None)
    assert (mine / "notes.txt").read_text() == "keep me"
    (tmp_path / "file").write_text("x")
    with pytest.raises(PairsError, match="not a folder"):
        export_pairs([run_dir], tmp_path / "file", fmt="jsonl", pose_fn=None)


def test_cli_refuses_a_non_empty_out(run_dir: Path, tmp_path: Path) -> None:
    from console_script import run_script_many

    out = tmp_path / "old"
    out.mkdir()
    (out / "train.jsonl").write_text("{}\n")
    refused, replaced = run_script_many([
        ["pairs", "export", run_dir, "--format", "flowfactory", "--no-pose", "--out", out],
        ["pairs", "export", run_dir, "--format", "flowfactory", "--no-pose", "--out", tmp_path / "new", "--json"],
    ], timeout=120)
    assert refused.code == 2 and "not empty" in refused.stderr
    assert (out / "train.jsonl").read_text() == "{}\n"
    assert replaced.code == 0, replaced.stderr
    assert len(json.loads(replaced.stdout)["images"]) == 4
