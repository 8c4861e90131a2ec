"""`portraitcraft understand ...` end to end against the scripted fake VLM (an oracle that knows the labels)."""

from __future__ import annotations

import asyncio
import json
import zipfile
from pathlib import Path

import pytest
from cli_run import run_cli
from fake_vlm import API_KEY_ENV, FakeVLMServer, make_client, user_text
from PIL import Image, ImageDraw
from understand_oracle import Oracle
from vision_fixtures import photos  # noqa: F401  (the real-photo fixture)

from portraitcraft.agents.assessor import Assessor, answer_schema
from portraitcraft.agents.assessor_sft import sft_record
from portraitcraft.agents.assessor_vote import VoteSettings
from portraitcraft.agents.views import build_views
from portraitcraft.config import AssessorConfig
from portraitcraft.data import load_track1_train, resolve_image
from portraitcraft.graphs.understand import fingerprint, run_items
from portraitcraft.graphs.understand_state import UnderstandContext
from portraitcraft.schemas import ATTRIBUTES

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TEST = EXAMPLES / "track_1_test.json"
LABELS = EXAMPLES / "track_1_test_labels.json"
IMAGES = EXAMPLES / "images"
K = 5


def example_images() -> dict[str, Path]:
    out = {}
    for path in IMAGES.rglob("*.jpg"):
        out[path.name] = path
    return out


@pytest.fixture()
def oracle(fake_vlm: FakeVLMServer) -> Oracle:
    oracle = Oracle(json.loads(LABELS.read_text()), example_images())
    fake_vlm.script.default(fn=oracle)
    return oracle


def endpoint_sets(fake_vlm: FakeVLMServer, tmp_path: Path, *extra: str) -> list[str]:
    sets = [f'assessor.base_url="{fake_vlm.base_url}"', f'assessor.model="{fake_vlm.model}"',
            f'assessor.api_key_env="{API_KEY_ENV}"', "assessor.max_retries=0", f"assessor.samples={K}",
            f'judge.base_url="{fake_vlm.base_url}"', f'judge.model="{fake_vlm.model}"',
            f'run.cache_dir="{tmp_path / "cache"}"', *extra]
    return [arg for s in sets for arg in ("--set", s)]


def understand(capsys, monkeypatch, fake_vlm, tmp_path, out: Path, *extra: str) -> dict:
    result = run_cli(["understand", str(TEST), "--images", str(IMAGES), "--out", str(out), "--no-progress",
                      "--json", *endpoint_sets(fake_vlm, tmp_path), *extra], capsys, monkeypatch)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_understand_writes_a_submission_that_validates_and_scores(fake_vlm, oracle, tmp_path, capsys,
                                                                  monkeypatch) -> None:
    out = tmp_path / "sub" / "track1.zip"
    summary = understand(capsys, monkeypatch, fake_vlm, tmp_path, out)
    assert summary["n_items"] == 4 and summary["n_finished"] == 4 and summary["n_fallback"] == 0
    assert len(summary["views"]) == 4
    # one request per view, K samples in each (n=K), never one request per sample
    chats = fake_vlm.chat_requests
    assert len(chats) == 4 * 4 == summary["requests"]
    assert all(r.body["n"] == K for r in chats)
    assert oracle.samples == 4 * 4 * K
    with zipfile.ZipFile(out) as zf:
        assert zf.namelist() == ["track_1_test.json"]
    validated = run_cli(["data", "validate", str(out)], capsys, monkeypatch)
    assert validated.exit_code == 0, validated.output
    scored = run_cli(["eval", "track1", str(out), str(LABELS), "--json"], capsys, monkeypatch)
    assert scored.exit_code == 0, scored.output
    report = json.loads(scored.stdout)
    # the oracle knows the labels: a perfect score proves flips, permutations and votes map back correctly
    assert report["level_acc"] == 1.0 and report["qa_acc"] == 1.0
    assert report["srcc"] == pytest.approx(1.0) and report["plcc"] > 0.99
    rows = [json.loads(line) for line in Path(summary["votes"]).read_text().splitlines()]
    labels = {item["image_path"]: item["answer"] for item in json.loads(LABELS.read_text())}
    assert len(rows) == 4
    for row in rows:
        truth = labels[row["image_path"]]
        assert row["status"] == "finished" and len(row["views"]) == 4
        assert all(len(v["samples"]) == K for v in row["views"])
        assert {v["view"]["flip"] for v in row["views"]} == {False, True}
        assert {tuple(v["order"]) for v in row["views"]} == {("A", "B", "C", "D"), ("B", "C", "D", "A")}
        assert row["vote"]["answer"] == truth and row["vote"]["answer_votes"] == {truth: 2 * K}  # unflipped views
        for v in row["views"]:  # the model saw the true option under another letter; it was mapped back
            shown = "ABCD"[v["order"].index(truth)]
            assert {s["shown_answer"] for s in v["samples"]} == {shown}
            assert {s["answer"] for s in v["samples"]} == {truth}

    # a second run resumes from the checkpoints: no model call, the same submission
    fake_vlm.reset()
    fake_vlm.script.default(fn=oracle)
    again = understand(capsys, monkeypatch, fake_vlm, tmp_path, out)
    assert again["n_reused"] == 4 and fake_vlm.chat_requests == []
    # calibrate on these votes (labelled test truth), then re-vote with the calibration: still no model call
    calib = tmp_path / "calib.json"
    fitted = run_cli(["understand", "calibrate", summary["votes"], str(LABELS), "--out", str(calib), "--json"],
                     capsys, monkeypatch)
    assert fitted.exit_code == 0, fitted.output
    cal = json.loads(calib.read_text())
    assert set(cal["thresholds"]) == set(ATTRIBUTES) and cal["report"]["fit_accuracy_calibrated"] == 1.0
    calibrated = understand(capsys, monkeypatch, fake_vlm, tmp_path, out, "--calibration", str(calib))
    assert calibrated["n_reused"] == 4 and fake_vlm.chat_requests == []


