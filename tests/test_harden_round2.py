"""Issue 21 (harden round 2), through the INSTALLED console script: every case here failed on the code before
the fix (a hang, a traceback, a silent loss, a wrong exit code or a wrong file)."""

from __future__ import annotations

import json
import os
import signal
import stat
import statistics
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from console_script import ROOT, run_script, run_script_many

from portraitcraft.schemas import ATTRIBUTES

OFFLINE = ROOT / "configs" / "offline.toml"
FAST = ["--set", "critic.geometry=false", "--set", "critic.heuristics=false"]


def _write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def _t2(image_path: str) -> dict[str, str]:
    return {"image_path": image_path, "content_description": "A woman in a red coat on a quiet street.",
            "composition_analysis": "The subject stands on the left third of a vertical frame."}


def _assert_clean(run: Any) -> None:
    assert "Traceback" not in run.output, run.output


# ----------------------------------------------------------------------------------- 1: rule files bounded


def test_rule_files_are_read_bounded_and_problems_exit_2(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "zero.md").symlink_to("/dev/zero")  # used to drive RSS to 15 GB
    os.mkfifo(rules / "fifo.md")  # used to hang forever
    (rules / "[red]x.md").write_text("no front matter\n")
    runs = run_script_many([["rules", "lint", "--rules", rules], ["rules", "list", "--rules", rules],
                            ["generate", "--prompt", "a portrait", "--rules", rules, "--out", tmp_path / "run",
                             "--config", OFFLINE]], timeout=60)
    for run in runs:
        _assert_clean(run)
        assert run.code == 2, (run.args, run.code, run.output)
        assert "zero.md" in run.output and "fifo.md" in run.output and "not a regular file" in run.output
        assert "[red]x.md" in run.output  # rich markup no longer eats `[...]` in a path
    assert not (tmp_path / "run" / "results.jsonl").exists()  # refused before any work


# ------------------------------------------------------------------ 2, 11: duplicate ids, generate exit codes


def test_generate_refuses_duplicate_ids_before_any_work(tmp_path: Path) -> None:
    items = _write_json(tmp_path / "t2.json", [_t2("images_00/x.jpg"), _t2("x.jpg"), _t2("y.jpg"), _t2("y.png")])
    empty = tmp_path / "init"
    empty.mkdir()
    run = run_script("generate", items, "--config", OFFLINE, "--init-images", empty, "--out", tmp_path / "r", *FAST)
    _assert_clean(run)
    assert run.code == 2, run.output
    assert "2 item(s) share an id" in run.output
    assert "item 1 (x.jpg)" in run.output and "images_00/x.jpg" in run.output and "item 3 (y.png)" in run.output
    assert not (tmp_path / "r" / "results.jsonl").exists()


def _examples_t2(tmp_path: Path, examples_dir: Path, n: int) -> tuple[Path, list[dict[str, Any]]]:
    specs = json.loads((examples_dir / "track_2_test.json").read_text())[:n]
    return _write_json(tmp_path / "t2.json", specs), specs


def test_generate_exit_codes_follow_eval_track2(tmp_path: Path, examples_dir: Path) -> None:
    items, specs = _examples_t2(tmp_path, examples_dir, 2)
    empty, one = tmp_path / "empty", tmp_path / "one"
    empty.mkdir()
    one.mkdir()
    from PIL import Image

    Image.new("RGB", (96, 128), (120, 90, 60)).save(one / specs[0]["image_path"])
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    base = ["generate", items, "--config", OFFLINE, "--max-rounds", "0", *FAST]
    runs = run_script_many([
        [*base, "--init-images", empty, "--out", tmp_path / "none"],  # every item failed: 3 (was 0)
        [*base, "--init-images", one, "--out", tmp_path / "some", "--strict"],  # some failed + --strict: 4
        [*base, "--init-images", one, "--out", tmp_path / "some2", "--json"],  # some failed: 0
        [*base, "--init-images", one, "--out", a_file],  # --out is a file: 2, before any model call
        [*base, "--init-images", one, "--out", a_file / "sub"],  # --out under a file: 2
    ], timeout=180, parallel=3)
    for run in runs:
        _assert_clean(run)
    assert [r.code for r in runs] == [3, 4, 0, 2, 2], [(r.code, r.output[-400:]) for r in runs]
    assert "nothing finished: 2 of 2" in runs[0].output
    summary = json.loads(runs[2].stdout)
    assert summary["n_done"] == 1 and summary["n_failed"] == 1
    assert "is a file" in runs[3].output and "a_file is a file" in runs[4].output
    # the failed item says which init image problem it had
    rows = [json.loads(line) for line in (tmp_path / "none" / "results.jsonl").read_text().splitlines()]
    assert all("image not found under" in r["error"] for r in rows)
    # outputs chain: a run where no item needed a correction still has its (empty) pairs.jsonl
    assert (tmp_path / "none" / "pairs.jsonl").read_text() == ""


