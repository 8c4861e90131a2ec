"""Hostile sweep: run the INSTALLED `portraitcraft` console script on 150+ hostile inputs across every command.

    .venv/bin/python benchmarks/hostile_sweep.py [--parallel 2] [--only data,eval] [--show-failures]

Each case runs in a fresh scratch folder with a fake API key in the environment (and credentials in some
URLs) and is checked for: no Python traceback, no secret in stdout/stderr or in any file written, the exit
code documented in docs/guides/exit-codes.md (0 done, 2 bad input or usage, 3 nothing done, 4 --strict with
some failures; 1 is a bug), and, where the case says so, nothing lost (every input item accounted for).
It prints one table row per command (inputs tried, passed, and the failures by kind) and, with
--show-failures, every failing case. A speed-free check: it never asserts timings.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SCRIPT = Path(sys.executable).with_name("portraitcraft")
SECRET = "sk-sweep-7f3a9c1e5b2d"
URL_SECRET = "pw-sweep-4d2b8e"
ATTRIBUTES = json.loads((EXAMPLES / "track_1_train.json").read_text())[0]["criteria"].keys()


@dataclass
class Case:
    command: str
    what: str
    args: list[str]
    expect: set[int]
    check: Callable[[str], str | None] | None = None
    """Returns a problem ("lost ...") when the output shows a silent loss, else None."""
    timeout: float = 60


@dataclass
class Outcome:
    case: Case
    code: int | None
    output: str
    seconds: float
    failures: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------- hostile files


def hostile_files(d: Path) -> dict[str, Path]:
    """Files every reader must refuse in one line (exit 2)."""
    d.mkdir(parents=True, exist_ok=True)
    f: dict[str, Path] = {}

    def put(name: str, data: bytes | str) -> Path:
        p = d / name
        p.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
        return p

    f["missing"] = d / "missing.json"
    f["empty"] = put("empty.json", "")
    f["whitespace"] = put("blank.json", " \n\t\n")
    f["binary"] = put("binary.json", b"\x00\x01\xffPNG\x00" * 50)
    f["malformed"] = put("malformed.json", "[{\"image_path\": \"a.jpg\",")
    f["deep"] = put("deep.json", "[" * 100_000 + "]" * 100_000)
    f["object"] = put("object.json", json.dumps({"image_path": "a.jpg"}))
    f["numbers"] = put("numbers.json", "[1, 2, 3]")
    f["latin1"] = put("latin1.json", "[\"caf\xe9\"]".encode("latin-1"))
    folder = d / "folder.json"
    folder.mkdir(exist_ok=True)
    f["folder"] = folder
    zero = d / "zero.json"
    zero.symlink_to("/dev/zero")
    f["dev_zero"] = zero
    fifo = d / "fifo.json"
    os.mkfifo(fifo)
    f["fifo"] = fifo
    f["bracket"] = put("[red]bracket.json", "[oops")
    return f


def zips(d: Path) -> dict[str, Path]:
    d.mkdir(parents=True, exist_ok=True)
    t1 = (EXAMPLES / "track_1_test.json").read_text()
    out: dict[str, Path] = {}
    for name, members in {"zip_evil": {"../../evil.json": t1}, "zip_wrong_name": {"preds.json": t1},
                          "zip_nested": {"sub/track_1_test.json": t1},
                          "zip_two": {"track_1_test.json": t1, "extra.json": "[]"}, "zip_empty": {}}.items():
        p = d / f"{name}.zip"
        with zipfile.ZipFile(p, "w") as zf:
            for member, text in members.items():
                zf.writestr(member, text)
        out[name] = p
    (d / "notzip.zip").write_text("not a zip")
    out["zip_garbage"] = d / "notzip.zip"
    return out


def hostile_tomls(d: Path) -> dict[str, Path]:
    d.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    texts = {
        "toml_bad_syntax": "[judge\nmodel = 1",
        "toml_unknown_key": "[judge]\nbogus = 1\n",
        "toml_bad_type": "[loop]\nmax_rounds = \"many\"\n",
        "toml_negative": "[loop]\nmax_rounds = -3\n",
        "toml_bad_url": "[judge]\nbase_url = \"notaurl\"\n",
        "toml_userinfo_no_scheme": f"[judge]\nbase_url = \"user:{URL_SECRET}@127.0.0.1:9/v1\"\n",
        "toml_bad_port": f"[critic]\nbase_url = \"http://u:{URL_SECRET}@h:99999/v1\"\n",
        "toml_ipv6": "[judge]\nbase_url = \"http://[::1\"\n",
        "toml_bracket_section": "[[generator]]\nmodel = \"x\"\n",
        "toml_deep": "a = " + "[" * 5000 + "]" * 5000 + "\n",
    }
    for name, text in texts.items():
        p = d / f"{name}.toml"
        p.write_text(text)
        out[name] = p
    zero = d / "zero.toml"
    zero.symlink_to("/dev/zero")
    out["toml_dev_zero"] = zero
    return out


def data_files(d: Path) -> dict[str, Path]:
    """Valid and subtly wrong PortraitCraft files."""
    d.mkdir(parents=True, exist_ok=True)
    t2 = json.loads((EXAMPLES / "track_2_test.json").read_text())
    out: dict[str, Path] = {}

    def put(name: str, data: object) -> Path:
        p = d / name
        p.write_text(json.dumps(data, ensure_ascii=False))
        return p

    out["t2"] = put("t2.json", t2)
    dup = [dict(t2[0]), dict(t2[0], image_path="images_00/" + t2[0]["image_path"]), dict(t2[1])]
    out["t2_duplicate"] = put("t2_dup.json", dup)
    out["t2_same_stem"] = put("t2_stem.json", [dict(t2[0], image_path="x.jpg"), dict(t2[1], image_path="x.png")])
    out["t2_traversal"] = put("t2_trav.json", [dict(t2[0], image_path="../../etc/passwd")])
    out["t2_absolute"] = put("t2_abs.json", [dict(t2[0], image_path="/etc/passwd")])
    out["t2_unicode"] = put("t2_uni.json", [dict(t2[0], image_path="портрет_ü.jpg")])
    out["t2_long"] = put("t2_long.json", [dict(t2[0], image_path="n" * 300 + ".jpg")])
    out["t2_dotjpg"] = put("t2_dotjpg.json", [dict(t2[0], image_path="x/.jpg")])
    out["t2_gif"] = put("t2_gif.json", [dict(t2[0], image_path="a.gif")])
    out["t2_empty_text"] = put("t2_emptytext.json", [dict(t2[0], content_description="", composition_analysis="")])
    out["t2_missing_key"] = put("t2_nokey.json", [{"image_path": "a.jpg"}])
    out["t2_nul"] = put("t2_nul.json", [dict(t2[0], image_path="a\u0000b.jpg")])
    out["t1_test"] = EXAMPLES / "track_1_test.json"
    out["t1_labels"] = EXAMPLES / "track_1_test_labels.json"
    out["t1_train"] = EXAMPLES / "track_1_train.json"
    template = json.loads((EXAMPLES / "track_1_test.json").read_text())
    good = [{"image_path": t["image_path"], "criteria": {a: {"level": "B"} for a in ATTRIBUTES},
             "total_score": 50 + i, "answer": "A"} for i, t in enumerate(template)]
    out["t1_preds"] = put("t1_preds.json", good)
    partial = json.loads(json.dumps(good))
    partial[0]["criteria"]["Sharpness"] = {"level": "NOT_RES"}
    partial[1]["total_score"] = float("nan")
    partial[2]["answer"] = "Z"
    out["t1_preds_partial"] = d / "t1_preds_partial.json"
    out["t1_preds_partial"].write_text(json.dumps(partial))
    out["t1_preds_strings"] = put("t1_preds_str.json", [dict(g, total_score="high") for g in good])
    return out


# ---------------------------------------------------------------------------------------------------- cases


def cases(tmp: Path) -> list[Case]:
    h = hostile_files(tmp / "hostile")
    z = zips(tmp / "zips")
    toml = hostile_tomls(tmp / "tomls")
    f = data_files(tmp / "data")
    out = tmp / "out"
    out.mkdir()
    a_file = tmp / "a_file"
    a_file.write_text("x")
    images = EXAMPLES / "images"
    empty_dir = tmp / "empty_dir"
    empty_dir.mkdir()
    judge_off = ["--set", "judge.max_retries=0", "--set", "judge.connect_timeout=1", "--set", "judge.timeout=2",
                 "--set", f"judge.base_url=http://user:{URL_SECRET}@127.0.0.1:9/v1"]
    fast_gen = ["--config", str(ROOT / "configs" / "offline.toml"), "--set", "critic.geometry=false",
                "--set", "critic.heuristics=false", "--max-rounds", "0"]
    c: list[Case] = []
    n = Counter()

    def new_out(tag: str) -> str:
        n[tag] += 1
        return str(out / f"{tag}{n[tag]}")

    def add(command: str, what: str, args: list[object], expect: set[int] | int,
            check: Callable[[str], str | None] | None = None, timeout: float = 60) -> None:
        c.append(Case(command, what, [str(a) for a in args], {expect} if isinstance(expect, int) else expect,
                      check, timeout))

    bad_inputs = {k: v for k, v in h.items()}
    # every reader refuses every unreadable file with one line and exit 2
    for name, path in bad_inputs.items():
        add("data validate", name, ["data", "validate", path], 2)
        add("eval track1", f"pred {name}", ["eval", "track1", path, f["t1_labels"]], 2)
        add("eval track2", f"items {name}", ["eval", "track2", path, "--images", images, *judge_off], 2)
        add("generate", f"INPUT {name}", ["generate", path, "--out", new_out("gen"), *fast_gen,
                                          "--init-images", empty_dir], 2)
        add("data submit track1", f"predictions {name}", ["data", "submit", "track1", f["t1_test"], path,
                                                          "--out", new_out("s1") + ".zip"], 2)
        add("train dpo", f"pairs {name}", ["train", "dpo", path, "--out", new_out("dpo")], 2)
    for name in ("missing", "empty", "binary", "deep", "dev_zero", "fifo", "folder", "bracket"):
        path = h[name]
        add("data submit track2", f"items {name}", ["data", "submit", "track2", path, "--images", images,
                                                    "--out", new_out("s2")], 2)
        add("understand run", f"test {name}", ["understand", "run", path, "--images", images, "--out",
                                               new_out("u") + ".zip", *judge_off], 2)
        add("eval calibrate-judge", f"csv {name}", ["eval", "calibrate-judge", path, path], 2)
        add("train sft", f"train {name}", ["train", "sft", path, "--images", images, "--out", new_out("sft")], 2)
        add("mine", f"train {name}", ["mine", path, "--images", images, "--counterparts", empty_dir,
                                      "--out", new_out("mine")], 2)
        add("understand calibrate", f"votes {name}", ["understand", "calibrate", path, f["t1_train"], "--out",
                                                      new_out("cal") + ".json"], 2)
        add("understand export-sft", f"train {name}", ["understand", "export-sft", path, "--images", images,
                                                       "--format", "openai", "--out", new_out("sftx")], 2)
        add("plan", f"fit {name}", ["plan", "fit", path, "--images", images, "--out", new_out("plan") + ".json"], 2)
        add("inspect", f"--spec {name}", ["inspect", images / "unsplash_people_00100_75a3254a9493.jpg",
                                          "--spec", path], 2)
    for name, path in z.items():
        add("data validate", name, ["data", "validate", path], 2)
        add("eval track1", f"pred {name}", ["eval", "track1", path, f["t1_labels"]], 2)
        add("data submit track1", f"predictions {name}", ["data", "submit", "track1", f["t1_test"], path,
                                                          "--out", new_out("s1") + ".zip"], 2)
    for name, path in toml.items():
        add("config show", name, ["config", "show", "--config", path], 2)
        add("eval track2", f"--config {name}", ["eval", "track2", f["t2"], "--images", images, "--config", path], 2)
    add("config show", "--set secret URL is masked", ["config", "show", "--set",
                                                      f"judge.base_url=https://u:{URL_SECRET}@h/v1?key={SECRET}"], 0)
    add("config show", "--set without =", ["config", "show", "--set", "judge.model"], 2)
    add("config show", "--set unknown section", ["config", "show", "--set", "nosuch.key=1"], 2)
    # Track 2 item problems
    for name in ("t2_duplicate", "t2_same_stem"):
        add("generate", name, ["generate", f[name], "--out", new_out("gen"), *fast_gen, "--init-images",
                               empty_dir], 2)
    for name in ("t2_traversal", "t2_absolute", "t2_unicode", "t2_long", "t2_dotjpg", "t2_gif", "t2_empty_text",
                 "t2_missing_key", "t2_nul"):
        add("generate", name, ["generate", f[name], "--out", new_out("gen"), *fast_gen, "--init-images",
                               empty_dir], {2, 3})
        add("data validate", name, ["data", "validate", f[name]], {0, 2})
        add("data submit track2", name, ["data", "submit", "track2", f[name], "--images", images, "--out",
                                         new_out("s2"), "--allow-missing"], {0, 2, 3})
    # --out of the wrong kind: 2 before any work
    for tag, target in (("is a file", a_file), ("under a file", a_file / "x"), ("is a folder", out)):
        # a FILE output may overwrite a file (eval: nothing scored -> 3; understand: every item failed -> 3)
        file_ok = tag == "is a file"
        add("generate", f"--out {tag}", ["generate", f["t2"], "--out", target, *fast_gen, "--init-images",
                                         empty_dir], 2 if tag != "is a folder" else {2, 3})
        add("eval track2", f"--out {tag}", ["eval", "track2", f["t2"], "--images", images, "--out", target,
                                            *judge_off], 3 if file_ok else 2)
        add("understand run", f"--out {tag}", ["understand", "run", f["t1_test"], "--images", images, "--out",
                                               target, *judge_off], 3 if file_ok else 2)
        add("data submit track1", f"--out {tag}", ["data", "submit", "track1", f["t1_test"], f["t1_preds"], "--out",
                                                   target], 0 if file_ok else 2)
        if tag != "is a folder":
            add("data submit track2", f"--out {tag}", ["data", "submit", "track2", f["t2"], "--images", images,
                                                       "--out", target, "--allow-missing"], 2)
            add("train dpo", f"--out {tag}", ["train", "dpo", f["t1_preds"], "--out", target], 2)
            add("mine", f"--out {tag}", ["mine", f["t2"], "--images", images, "--counterparts", empty_dir,
                                         "--out", target], 2)
    # endpoints: bad URLs are bad input (2) and never print credentials
    for url in ("notaurl", "ftp://h/v1", "http://[::1", f"user:{URL_SECRET}@127.0.0.1:9/v1",
                f"http://u:{URL_SECRET}@h:99999/v1", "http:///v1"):
        add("eval track2", f"judge.base_url={url[:30]}", ["eval", "track2", f["t2"], "--images", images, "--set",
                                                           f"judge.base_url={url}"], 2)
        add("doctor", f"critic.base_url={url[:30]}", ["doctor", "--set", f"critic.base_url={url}"], 2)
    # a valid URL holding a key in its query: it is used (the host does not resolve) and never printed
    query_key = f"https://nohost.invalid/v1?key={SECRET}&x=1"
    add("eval track2", "key in the URL query", ["eval", "track2", f["t2"], "--images", images, "--set",
                                                f"judge.base_url={query_key}", "--set", "judge.max_retries=0"], 3)
    add("doctor", "key in the URL query", ["doctor", "--timeout", "1", "--set", f"critic.base_url={query_key}"], 0)
    # a judge that does not answer: nothing scored -> 3; --strict changes nothing there
    add("eval track2", "unreachable judge", ["eval", "track2", f["t2"], "--images", images, *judge_off], 3)
    add("eval track2", "unreachable judge --strict", ["eval", "track2", f["t2"], "--images", images, "--strict",
                                                      *judge_off], 3)
    add("eval track2", "--images is a file", ["eval", "track2", f["t2"], "--images", a_file], 2)
    # generate: every item failed -> 3, duplicates -> 2, nothing lost
    def all_rows(expected: int) -> Callable[[str], str | None]:
        def check(output: str) -> str | None:
            try:
                summary = json.loads(output[output.index("{"):output.rindex("}") + 1])
            except ValueError:
                return "lost: no JSON summary"
            got = summary.get("n_done", 0) + summary.get("n_failed", 0)
            return None if got == expected and summary.get("n_items") == expected else \
                f"lost: {got} rows for {expected} items ({summary.get('n_items')} counted)"
        return check

    add("generate", "every item failed", ["generate", f["t2"], "--out", new_out("gen"), *fast_gen,
                                          "--init-images", empty_dir, "--json"], 3, all_rows(4))
    add("generate", "--strategy bogus", ["generate", f["t2"], "--strategy", "bogus", "--out", new_out("gen")], 2)
    add("generate", "INPUT and --prompt", ["generate", f["t2"], "--prompt", "x", "--out", new_out("gen")], 2)
    add("generate", "empty --prompt", ["generate", "--prompt", "  ", "--out", new_out("gen")], 2)
    add("generate", "--ids unknown", ["generate", f["t2"], "--ids", "nope", "--out", new_out("gen"), *fast_gen], 2)
    add("generate", "--init-images a file", ["generate", f["t2"], "--init-images", a_file, "--out", new_out("gen")],
        2)
    add("generate", "--max-rounds -1", ["generate", f["t2"], "--max-rounds", "-1"], 2)
    add("generate", "--group 1", ["generate", f["t2"], "--group", "1"], 2)
    add("generate", "Track 1 file as INPUT", ["generate", f["t1_test"], "--out", new_out("gen"), *fast_gen], 2)
    rules_bad = tmp / "rules_bad"
    rules_bad.mkdir()
    (rules_bad / "zero.md").symlink_to("/dev/zero")
    os.mkfifo(rules_bad / "fifo.md")
    (rules_bad / "[b]x.md").write_text("no front matter")
    add("generate", "--rules /dev/zero + FIFO", ["generate", "--prompt", "x", "--rules", rules_bad, "--out",
                                                 new_out("gen"), *fast_gen], 2)
    for args, what in (([], "shipped"), (["--rules", rules_bad], "/dev/zero, FIFO, bracket name"),
                       (["--rules", empty_dir], "empty folder"), (["--rules", a_file], "a file"),
                       (["--rules", tmp / "nope"], "missing folder")):
        add("rules lint", what, ["rules", "lint", *args], 0 if not args else 2)
        add("rules list", what, ["rules", "list", *args], 0 if not args else 2)
    add("rules show", "unknown id", ["rules", "show", "nope"], 2)
    add("rules show", "[markup] id", ["rules", "show", "[red]x"], 2)
    # data submit track1: repair and refusals
    add("data submit track1", "partial predictions refused", ["data", "submit", "track1", f["t1_test"],
                                                             f["t1_preds_partial"], "--out", new_out("s1") + ".zip"],
        2)
    add("data submit track1", "partial predictions --allow-missing",
        ["data", "submit", "track1", f["t1_test"], f["t1_preds_partial"], "--out", new_out("s1") + ".zip",
         "--allow-missing", "--json"], 0,
        lambda o: None if '"criteria.Sharpness"' in o and '"total_score"' in o and '"answer"' in o
        else "lost: filled fields not reported")
    add("data submit track1", "string totals refused", ["data", "submit", "track1", f["t1_test"],
                                                       f["t1_preds_strings"], "--out", new_out("s1") + ".zip"], 2)
    add("eval track1", "partial --allow-invalid", ["eval", "track1", f["t1_preds_partial"], f["t1_labels"],
                                                   "--allow-invalid", "--json"], 0,
        lambda o: None if "filled_fields" in o else "lost: filled fields not reported")
    add("eval track1", "partial refused", ["eval", "track1", f["t1_preds_partial"], f["t1_labels"]], 2)
    add("eval track1", "valid", ["eval", "track1", f["t1_preds"], f["t1_labels"]], 0)
    # data submit track2: symlinks out, --out equal to --images (twice), names
    imgs = tmp / "imgs_sub"
    imgs.mkdir()
    t2 = json.loads(f["t2"].read_text())
    shutil.copy(images / "unsplash_people_00100_75a3254a9493.jpg", imgs / t2[0]["image_path"])
    (imgs / t2[1]["image_path"]).symlink_to("/etc/passwd")
    for i in range(2):
        add("data submit track2", f"--out = --images, run {i + 1}", ["data", "submit", "track2", f["t2"], "--images",
                                                                    imgs, "--out", imgs, "--allow-missing",
                                                                    "--json"], 0,
            lambda o: None if '"n_images": 1' in o and "outside" in o else "lost or leaked: see output")
    add("data submit track2", "symlink out, no --allow-missing", ["data", "submit", "track2", f["t2"], "--images",
                                                                  imgs, "--out", new_out("s2")], 2)
    # train: containment, empty, bad rows (all refused before a model is loaded)
    pairs_dir = tmp / "pairs_export"
    pairs_dir.mkdir()
    shutil.copy(images / "unsplash_people_00100_75a3254a9493.jpg", pairs_dir / "ok.jpg")
    (pairs_dir / "out.jpg").symlink_to(images / "unsplash_people_00102_ad2125ee8c4c.jpg")
    rows = [{"prompt": "p", "chosen": "/etc/passwd", "rejected": "ok.jpg"},
            {"prompt": "p", "chosen": "../../etc/passwd", "rejected": "ok.jpg"},
            {"prompt": "p", "chosen": "out.jpg", "rejected": "ok.jpg"}, {"prompt": "", "chosen": "ok.jpg"}]
    (pairs_dir / "pairs.jsonl").write_text("\n".join(map(json.dumps, rows)) + "\n{bad\n")
    add("train dpo", "export folder, every row unsafe", ["train", "dpo", pairs_dir, "--out", new_out("dpo")], 2,
        lambda o: None if "5 read, 5 skipped" in o else "lost: rows not all counted")
    add("train dpo", "folder without pairs", ["train", "dpo", empty_dir, "--out", new_out("dpo")], 2)
    add("train sft", "--images missing", ["train", "sft", f["t2"], "--images", tmp / "nope", "--out",
                                          new_out("sft")], 2)
    # understand
    add("understand run", "unreachable VLM", ["understand", "run", f["t1_test"], "--images", images, "--out",
                                              new_out("u") + ".zip", *judge_off, "--set", "understand.max_retries=0"],
        {2, 3})
    add("understand run", "--votes is a folder", ["understand", "run", f["t1_test"], "--images", images, "--out",
                                                  new_out("u") + ".zip", "--votes", out], 2)
    add("understand run", "--run-dir is a file", ["understand", "run", f["t1_test"], "--images", images, "--out",
                                                  new_out("u") + ".zip", "--run-dir", a_file], 2)
    add("understand export-sft", "--format bogus", ["understand", "export-sft", f["t1_train"], "--images", images,
                                                    "--format", "bogus", "--out", new_out("sftx")], 2)
    # eval fidelity / calibrate-judge
    img = images / "unsplash_people_00100_75a3254a9493.jpg"
    for name in ("missing", "binary", "dev_zero", "fifo", "folder", "empty"):
        add("eval fidelity", f"image {name}", ["eval", "fidelity", h[name], img, "--mask", img], 2)
    add("eval calibrate-judge", "a JSON file as CSV", ["eval", "calibrate-judge", f["t2"], f["t2"]], 2)
    # inspect / reframe / report / plan / pairs / doctor / serve
    for name in ("missing", "binary", "dev_zero", "fifo", "folder"):
        add("inspect", f"image {name}", ["inspect", h[name], "--description", "a woman on the left"], {2, 3})
        add("reframe", f"image {name}", ["reframe", h[name], "--out", new_out("rf") + ".png"], 2)
        add("report", f"run {name}", ["report", h[name]], 2)
        add("pairs export", f"run {name}", ["pairs", "export", h[name], "--out", new_out("px")], {1, 2})
    add("reframe", "--aspect 0:0", ["reframe", img, "--aspect", "0:0", "--out", new_out("rf") + ".png"], 2)
    add("reframe", "--aspect bogus", ["reframe", img, "--aspect", "wide", "--out", new_out("rf") + ".png"], 2)
    add("report", "an empty folder", ["report", empty_dir], 2)
    add("plan", "show empty description", ["plan", "show", ""], 2)
    add("doctor", "--no-endpoints", ["doctor", "--no-endpoints", "--json"], 0)
    add("doctor", "unreachable endpoint --strict", ["doctor", "--strict", "--timeout", "1", "--set",
                                                    f"judge.base_url=http://u:{URL_SECRET}@127.0.0.1:9/v1"], 4)
    add("serve", "reward --port 0", ["serve", "reward", "--port", "-1"], 2)
    add("usage", "no such command", ["frobnicate"], 2)
    add("usage", "no such option", ["data", "validate", "--frob"], 2)
    add("usage", "--version", ["--version"], 0)
    return c


# ------------------------------------------------------------------------------------------------- running


def env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("PORTRAITCRAFT_")}
    e.update({"OPENAI_API_KEY": SECRET, "GEMINI_API_KEY": SECRET, "COLUMNS": "200",
              "PYTHONPATH": str(ROOT), "PORTRAITCRAFT_CACHE_DIR": e.get("SWEEP_CACHE", "")})
    if not e["PORTRAITCRAFT_CACHE_DIR"]:
        del e["PORTRAITCRAFT_CACHE_DIR"]
    return e


def run(case: Case, cwd: Path) -> Outcome:
    start = time.perf_counter()
    try:
        proc = subprocess.run([str(SCRIPT), *case.args], capture_output=True, text=True, timeout=case.timeout,
                              cwd=cwd, env=env(), stdin=subprocess.DEVNULL)
        code, output = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        code = None
        output = f"TIMEOUT after {case.timeout}s\n" + str(exc.stdout or "") + str(exc.stderr or "")
    outcome = Outcome(case, code, output, time.perf_counter() - start)
    if code is None:
        outcome.failures.append("hang")
    elif "Traceback (most recent call last)" in output:
        outcome.failures.append("traceback")
    if SECRET in output or URL_SECRET in output:
        outcome.failures.append("secret")
    if code is not None and code not in case.expect:
        outcome.failures.append(f"exit {code} (expected {'/'.join(map(str, sorted(case.expect)))})")
    if code is not None and case.check is not None:
        problem = case.check(output)
        if problem:
            outcome.failures.append(problem)
    return outcome


def leaked_files(root: Path) -> list[str]:
    """Files written during the sweep that hold a secret (bounded: the first 4 MB of regular files)."""
    bad = []
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            if path.is_symlink() or not path.is_file():
                continue
            with open(path, "rb") as fh:
                data = fh.read(4 * 1024 * 1024)
            if SECRET.encode() in data or URL_SECRET.encode() in data:
                bad.append(str(path.relative_to(root)))
    return bad


def report_failure(o: Outcome) -> None:
    tail = " | ".join(o.output.strip().splitlines()[-3:])[:400]
    print(f"FAIL {o.case.command} [{o.case.what}]: {', '.join(o.failures)} ({o.seconds:.0f} s)\n  args: "
          f"{' '.join(o.case.args)[:300]}\n  {tail}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parallel", type=int, default=2, help="cases run at once")
    ap.add_argument("--only", default="", help="comma-separated command prefixes to run (default: all)")
    ap.add_argument("--show-failures", action="store_true", help="print every failing case with its output tail")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="hostile-sweep-"))
    try:
        todo = cases(tmp)
        if args.only:
            prefixes = tuple(p.strip() for p in args.only.split(",") if p.strip())
            todo = [c for c in todo if c.command.startswith(prefixes)]
        cwd = tmp / "cwd"
        cwd.mkdir()
        started = time.perf_counter()
        outcomes: list[Outcome] = []
        with ThreadPoolExecutor(args.parallel) as pool:
            for outcome in pool.map(lambda c: run(c, cwd), todo):
                outcomes.append(outcome)
                if outcome.failures and args.show_failures:  # as they come: a long sweep shows its findings early
                    report_failure(outcome)
        leaks = leaked_files(tmp / "out") + leaked_files(cwd)
        by_command: dict[str, list[Outcome]] = defaultdict(list)
        for o in outcomes:
            by_command[o.case.command].append(o)
        print(f"\n{'command':24} {'inputs':>6} {'passed':>6}  failures")
        for command in sorted(by_command):
            rows = by_command[command]
            kinds = Counter(f.split(" (")[0] for o in rows for f in o.failures)
            shown = ", ".join(f"{k} x{v}" for k, v in kinds.most_common()) or "-"
            print(f"{command:24} {len(rows):>6} {sum(not o.failures for o in rows):>6}  {shown}")
        codes = Counter(o.code for o in outcomes)
        print(f"{'total':24} {len(outcomes):>6} {sum(not o.failures for o in outcomes):>6}  "
              f"exit codes: {dict(sorted(codes.items(), key=lambda kv: str(kv[0])))}; "
              f"files holding a secret: {len(leaks)}; {time.perf_counter() - started:.0f} s")
        for leak in leaks:
            print(f"SECRET IN FILE: {leak}")
        return 0 if all(not o.failures for o in outcomes) and not leaks else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