def test_failed_items_are_reported_and_retried_alone(fake_vlm, oracle, tmp_path, capsys, monkeypatch) -> None:
    out = tmp_path / "t1.zip"
    fake_vlm.script.fault("status", status=503, times=4)  # with one item at a time: every view of item 1
    args = ["understand", str(TEST), "--images", str(IMAGES), "--out", str(out), "--no-progress",
            *endpoint_sets(fake_vlm, tmp_path, "run.concurrency=1")]
    first = run_cli(args, capsys, monkeypatch)
    assert first.exit_code != 0
    assert "1 of 4 item(s) failed" in first.output and "unsplash_people_00106" in first.output
    assert not out.exists()
    rows = [json.loads(line) for line in out.with_name("t1.votes.jsonl").read_text().splitlines()]
    assert [r["status"] for r in rows] == ["failed", "finished", "finished", "finished"]
    assert "503" in rows[0]["error"]
    fake_vlm.reset()
    fake_vlm.script.default(fn=oracle)
    second = run_cli([*args, "--json"], capsys, monkeypatch)
    assert second.exit_code == 0, second.output
    assert len(fake_vlm.chat_requests) == 4  # only the failed item's four views were asked again
    assert json.loads(second.stdout)["n_reused"] == 3


def test_failed_items_with_allow_missing_get_the_fallback(fake_vlm, oracle, tmp_path, capsys, monkeypatch) -> None:
    out = tmp_path / "t1.zip"
    fake_vlm.script.fault("status", status=503, times=4)
    summary = understand(capsys, monkeypatch, fake_vlm, tmp_path, out, "--allow-missing",
                         "--set", "run.concurrency=1")
    assert summary["n_failed"] == 1 and summary["n_fallback"] == 1
    assert run_cli(["data", "validate", str(out)], capsys, monkeypatch).exit_code == 0