def test_generate_names_submission_files_exactly(tmp_path: Path) -> None:
    """Item 6: a unicode image_path became `n_.jpg-<hash>` (PNG bytes, no extension); a name no file can
    carry is now a named failure of that item only."""
    from PIL import Image

    uni, long_name = "портрет_ü.jpg", "n" * 300 + ".jpg"
    items = _write_json(tmp_path / "t2.json", [_t2(uni), _t2(long_name), _t2("w.webp")])
    init = tmp_path / "init"
    init.mkdir()
    Image.new("RGB", (96, 128), (120, 90, 60)).save(init / uni)
    Image.new("RGB", (96, 128), (60, 90, 120)).save(init / "w.webp")
    out = tmp_path / "run"
    run = run_script("generate", items, "--config", OFFLINE, "--init-images", init, "--max-rounds", "0",
                     "--out", out, "--json", *FAST, timeout=180)
    _assert_clean(run)
    assert run.code == 0, run.output
    summary = json.loads(run.stdout)
    assert summary["n_items"] == 3 and summary["n_done"] == 2 and summary["n_failed"] == 1
    assert sorted(p.name for p in (out / "submission").iterdir()) == sorted([uni, "w.webp"])
    assert (out / "submission" / uni).read_bytes()[:3] == b"\xff\xd8\xff"
    assert (out / "submission" / "w.webp").read_bytes()[8:12] == b"WEBP"
    rows = {r["image_path"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    assert "longer than 255 bytes" in rows[long_name]["error"]


# --------------------------------------------------------------------------------------- 3: run-folder lock


HOLDER = """
import sys, time
from portraitcraft.runs import lock_run_folder
lock_run_folder(sys.argv[1])
print("locked", flush=True)
time.sleep(120)
"""


def test_run_folder_lock_refuses_a_second_process_and_takes_over_a_stale_lock(tmp_path: Path) -> None:
    items = _write_json(tmp_path / "t2.json", [_t2("a.jpg"), _t2("b.jpg")])
    empty = tmp_path / "init"
    empty.mkdir()
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        args = ["generate", items, "--config", OFFLINE, "--init-images", empty, "--out", out, "--resume", *FAST]
        busy = run_script(*args)
        _assert_clean(busy)
        assert busy.code == 2 and f"in use by process {holder.pid}" in busy.output, busy.output
        assert not (out / "results.jsonl").exists()
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # the lock file stays behind with a dead pid
        holder.wait()
    assert (out / ".lock").read_text().strip() == str(holder.pid)
    # two processes race for the stale lock: exactly one wins, the other is refused at once
    racers = run_script_many([args, args], timeout=120, parallel=2)
    for run in racers:
        _assert_clean(run)
    assert sorted(r.code for r in racers) == [2, 3], [(r.code, r.output[-300:]) for r in racers]
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == ["a", "b"]  # each item done once, not twice


# ----------------------------------------------------------------------- 4, 6: data submit track2 doors


def test_submit_track2_contains_symlinks_names_files_exactly_and_reruns_in_place(tmp_path: Path) -> None:
    from PIL import Image

    names = ["a.jpg", "портрет_1.jpg", "c.webp", "d.gif", "secret.jpg"]
    items = _write_json(tmp_path / "t2.json", [_t2(n) for n in names])
    images = tmp_path / "images"
    images.mkdir()
    for name in names[:3]:
        Image.new("RGB", (32, 48), (200, 30, 30)).save(images / Path(name).with_suffix(".png"))
    Image.new("RGB", (32, 48)).save(images / "d.png")
    outside = tmp_path / "passwd.jpg"
    outside.write_bytes(b"root:x:0:0:root:/root:/bin/bash\n")
    (images / "secret.jpg").symlink_to(outside)
    args = ["data", "submit", "track2", items, "--images", images, "--out", images, "--allow-missing", "--json"]
    first, second = run_script(*args), run_script(*args)  # --out equal to --images, run twice
    for run in (first, second):
        _assert_clean(run)
        assert run.code == 0, run.output
    report = json.loads(second.stdout)
    assert report["n_images"] == 3 and report["ambiguous"] == []
    assert any("secret.jpg" in r and "outside" in r for r in report["refused"])
    assert any("d.gif" in u and "image extension" in u for u in report["unreadable"])
    with zipfile.ZipFile(images / "submission.zip") as zf:
        assert sorted(zf.namelist()) == sorted(["a.jpg", "портрет_1.jpg", "c.webp"])
        assert all(b"root:x" not in zf.read(n) for n in zf.namelist())
        assert zf.read("портрет_1.jpg")[:3] == b"\xff\xd8\xff"  # JPEG, as its extension says
        assert zf.read("c.webp")[8:12] == b"WEBP"


# -------------------------------------------------------------------------- 5, 15: train dpo doors


def _png(tmp: Path, name: str) -> str:
    from PIL import Image

    Image.new("RGB", (16, 16), (10, 200, 10)).save(tmp / name)
    return name


def test_train_dpo_contains_paths_skips_bad_rows_and_reads_export_folders(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    outside = tmp_path / "outside"
    outside.mkdir()
    _png(outside, "o.png")
    export = tmp_path / "export"
    export.mkdir()
    (export / "link.png").symlink_to(outside / "o.png")
    ok = _png(export, "ok.png")
    rows = [
        {"prompt": "p", "chosen": str(outside / "o.png"), "rejected": ok},  # absolute
        {"prompt": "p", "chosen": "../outside/o.png", "rejected": ok},  # ..
        {"prompt": "p", "chosen": "link.png", "rejected": ok},  # outward symlink
    ]
    (export / "pairs.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n{not json\n")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    cfg = ["--config", ROOT / "configs" / "train-offline.toml"]
    runs = run_script_many([
        ["train", "dpo", export, "--out", tmp_path / "t1", *cfg],  # the export FOLDER is accepted
        ["train", "dpo", empty, "--out", tmp_path / "t2", *cfg],  # was StopIteration, exit 1
        ["train", "dpo", "/dev/zero", "--out", tmp_path / "t3", *cfg],  # was "does not exist"
        ["train", "dpo", outside, "--out", tmp_path / "t4", *cfg],  # a folder with no pairs file
        ["train", "dpo", tmp_path / "nope.jsonl", "--out", tmp_path / "t5", *cfg],
    ], timeout=120)
    for run in runs:
        _assert_clean(run)
        assert run.code == 2, (run.args, run.code, run.output)
    folder = runs[0].output
    assert "is an absolute path" in folder and "contains '..'" in folder and "resolves outside" in folder
    assert "malformed JSON" in folder and "no usable training rows (4 read, 4 skipped" in folder
    assert "holds no pairs" in runs[1].output
    assert "not a regular file" in runs[2].output
    assert "holds neither pairs.parquet nor pairs.jsonl" in runs[3].output
    assert "does not exist" in runs[4].output


# ------------------------------------------------------------------------- 7: malformed Track 1 zips


def test_data_validate_and_eval_refuse_a_malformed_track1_zip(tmp_path: Path, examples_dir: Path) -> None:
    records = json.loads((examples_dir / "track_1_test.json").read_text())
    zips = []
    for member in ("../../evil.json", "preds.json", "sub/track_1_test.json"):
        path = tmp_path / f"{len(zips)}.zip"
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr(member, json.dumps(records))
        zips.append(path)
    runs = run_script_many([["data", "validate", z] for z in zips]
                           + [["eval", "track1", zips[0], examples_dir / "track_1_test_labels.json"]])
    for run in runs:
        _assert_clean(run)
        assert run.code == 2 and "exactly one file, track_1_test.json, at its root" in run.output, run.output


# ------------------------------------------------------------------------------------- 9: file modes


def test_outputs_get_the_mode_open_would_give(tmp_path: Path, examples_dir: Path) -> None:
    template = json.loads((examples_dir / "track_1_test.json").read_text())
    preds = _write_json(tmp_path / "p.json", [
        {"image_path": t["image_path"], "criteria": {a: {"level": "B"} for a in ATTRIBUTES}, "total_score": 50,
         "answer": "A"} for t in template])
    fresh, kept = tmp_path / "fresh.zip", tmp_path / "kept.zip"
    kept.write_bytes(b"")
    kept.chmod(0o644)
    old = os.umask(0o027)
    try:
        runs = run_script_many([["data", "submit", "track1", examples_dir / "track_1_test.json", preds, "--out", z]
                                for z in (fresh, kept)])
    finally:
        os.umask(old)
    assert all(r.code == 0 for r in runs), [r.output for r in runs]
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o640  # 0o666 under umask 027 (mkstemp gave 0o600)
    assert stat.S_IMODE(kept.stat().st_mode) == 0o644  # an overwritten file keeps its mode


# ---------------------------------------------------------------------------- 11, 12: codes and messages


def test_bad_urls_usage_and_markup(tmp_path: Path, examples_dir: Path) -> None:
    images = tmp_path / "imgs"
    images.mkdir()
    secret_env = {"PORTRAITCRAFT_TEST_KEY": "sk-hostile-0123456789"}
    bracket = tmp_path / "x" / "[red]a.json"
    bracket.parent.mkdir()
    bracket.write_text("[1, 2")
    t2 = examples_dir / "track_2_test.json"
    runs = run_script_many([
        ["eval", "track2", t2, "--images", images, "--set", "judge.base_url=notaurl"],
        ["eval", "track2", t2, "--images", images, "--set", "judge.base_url=http://[::1"],
        ["eval", "track2", t2, "--images", images, "--set", "judge.base_url=user:pw-leak@127.0.0.1:9/v1"],
        ["eval", "track2", t2, "--images", images, "--out", tmp_path],  # --out is a folder
        ["data", "validate", bracket],
        ["understand", "run", examples_dir / "track_1_test.json", "--images", images, "--out", tmp_path],
        ["rules", "lint", "--rules", tmp_path / "no-such-folder"],
        ["reframe", examples_dir / "images" / "unsplash_people_00100_75a3254a9493.jpg", "--aspect", "0:0",
         "--out", tmp_path / "r.png"],  # was 3 ("nothing done") for a usage error
    ], env=secret_env)
    for run in runs:
        _assert_clean(run)
        assert run.code == 2, (run.args, run.code, run.output)
        assert "pw-leak" not in run.output and "sk-hostile" not in run.output
    assert "must start with http:// or https://" in runs[0].output
    assert "is not a valid URL" in runs[1].output
    assert "is a folder, expected a file name" in runs[3].output and "is a folder" in runs[5].output
    assert "[red]a.json" in runs[4].output
    helps = run_script_many([["understand", "run", "--help"], ["generate", "--help"]])
    assert "[default: next to --out]" in helps[0].stdout and "[default: <out>_run/]" in helps[0].stdout
    assert "--strict" in helps[1].stdout


# ------------------------------------------------------------------ 14: the offline profile from any folder


@pytest.mark.diffusion
def test_offline_profile_works_from_any_folder(tmp_path: Path) -> None:
    """`tiny:zimage` resolves to the cache root's tiny model whatever the current folder (it was a path
    relative to the repo root, so every item failed elsewhere, with exit 0)."""
    pytest.importorskip("diffusers")
    run = run_script("generate", "--prompt", "a woman on the left third, looking right", "--config", OFFLINE,
                     "--out", "run", "--max-rounds", "0", "--json", *FAST, cwd=tmp_path, timeout=300)
    _assert_clean(run)
    assert run.code == 0, run.output
    summary = json.loads(run.stdout)
    assert summary["n_done"] == 1
    assert (tmp_path / "run" / "submission" / "prompt_00000.png").is_file()


# --------------------------------------------------------------- 16: Track 1 repair field by field


def test_track1_repair_keeps_every_usable_field(tmp_path: Path, examples_dir: Path) -> None:
    template = json.loads((examples_dir / "track_1_test.json").read_text())
    preds = [{"image_path": t["image_path"], "criteria": {a: {"level": "C"} for a in ATTRIBUTES},
              "total_score": 70 + i, "answer": "D"} for i, t in enumerate(template)]
    preds[0]["criteria"]["Sharpness"] = {"level": "NOT_RES"}
    preds[1]["total_score"] = "high"
    preds[2]["answer"] = "E"
    path = _write_json(tmp_path / "p.json", preds)
    out = tmp_path / "s.zip"
    run = run_script("data", "submit", "track1", examples_dir / "track_1_test.json", path, "--out", out,
                     "--allow-missing", "--json")
    assert run.code == 0, run.output
    report = json.loads(run.stdout[run.stdout.index("{"):])
    assert report["filled_fields"] == {template[0]["image_path"]: ["criteria.Sharpness"],
                                       template[1]["image_path"]: ["total_score"],
                                       template[2]["image_path"]: ["answer"]}
    with zipfile.ZipFile(out) as zf:
        back = json.loads(zf.read("track_1_test.json"))
    assert back[0]["criteria"]["Sharpness"] == {"level": "B"} and back[0]["criteria"]["Color Harmony"] == \
        {"level": "C"} and back[0]["total_score"] == 70 and back[0]["answer"] == "D"
    median = round(statistics.median([70 + i for i in range(len(template)) if i != 1]))
    assert back[1]["answer"] == "D" and back[1]["total_score"] == median
    assert back[2]["answer"] == "A" and back[2]["total_score"] == 72
