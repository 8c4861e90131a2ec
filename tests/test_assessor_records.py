"""`train assessor` records: what `understand export-sft --format openai` writes is read, bad records are skipped
and counted by reason, images outside the allowed folders are refused, none left is exit 2 (no torch needed)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cli_run import run_cli

from portraitcraft.agents.assessor_sft import sft_record
from portraitcraft.config import AssessorConfig, load_config
from portraitcraft.data import load
from portraitcraft.errors import DataError
from portraitcraft.train.assessor_data import SKIP_KINDS, read_records, split_records

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
IMAGES = EXAMPLES / "images"


def _items() -> list:
    return list(load(EXAMPLES / "track_1_train.json", "track1_train", strict=False).items)


def _image_of(name: str) -> Path:
    found = [p for p in IMAGES.rglob(Path(name).name)]
    assert found, name
    return found[0].resolve()


def _write(folder: Path, records: list[dict | str], name: str = "train.jsonl") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def _exported(cfg: AssessorConfig, folder: Path) -> list[dict]:
    return [sft_record(item, str(_image_of(item.image_path)), cfg, "openai") for item in _items()]


def test_export_sft_folder_reads_whole_with_the_images_folder(tmp_path, capsys, monkeypatch) -> None:
    out = tmp_path / "rec"
    done = run_cli(["understand", "export-sft", str(EXAMPLES / "track_1_train.json"), "--images", str(IMAGES),
                    "--format", "openai", "--out", str(out)], capsys, monkeypatch)
    assert done.exit_code == 0, done.output
    found = read_records(out, AssessorConfig(), image_roots=[IMAGES])
    assert len(found.records) == len(_items()) == 6
    assert found.skipped == [] and found.prompt_mismatch == 0
    assert all(r.image.is_relative_to(IMAGES.resolve()) for r in found.records)
    first = json.loads((out / "train.jsonl").read_text().splitlines()[0])
    assert found.records[0].answer == first["messages"][2]["content"]
    assert found.records[0].user == first["messages"][1]["content"][1]["text"]

    # Without --images, the export's absolute image paths lie outside the records' folder: every one refused.
    alone = read_records(out, AssessorConfig())
    assert alone.records == [] and alone.skip_counts()["outside"] == 6
    assert "pass --images DIR" in alone.skipped[0].problem


def test_each_bad_record_is_skipped_with_its_reason(tmp_path) -> None:
    cfg = AssessorConfig()
    good = _exported(cfg, tmp_path)
    rec = tmp_path / "rec"
    rec.mkdir()
    inside = rec / "img" / "a.jpg"
    inside.parent.mkdir()
    shutil.copy(_image_of(_items()[0].image_path), inside)
    elsewhere = tmp_path / "elsewhere" / "b.jpg"
    elsewhere.parent.mkdir()
    shutil.copy(_image_of(_items()[1].image_path), elsewhere)
    (rec / "link.jpg").symlink_to(elsewhere)  # a link leading out of every allowed folder
    (rec / "notes.jpg").write_text("not an image")

    def with_image(record: dict, url: str) -> dict:
        record = json.loads(json.dumps(record))
        record["messages"][1]["content"][0]["image_url"]["url"] = url
        return record

    def with_answer(record: dict, answer: dict) -> dict:
        record = json.loads(json.dumps(record))
        record["messages"][2]["content"] = json.dumps(answer)
        return record

    answer = json.loads(good[0]["messages"][2]["content"])
    too_high = {**answer, "criteria": {**answer["criteria"], "Sharpness": 12.0}}
    as_levels = {**answer, "criteria": dict.fromkeys(answer["criteria"], "Good")}
    no_image = json.loads(json.dumps(good[0]))
    no_image["messages"][1]["content"] = no_image["messages"][1]["content"][1]["text"]
    records = [
        with_image(good[0], "img/a.jpg"),                      # relative to the records file: used
        with_image(good[1], f"file://{inside}"),               # a file:// URL inside: used
        good[2],                                               # absolute, in the --images folder: used
        with_image(good[3], "link.jpg"),                       # outside (symbolic link)
        with_image(good[4], "../../etc/passwd"),               # missing or outside: never used
        with_image(good[5], str(rec / "gone.jpg")),            # missing_image
        with_image(good[0], "notes.jpg"),                      # bad_image
        with_image(good[0], "https://example.com/a.jpg"),      # schema: not local
        with_answer(good[1], too_high),                        # schema: score out of range
        with_answer(good[1], as_levels),                       # schema: levels where scores are asked
        no_image,                                              # schema: no image part
        '{"messages": [',                                      # malformed
        "[1, 2]",                                              # malformed
    ]
    _write(rec, records)
    found = read_records(rec, cfg, image_roots=[IMAGES])
    assert [r.where for r in found.records] == ["train.jsonl:1", "train.jsonl:2", "train.jsonl:3"]
    counts = found.skip_counts()
    assert set(counts) == set(SKIP_KINDS)
    assert counts["outside"] + counts["missing_image"] == 3 and counts["outside"] >= 1
    assert counts == {**counts, "bad_image": 1, "schema": 4, "malformed": 2}
    by_line = {s.where: s for s in found.skipped}
    assert by_line["train.jsonl:4"].kind == "outside"
    assert by_line["train.jsonl:6"].kind == "missing_image"
    assert "Sharpness" in by_line["train.jsonl:9"].problem and "output=scores" in by_line["train.jsonl:9"].problem
    assert "https" in by_line["train.jsonl:8"].problem

    # Levels records train a levels assessor.
    levels = AssessorConfig(output="levels")
    assert [r.where for r in read_records(rec, levels, image_roots=[IMAGES]).records] == ["train.jsonl:10"]


def test_a_record_with_another_prompt_is_counted(tmp_path) -> None:
    cfg = AssessorConfig()
    good = _exported(cfg, tmp_path)
    changed = json.loads(json.dumps(good[0]))
    changed["messages"][1]["content"][1]["text"] += " Be strict."
    _write(tmp_path / "rec", [good[0], changed])
    found = read_records(tmp_path / "rec", cfg, image_roots=[IMAGES])
    assert len(found.records) == 2 and found.prompt_mismatch == 1


def test_folder_without_records_and_missing_file_are_errors(tmp_path) -> None:
    with pytest.raises(DataError, match=r"no \*\.jsonl records"):
        read_records(tmp_path, AssessorConfig())
    with pytest.raises(DataError, match="does not exist"):
        read_records(tmp_path / "nope.jsonl", AssessorConfig())


def test_split_is_seeded_order_free_and_keeps_one_for_eval(tmp_path) -> None:
    cfg = AssessorConfig()
    _write(tmp_path / "rec", _exported(cfg, tmp_path))
    records = read_records(tmp_path / "rec", cfg, image_roots=[IMAGES]).records
    train, held = split_records(records, 0.05, 256, seed=0)
    assert len(held) == 1 and len(train) == 5  # 5 % of 6 rounds to 0: one is still held out
    again_train, again_held = split_records(list(reversed(records)), 0.05, 256, seed=0)
    assert again_held == held and sorted(r.where for r in again_train) == sorted(r.where for r in train)
    assert split_records(records, 0.0, 256, seed=0) == (records, [])
    assert split_records(records[:1], 0.5, 256, seed=0) == (records[:1], [])
    assert len(split_records(records, 0.9, 2, seed=0)[1]) == 2


def test_cli_with_no_usable_record_exits_2_naming_the_reasons(tmp_path, capsys, monkeypatch) -> None:
    cfg = load_config().assessor
    records = _exported(cfg, tmp_path)
    _write(tmp_path / "rec", records)
    done = run_cli(["train", "assessor", str(tmp_path / "rec"), "--out", str(tmp_path / "run"), "--base",
                    str(tmp_path / "no-model")], capsys, monkeypatch)
    assert done.exit_code == 2, done.output
    assert "no usable record" in done.stderr and "outside 6" in done.stderr
    assert not (tmp_path / "run").exists()


def test_cli_with_a_base_that_cannot_load_exits_2(tmp_path, capsys, monkeypatch) -> None:
    pytest.importorskip("trl")
    cfg = load_config().assessor
    _write(tmp_path / "rec", _exported(cfg, tmp_path))
    done = run_cli(["train", "assessor", str(tmp_path / "rec"), "--out", str(tmp_path / "run"), "--images",
                    str(IMAGES), "--base", str(tmp_path / "no-model")], capsys, monkeypatch)
    assert done.exit_code == 2, done.output
    assert "no-model" in done.stderr and "cannot load" in done.stderr