def test_logprob_overall_and_level_answers(fake_vlm, oracle, tmp_path, capsys, monkeypatch) -> None:
    out = tmp_path / "t1.zip"
    summary = understand(capsys, monkeypatch, fake_vlm, tmp_path, out, "--set", 'assessor.overall="logprob"',
                         "--set", 'assessor.output="levels"', "--set", 'assessor.level_mode="vote"',
                         "--set", "assessor.flip=false", "--set", "assessor.max_pixels=[2500, 10000]")
    chats = fake_vlm.chat_requests
    assert {r.images[0][0] * r.images[0][1] <= 2500 for r in chats} == {True, False}  # both resolutions
    assert len(chats) == 4 * 2 * 2  # 2 views, each: one n=K request + one logprob digit request
    assert sorted(r.body.get("n", 1) for r in chats) == [1] * 8 + [K] * 8
    assert all(r.body["top_logprobs"] > 0 for r in chats if r.body.get("logprobs"))
    rows = [json.loads(line) for line in Path(summary["votes"]).read_text().splitlines()]
    for row in rows:
        assert row["vote"]["steps"]["overall"]["method"] == "logprob"
        assert all(v["overall_source"] == "logprobs" for v in row["views"])
    report = json.loads(run_cli(["eval", "track1", str(out), str(LABELS), "--json"], capsys, monkeypatch).stdout)
    assert report["level_acc"] == 1.0 and report["srcc"] == pytest.approx(1.0)


def bright_square(side: str, path: Path) -> Path:
    img = Image.new("RGB", (320, 240), (20, 20, 30))
    x0 = 20 if side == "left" else 220
    ImageDraw.Draw(img).rectangle([x0, 60, x0 + 80, 180], fill=(250, 250, 250))
    img.save(path)
    return path


async def test_mirrored_views_agree_on_a_spatial_question(fake_vlm, tmp_path) -> None:
    """The image is mirrored AND the words swapped, so every view picks the same original option."""
    image = bright_square("left", tmp_path / "left.png")
    oracle = Oracle([{"image_path": "left.png", "total_score": 50,
                      "criteria": {a: {"level": "B"} for a in ATTRIBUTES}}], {"left.png": image})
    fake_vlm.script.default(fn=oracle)
    cfg = AssessorConfig(samples=3, max_pixels=[100 * 100, 300 * 300], option_orders=4, vqa_unflipped_only=False)
    views = build_views(flip=True, max_pixels=cfg.max_pixels, templates=["default", "brief"], option_orders=4)
    async with make_client(fake_vlm, cache_dir=None) as client:
        context = UnderstandContext(Assessor(cfg, client), views, VoteSettings.from_config(cfg))
        item = {"id": "left.png", "image_path": "left.png", "image": str(image), "task": "track1",
                "question": "Where is the brightest region?",
                "options": {"A": "In the centre", "B": "On the right side", "C": "On the left side", "D": "Nowhere"},
                "format": "single"}
        [outcome] = await run_items([item], context, checkpoint_dir=tmp_path / "ckpt",
                                    run_fingerprint=fingerprint(cfg, views))
    vote = outcome.state["vote"]
    assert vote["answer"] == "C" and vote["answer_votes"] == {"C": 8 * 3}
    texts = [user_text(r.body) for r in fake_vlm.chat_requests]
    assert sum("On the right side" in t and "On the left side" in t for t in texts) == 8
    flipped = [r for r in outcome.state["results"] if r["view"]["flip"]]
    assert len(flipped) == 4 and {tuple(r["order"]) for r in outcome.state["results"]} == {
        ("A", "B", "C", "D"), ("B", "C", "D", "A"), ("C", "D", "A", "B"), ("D", "A", "B", "C")}


