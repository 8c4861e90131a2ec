from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from portraitcraft.cli import app
from portraitcraft.data import (
    detect_kind,
    load_track1_test,
    load_track1_train,
    load_track2,
    read_records,
    resolve_image,
    validate_file,
)
from portraitcraft.errors import DataError
from portraitcraft.schemas import ATTRIBUTES

runner = CliRunner()


def test_loads_each_example_file(examples_dir: Path) -> None:
    train = load_track1_train(examples_dir / "track_1_train.json")
    assert len(train) == 6 and train[0].criteria["Sharpness"].score >= 0
    test = load_track1_test(examples_dir / "track_1_test.json")
    assert len(test) == 4 and all(t.is_placeholder for t in test)
    specs = load_track2(examples_dir / "track_2_train.json")
    assert len(specs) == 6 and specs[0].content and specs[0].composition
    assert len(load_track2(examples_dir / "track_2_test.json")) == 4
    adhoc = load_track2(examples_dir / "descriptions.txt")
    assert len(adhoc) == 2 and adhoc[0].image_path == "prompt_00000.png"


def test_jsonl_and_zip_read_the_same_items(examples_dir: Path, tmp_path: Path) -> None:
    records = read_records(examples_dir / "track_2_train.json")
    jsonl = tmp_path / "t2.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    assert read_records(jsonl) == records
    assert detect_kind(records) == "track2"


def test_images_resolve_by_basename_in_shards(examples_dir: Path) -> None:
    item = load_track1_train(examples_dir / "track_1_train.json")[1]
    found = resolve_image(examples_dir / "images", "some/prefix/" + item.image_path)
    assert found is not None and found.parent.name == "images_00"
    assert resolve_image(examples_dir / "images", "nope.jpg") is None


def _write(tmp_path: Path, data, name: str = "f.json") -> Path:
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else json.dumps(data))
    return p


def _train_item(path: str = "a.jpg", **kw) -> dict:
    item = {"image_path": path, "criteria": {a: {"score": 6.0, "reason": "r"} for a in ATTRIBUTES}, "total_score": 50}
    item.update(kw)
    return item


def _problems(path: Path, images: Path | None = None) -> list[str]:
    return [str(p) for p in validate_file(path, images).problems]


def test_malformed_json_and_non_array(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"malformed JSON at line 1"):
        validate_file(_write(tmp_path, '[{"image_path": '))
    with pytest.raises(DataError, match=r"expected a JSON array of items, got a JSON dict"):
        validate_file(_write(tmp_path, {"image_path": "a.jpg"}))
    with pytest.raises(DataError, match="file is empty"):
        validate_file(_write(tmp_path, ""))


def test_missing_and_wrongly_typed_fields(tmp_path: Path) -> None:
    missing = _train_item()
    del missing["total_score"]
    bad_type = _train_item("b.jpg", total_score="high")
    bad_score = _train_item("c.jpg")
    bad_score["criteria"]["Sharpness"]["score"] = 12
    probs = _problems(_write(tmp_path, [missing, bad_type, bad_score]))
    assert "item 0 (a.jpg): total_score: missing field" in probs
    assert any(p.startswith("item 1 (b.jpg): total_score:") and "number" in p for p in probs)
    assert any(p.startswith("item 2 (c.jpg): criteria.Sharpness.score:") and "10" in p for p in probs)


def test_unknown_attribute(tmp_path: Path) -> None:
    item = _train_item()
    item["criteria"]["Colour Harmony"] = item["criteria"].pop("Color Harmony")
    (msg,) = _problems(_write(tmp_path, [item]))
    assert msg.startswith("item 0 (a.jpg): criteria:") and "unknown attribute(s) 'Colour Harmony'" in msg


def test_level_outside_abc(tmp_path: Path, examples_dir: Path) -> None:
    records = read_records(examples_dir / "track_1_test_labels.json")
    records[2]["criteria"]["Sharpness"]["level"] = "E"
    records[3]["answer"] = "F"
    probs = _problems(_write(tmp_path, records))
    assert any(p.startswith(f"item 2 ({records[2]['image_path']}): criteria.Sharpness.level:")
               and "'E' is not one of A, B, C" in p for p in probs)
    assert any(p.startswith("item 3 (") and "answer 'F'" in p for p in probs)


def test_duplicate_image_path(tmp_path: Path) -> None:
    (msg,) = _problems(_write(tmp_path, [_train_item("x.jpg"), _train_item("dir/x.jpg")]))
    assert msg == "item 1 (dir/x.jpg): image_path: duplicate of item 0"


def test_missing_corrupt_and_empty_images(tmp_path: Path, examples_dir: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(next((examples_dir / "images").glob("*.jpg")), images / "good.jpg")
    (images / "empty.jpg").write_bytes(b"")
    (images / "corrupt.jpg").write_bytes(b"not an image at all")
    truncated = (images / "good.jpg").read_bytes()
    (images / "trunc.jpg").write_bytes(truncated[: len(truncated) // 2])
    items = [_train_item(n) for n in ("good.jpg", "missing.jpg", "empty.jpg", "corrupt.jpg", "trunc.jpg")]
    report = validate_file(_write(tmp_path, items), images)
    probs = [str(p) for p in report.problems]
    assert probs[0] == f"item 1 (missing.jpg): image: image not found under {images}"
    assert probs[1] == "item 2 (empty.jpg): image: empty.jpg: image file is empty (0 bytes)"
    assert probs[2].startswith("item 3 (corrupt.jpg): image: corrupt.jpg: image file is corrupt")
    assert probs[3].startswith("item 4 (trunc.jpg): image: trunc.jpg: image file is corrupt or truncated")
    assert (report.images_checked, report.images_missing, report.images_bad) == (5, 1, 3)


def test_cli_validate_exit_codes_and_listing(tmp_path: Path, examples_dir: Path) -> None:
    ok = runner.invoke(app, ["data", "validate", str(examples_dir / "track_1_train.json"),
                             "--images", str(examples_dir / "images"), "--json"])
    assert ok.exit_code == 0, ok.output
    report = json.loads(ok.stdout)
    assert report["kind"] == "track1_train" and report["n_valid"] == 6 and report["valid"] is True
    assert sum(report["level_balance"].values()) == 6 * 13
    bad = _write(tmp_path, [_train_item("a.jpg"), _train_item("a.jpg"), 5])
    res = runner.invoke(app, ["data", "validate", str(bad)])
    assert res.exit_code == 2
    assert "item 1 (a.jpg): image_path: duplicate of item 0" in res.output
    assert "item 2 (?): item: expected a JSON object, got int" in res.output


def test_a_malformed_jsonl_line_is_one_items_problem(tmp_path: Path) -> None:
    good = json.dumps(_train_item("a.jpg"))
    path = _write(tmp_path, f"{good}\n{{\"image_path\": \"b.jpg\", \n{json.dumps(_train_item('c.jpg'))}\n",
                  "items.jsonl")
    report = validate_file(path)
    assert report.kind == "track1_train" and report.n_valid == 2
    assert [str(p) for p in report.problems] == [
        "item 1 (?): item: malformed JSON on line 2: Expecting property name enclosed in double quotes"]
    with pytest.raises(DataError, match="no line is valid JSON"):
        read_records(_write(tmp_path, "{oops\n{nope\n", "bad.jsonl"))
