from __future__ import annotations

import json
import random
import zipfile
from pathlib import Path

import pytest
from cli_run import run_cli
from PIL import Image

from portraitcraft.data import load_track1_test, load_track2
from portraitcraft.errors import InputError
from portraitcraft.schemas import ATTRIBUTES, Track1Prediction
from portraitcraft.submission import (
    TRACK1_MEMBER,
    read_track1_submission,
    write_track1_submission,
    write_track2_submission,
)


def _preds(template, seed: int = 0) -> list[Track1Prediction]:
    rng = random.Random(seed)
    return [Track1Prediction(image_path="shard/" + t.image_path,
                             levels={a: rng.choice("ABC") for a in ATTRIBUTES},
                             total_score=rng.uniform(0, 100), answer=rng.choice("ABCD")) for t in template]


def test_track1_round_trip(examples_dir: Path, tmp_path: Path) -> None:
    template = load_track1_test(examples_dir / "track_1_test.json")
    preds = _preds(template)
    out = tmp_path / "sub.zip"
    report = write_track1_submission(template, list(reversed(preds)), out)
    assert report.n_items == 4 and report.n_fallback == 0
    with zipfile.ZipFile(out) as zf:
        assert zf.namelist() == [TRACK1_MEMBER]
    back = read_track1_submission(out)
    assert [r["image_path"] for r in back] == [t.image_path for t in template]  # template order
    raw = json.loads((examples_dir / "track_1_test.json").read_text())
    for rec, tpl, pred in zip(back, raw, preds, strict=True):
        assert list(rec) == ["image_path", "criteria", "total_score", "question", "options", "answer"]
        assert rec["question"] == tpl["question"] and rec["options"] == tpl["options"]
        assert list(rec["criteria"]) == list(ATTRIBUTES)
        assert {c["level"] for c in rec["criteria"].values()} <= {"A", "B", "C"}
        assert rec["criteria"] == {a: {"level": pred.levels[a].code} for a in ATTRIBUTES}
        assert type(rec["total_score"]) is int and rec["total_score"] == round(pred.total_score)
        assert rec["answer"] == pred.answer
    assert "NOT_RES" not in json.dumps(back)


def test_track1_refuses_missing_predictions(examples_dir: Path, tmp_path: Path) -> None:
    template = load_track1_test(examples_dir / "track_1_test.json")
    preds = _preds(template)[:2]
    with pytest.raises(InputError, match=r"2 of 4 test items have no prediction: .*" + template[2].image_path):
        write_track1_submission(template, preds, tmp_path / "s.zip")
    assert not (tmp_path / "s.zip").exists()
    report = write_track1_submission(template, preds, tmp_path / "s.zip", allow_missing=True)
    assert report.n_fallback == 2 and report.fallback_ids == [t.image_path for t in template[2:]]
    back = read_track1_submission(tmp_path / "s.zip")
    assert len(back) == 4 and back[3]["answer"] == "A"
    assert {c["level"] for c in back[3]["criteria"].values()} == {"B"}
    assert back[3]["total_score"] == round(sorted(p.total_score for p in preds)[0] / 2
                                           + sorted(p.total_score for p in preds)[1] / 2)


def test_track2_submission_folder_and_flat_zip(examples_dir: Path, tmp_path: Path) -> None:
    specs = load_track2(examples_dir / "track_2_test.json")
    images = {}
    for i, s in enumerate(specs):
        p = tmp_path / f"final_{i}.png"
        Image.new("RGB", (32, 48), (i * 40, 10, 10)).save(p)
        images[s.id] = p
    sub = write_track2_submission(specs, images, tmp_path / "run")
    assert sub.n_images == 4
    with zipfile.ZipFile(sub.zip_path) as zf:
        assert sorted(zf.namelist()) == sorted(s.image_path for s in specs)
    with Image.open(sub.folder / specs[0].image_path) as im:
        assert im.format == "JPEG" and im.size == (32, 48)
    del images[specs[1].id]
    with pytest.raises(InputError, match=specs[1].image_path):
        write_track2_submission(specs, images, tmp_path / "run2")


def test_cli_submit_track1_lists_bad_predictions_and_honours_allow_missing(
    examples_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    template = json.loads((examples_dir / "track_1_test.json").read_text())
    preds = [{"image_path": t["image_path"], "criteria": {a: {"level": "C"} for a in ATTRIBUTES},
              "total_score": 61.6, "answer": "D"} for t in template]
    preds[1]["criteria"]["Sharpness"]["level"] = "NOT_RES"
    preds[2]["answer"] = "E"
    path = tmp_path / "preds.jsonl"
    path.write_text("\n".join(json.dumps(p) for p in preds) + "\n")
    out = tmp_path / "sub.zip"
    args = ["data", "submit", "track1", str(examples_dir / "track_1_test.json"), str(path), "--out", str(out)]
    res = run_cli(args, capsys, monkeypatch)
    assert res.exit_code == 2 and not out.exists()
    assert f"item 1 ({template[1]['image_path']}): levels.Sharpness: level 'NOT_RES' is not one of A, B, C" \
        in res.output
    assert f"item 2 ({template[2]['image_path']}): answer:" in res.output
    res = run_cli([*args, "--allow-missing", "--json"], capsys, monkeypatch)
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout[res.stdout.index("{"):])  # the bad items are listed first
    assert report["n_fallback"] == 2 and report["n_bad_predictions"] == 2
    assert report["filled_fields"] == {template[1]["image_path"]: ["criteria.Sharpness"],
                                       template[2]["image_path"]: ["answer"]}
    back = read_track1_submission(out)
    assert back[0]["total_score"] == 62 and back[0]["answer"] == "D"
    # repaired field by field: only the unusable field is filled, the rest of the prediction is kept
    assert back[1]["answer"] == "D" and back[1]["total_score"] == 62
    assert back[1]["criteria"]["Sharpness"] == {"level": "B"} and back[1]["criteria"]["Exposure Control"] == \
        {"level": "C"}
    assert back[2]["answer"] == "A" and set(c["level"] for c in back[2]["criteria"].values()) == {"C"}


def test_cli_submit_track2_finds_images_by_basename(
    examples_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    specs = load_track2(examples_dir / "track_2_test.json")
    images = tmp_path / "finals" / "nested"
    images.mkdir(parents=True)
    for s in specs[:3]:
        Image.new("RGB", (16, 16)).save(images / (Path(s.image_path).stem + ".png"))
    args = ["data", "submit", "track2", str(examples_dir / "track_2_test.json"), "--images", str(tmp_path / "finals"),
            "--out", str(tmp_path / "out")]
    res = run_cli(args, capsys, monkeypatch)
    assert res.exit_code == 2 and specs[3].image_path in res.output
    res = run_cli([*args, "--allow-missing", "--json"], capsys, monkeypatch)
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["n_images"] == 3 and report["missing"] == [specs[3].image_path]
    with zipfile.ZipFile(report["zip"]) as zf:
        assert sorted(zf.namelist()) == sorted(s.image_path for s in specs[:3])