async def test_sft_records_carry_exactly_the_inference_prompt(fake_vlm, tmp_path) -> None:
    """What export-sft writes is what the assessor sends: same system, same user text, same schema."""
    train = load_track1_train(EXAMPLES / "track_1_train.json")
    item = train[0]
    image = resolve_image(IMAGES, item.image_path)
    for output in ("scores", "levels"):
        fake_vlm.reset()
        cfg = AssessorConfig(samples=1, output=output, explanations=True, kind="plain")
        fake_vlm.script.default(fn=lambda body, cfg=cfg: answer_schema(cfg.output, (), True).model_validate_json(
            sft_record(item, str(image), cfg, "openai")["messages"][2]["content"]).model_dump(by_alias=True))
        async with make_client(fake_vlm, cache_dir=None, kind="plain") as client:
            record = await Assessor(cfg, client).assess(image, None, build_views(
                flip=False, max_pixels=[max(cfg.max_pixels)], templates=cfg.templates, option_orders=1)[0])
        assert record["error"] is None and "error" not in record["samples"][0]
        [sent] = fake_vlm.chat_requests
        for fmt in ("openai", "sharegpt", "swift"):
            rec = sft_record(item, str(image), cfg, fmt)
            if fmt == "openai":
                system, user, answer = (m["content"] for m in rec["messages"])
                user = user[1]["text"]
            elif fmt == "sharegpt":
                system, user, answer = rec["system"], rec["messages"][0]["content"], rec["messages"][1]["content"]
            else:
                system, user, answer = (m["content"] for m in rec["messages"])
            user = user.removeprefix("<image>")
            assert system == sent.body["messages"][0]["content"]
            assert user == user_text(sent.body)  # includes the schema the plain endpoint is given
            parsed = answer_schema(output, (), True).model_validate_json(answer)
            assert parsed.overall == round(item.total_score)
            value = parsed.model_dump(by_alias=True)["criteria"]["Sharpness"]
            expected = item.criteria["Sharpness"]
            assert value == (expected.level.value if output == "levels" else expected.score)


def test_export_sft_cli_formats(tmp_path, capsys, monkeypatch) -> None:
    train = EXAMPLES / "track_1_train.json"
    n_items = len(json.loads(train.read_text()))
    for fmt, name in (("openai", "train.jsonl"), ("sharegpt", "train.json"), ("swift", "train.jsonl")):
        out = tmp_path / fmt
        result = run_cli(["understand", "export-sft", str(train), "--images", str(IMAGES), "--format", fmt,
                          "--out", str(out), "--json"], capsys, monkeypatch)
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        assert summary["n_records"] == n_items and summary["n_skipped"] == 0
        text = (out / name).read_text()
        records = json.loads(text) if fmt == "sharegpt" else [json.loads(line) for line in text.splitlines()]
        assert len(records) == n_items
        if fmt != "openai":
            assert all(Path(r["images"][0]).is_file() for r in records)
    info = json.loads((tmp_path / "sharegpt" / "dataset_info.json").read_text())
    assert info["portraitcraft_track1"]["file_name"] == "train.json"
    bad = run_cli(["understand", "export-sft", str(train), "--images", str(IMAGES), "--format", "alpaca",
                   "--out", str(tmp_path / "x")], capsys, monkeypatch)
    assert bad.exit_code != 0 and "openai, sharegpt, swift" in bad.output


def test_qa_accuracy_per_format(fake_vlm, oracle, tmp_path, capsys, monkeypatch) -> None:
    image = "unsplash_people_00106_fa6bb5ef5e70.jpg"
    options = {"A": "The subject is complete.", "B": "The sky is green.", "C": "The subject wears a hat.",
               "D": "There is no light."}
    rows = [
        {"id": "s1", "image_path": image, "format": "single", "question": "Which is true?", "options": options,
         "answer": "A"},
        {"id": "m1", "image_path": image, "format": "multiple", "question": "Which mention the subject?",
         "options": options, "answer": "A, C"},
        {"id": "t1", "image_path": image, "format": "truefalse", "question": "The subject is complete.",
         "answer": "yes"},
        {"id": "t2", "image_path": image, "format": "truefalse", "question": "The image is black.", "answer": False},
        {"id": "o1", "image_path": image, "format": "open", "question": "Where is the subject?",
         "answer": "On the left."},
        {"id": "bad", "image_path": image, "format": "single", "question": "?", "options": options, "answer": "E"},
    ]
    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "qa_results.jsonl"
    result = run_cli(["understand", "qa", str(questions), "--images", str(IMAGES), "--out", str(out), "--json",
                      "--no-progress", *endpoint_sets(fake_vlm, tmp_path)], capsys, monkeypatch)
    assert result.exit_code == 0, result.output
    assert "not among the options" in result.stderr
    acc = json.loads(result.stdout)["accuracy"]
    assert acc["single"]["accuracy"] == 1.0 and acc["multiple"]["accuracy"] == 1.0
    assert acc["truefalse"] == {"n": 2, "correct": 1, "accuracy": 0.5}
    assert acc["open"]["accuracy"] == 1.0  # judged by the grader request
    assert acc["all"]["n"] == 5
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in results] == ["s1", "m1", "t1", "t2", "o1"]
    graded = [r for r in fake_vlm.chat_requests if "Reference answer" in user_text(r.body)]
    assert len(graded) == 1


def test_bad_calibration_file_is_a_clear_error(fake_vlm, oracle, tmp_path, capsys, monkeypatch) -> None:
    bad = tmp_path / "calib.json"
    bad.write_text("[1, 2]")
    result = run_cli(["understand", str(TEST), "--images", str(IMAGES), "--out", str(tmp_path / "x.zip"),
                      "--calibration", str(bad), *endpoint_sets(fake_vlm, tmp_path)], capsys, monkeypatch)
    assert result.exit_code != 0 and "calibration file is a JSON object" in result.output
    assert fake_vlm.chat_requests == []


async def test_geometry_hints_reach_the_prompt_mirrored_in_flipped_views(fake_vlm, tmp_path) -> None:
    """Hints (from tools.vision when it is installed) are context in the viewer's frame, flipped with the image."""
    image = bright_square("left", tmp_path / "left.png")
    oracle = Oracle([{"image_path": "left.png", "total_score": 50,
                      "criteria": {a: {"level": "B"} for a in ATTRIBUTES}}], {"left.png": image})
    fake_vlm.script.default(fn=oracle)
    cfg = AssessorConfig(samples=2, max_pixels=[200 * 200], geometry_hints=True)
    views = build_views(flip=True, max_pixels=cfg.max_pixels, templates=cfg.templates, option_orders=1)
    measured = []

    def measure(path: str) -> dict:
        measured.append(path)
        return {"horizontal": "left", "vertical": "middle", "crop_level": "half-body", "facing": "right",
                "gaze": "camera", "people": 1}

    async with make_client(fake_vlm, cache_dir=None) as client:
        context = UnderstandContext(Assessor(cfg, client), views, VoteSettings.from_config(cfg), measure=measure)
        item = {"id": "left.png", "image_path": "left.png", "image": str(image), "task": "track1",
                "question": "Where is the subject?", "options": {"A": "On the left", "B": "On the right"},
                "format": "single"}
        [outcome] = await run_items([item], context, checkpoint_dir=tmp_path / "ckpt",
                                    run_fingerprint=fingerprint(cfg, views))
    assert measured == [str(image)]  # measured once per image, not per view
    assert outcome.state["hints"]["horizontal"] == "left"
    texts = sorted(user_text(r.body) for r in fake_vlm.chat_requests)
    assert any("placement: left, middle; shot: half-body; facing: right; gaze: camera" in t for t in texts)
    assert any("placement: right, middle; shot: half-body; facing: left; gaze: camera" in t for t in texts)
    assert outcome.state["vote"]["answer"] == "A"


async def test_greedy_decoding_asks_one_sample_per_view(fake_vlm, tmp_path) -> None:
    fake_vlm.script.default({"criteria": dict.fromkeys(ATTRIBUTES, 6.0), "overall": 55, "answer": "B"})
    cfg = AssessorConfig(samples=5, temperature=0.0, max_pixels=[100 * 100])
    views = build_views(flip=True, max_pixels=cfg.max_pixels, templates=cfg.templates, option_orders=1)
    async with make_client(fake_vlm, cache_dir=None) as client:
        context = UnderstandContext(Assessor(cfg, client), views, VoteSettings.from_config(cfg))
        item = {"id": "a", "image_path": "a.png", "image": str(bright_square("left", tmp_path / "a.png")),
                "task": "track1", "question": "Q?", "options": {"A": "x", "B": "y"}, "format": "single"}
        [outcome] = await run_items([item], context, checkpoint_dir=tmp_path / "ckpt",
                                    run_fingerprint=fingerprint(cfg, views))
    assert len(fake_vlm.chat_requests) == 2 and all("n" not in r.body for r in fake_vlm.chat_requests)
    assert outcome.state["vote"]["n_valid"] == 2 and outcome.state["vote"]["answer"] == "B"


async def test_a_run_killed_mid_item_resumes_without_asking_finished_views_again(fake_vlm, tmp_path) -> None:
    """The process dies while an item's views are in flight; the next run asks only the unfinished views."""
    fake_vlm.script.default({"criteria": dict.fromkeys(ATTRIBUTES, 6.0), "overall": 55, "answer": "A"})
    cfg = AssessorConfig(samples=2, max_pixels=[100 * 100, 150 * 150])
    views = build_views(flip=True, max_pixels=cfg.max_pixels, templates=cfg.templates, option_orders=2)
    item = {"id": "a", "image_path": "a.png", "image": str(bright_square("left", tmp_path / "a.png")),
            "task": "track1", "question": "Q?", "options": {"A": "x", "B": "y"}, "format": "single"}
    run_fp = fingerprint(cfg, views)

    class Killed(BaseException):
        """Stands in for SIGKILL: not an Exception, so nothing on the way catches it."""

    async with make_client(fake_vlm, cache_dir=None) as client:
        assessor = Assessor(cfg, client)
        real = assessor.assess
        originals_done: list[str] = []
        both_done = asyncio.Event()

        async def dies_on_the_mirrored_views(image, question, view, **kw):
            if view.flip:  # the mirrored views die once the original views have finished
                await both_done.wait()
                raise Killed
            record = await real(image, question, view, **kw)
            originals_done.append(view.name)
            if len(originals_done) == 2:
                both_done.set()
            return record

        assessor.assess = dies_on_the_mirrored_views  # type: ignore[method-assign]
        context = UnderstandContext(assessor, views, VoteSettings.from_config(cfg))
        with pytest.raises(Killed):
            await run_items([item], context, checkpoint_dir=tmp_path / "ckpt", run_fingerprint=run_fp)
        asked_before = len(fake_vlm.chat_requests)
        assessor.assess = real  # type: ignore[method-assign]
        [outcome] = await run_items([item], context, checkpoint_dir=tmp_path / "ckpt", run_fingerprint=run_fp)
    assert outcome.status == "finished" and not outcome.reused
    assert len(outcome.state["results"]) == 4
    assert {r["view"]["name"] for r in outcome.state["results"]} == {v.name for v in views}
    # the original views finished before the "kill" and were not asked again
    assert asked_before == 2 and len(fake_vlm.chat_requests) == 4


def test_validation_split_gives_scorable_predictions_and_a_calibration(fake_vlm, tmp_path, capsys,
                                                                       monkeypatch) -> None:
    """A train-format split (no questions): predictions JSON + votes, then calibrate against its scores."""
    train = EXAMPLES / "track_1_train.json"
    n_items = len(json.loads(train.read_text()))
    fake_vlm.script.default({"criteria": dict.fromkeys(ATTRIBUTES, 5.5), "overall": 50})  # no answer field
    preds = tmp_path / "val_preds.json"
    result = run_cli(["understand", str(train), "--images", str(IMAGES), "--out", str(preds), "--no-progress",
                      "--json", *endpoint_sets(fake_vlm, tmp_path)], capsys, monkeypatch)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["predictions"] == str(preds) and summary["n_finished"] == n_items
    assert all("Question:" not in user_text(r.body) for r in fake_vlm.chat_requests)
    scored = json.loads(run_cli(["eval", "track1", str(preds), str(train), "--json"], capsys, monkeypatch).stdout)
    assert scored["n_matched"] == n_items and scored["qa_acc"] is None
    calib = tmp_path / "calib.json"
    fitted = run_cli(["understand", "calibrate", summary["votes"], str(train), "--out", str(calib), "--json"],
                     capsys, monkeypatch)
    assert fitted.exit_code == 0, fitted.output
    report = json.loads(calib.read_text())["report"]
    assert report["n_fit"] == n_items
    assert report["fit_accuracy_calibrated"] >= report["fit_accuracy_default"]
    zipped = run_cli(["understand", str(train), "--images", str(IMAGES), "--out", str(tmp_path / "x.zip"),
                      *endpoint_sets(fake_vlm, tmp_path)], capsys, monkeypatch)
    assert zipped.exit_code != 0 and "must name a .json predictions file" in " ".join(zipped.output.split())


async def test_missing_and_corrupt_images_fail_their_item_only(fake_vlm, tmp_path) -> None:
    fake_vlm.script.default({"criteria": dict.fromkeys(ATTRIBUTES, 6.0), "overall": 55, "answer": "A"})
    cfg = AssessorConfig(samples=2, max_pixels=[100 * 100])
    views = build_views(flip=True, max_pixels=cfg.max_pixels, templates=cfg.templates, option_orders=1)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    good = bright_square("left", tmp_path / "good.png")
    items = [{"id": name, "image_path": name, "image": image, "task": "track1", "question": "Q?",
              "options": {"A": "x", "B": "y"}, "format": "single"}
             for name, image in (("missing.jpg", None), ("corrupt.jpg", str(corrupt)), ("good.png", str(good)))]
    async with make_client(fake_vlm, cache_dir=None) as client:
        context = UnderstandContext(Assessor(cfg, client), views, VoteSettings.from_config(cfg))
        outcomes = await run_items(items, context, checkpoint_dir=tmp_path / "ckpt",
                                   run_fingerprint=fingerprint(cfg, views))
    assert [o.status for o in outcomes] == ["failed", "failed", "finished"]
    assert "image not found" in outcomes[0].state["error"]
    assert "corrupt.jpg" in outcomes[1].state["error"] and "ImageError" in outcomes[1].state["error"]
    assert len(fake_vlm.chat_requests) == 2  # only the good image reached the model


def test_geometry_hints_from_the_real_vision_tools(fake_vlm, photos, tmp_path, capsys,  # noqa: F811
                                                   monkeypatch) -> None:
    """geometry_hints = true: portraitcraft.tools.vision measures each photo once; hints are recorded and mirrored."""
    from portraitcraft.agents.assessor import render_hints

    fake_vlm.script.default({"criteria": dict.fromkeys(ATTRIBUTES, 6.0), "overall": 55, "answer": "A"})
    template = json.loads(TEST.read_text())[0]
    test = tmp_path / "test.json"
    test.write_text(json.dumps([dict(template, image_path=f"{name}.png") for name in ("astronaut", "coffee")]))
    out = tmp_path / "t1.zip"
    result = run_cli(["understand", str(test), "--images", str(photos["astronaut"].parent), "--out", str(out),
                      "--no-progress", "--json", *endpoint_sets(fake_vlm, tmp_path, "assessor.geometry_hints=true",
                                                                 "assessor.samples=2")], capsys, monkeypatch)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.with_name("t1.votes.jsonl").read_text().splitlines()]
    astronaut, coffee = rows[0]["hints"], rows[1]["hints"]
    assert astronaut["people"] == 1 and astronaut["horizontal"] in ("left", "center", "right")
    assert coffee == {"people": 0}
    texts = [user_text(r.body) for r in fake_vlm.chat_requests]
    plain, mirrored = render_hints(astronaut), render_hints(astronaut, flip=True)
    assert sum(plain in t for t in texts) >= 2 and sum(mirrored in t for t in texts) >= 2
    assert sum("people: 0" in t for t in texts) == 4


def test_windows_image_paths_give_items_keyed_by_their_basename(fake_vlm, oracle, tmp_path, capsys,
                                                                 monkeypatch) -> None:
    template = json.loads(TEST.read_text())[:1]
    name = template[0]["image_path"]
    test = tmp_path / "track_1_test.json"
    test.write_text(json.dumps([dict(template[0], image_path=f"images_00\\{name}")]))
    out = tmp_path / "t1.zip"
    result = run_cli(["understand", str(test), "--images", str(IMAGES), "--out", str(out), "--no-progress",
                      "--json", *endpoint_sets(fake_vlm, tmp_path)], capsys, monkeypatch)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in Path(json.loads(result.stdout)["votes"]).read_text().splitlines()]
    assert [(r["id"], r["image_path"]) for r in rows] == [(name, f"images_00\\{name}")]
