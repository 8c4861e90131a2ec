"""The reframing editor and the `inspect` / `reframe` commands on real photos through the real models."""

from __future__ import annotations

import json

import pytest
from cli_run import run_cli
from PIL import Image
from vision_fixtures import PERSON_PHOTOS, analyzed, load, photos  # noqa: F401

from portraitcraft.agents.reframe import ReframeError, parse_aspect, reframe


@pytest.mark.parametrize("name", PERSON_PHOTOS)
@pytest.mark.parametrize("target", ["left", "center", "right"])
def test_reframed_photo_measures_as_the_target_asks(name, target, photos, analyzed) -> None:  # noqa: F811
    from portraitcraft.tools.vision import analyze

    img = load(photos[name])
    result = reframe(img, analyzed(name), horizontal=target)
    assert result.padding == (0, 0, 0, 0) and result.fill == "none" and result.pad_mask is None  # crop-only
    x0, y0, x1, y1 = result.crop_box
    assert 0 <= x0 < x1 <= img.width and 0 <= y0 < y1 <= img.height and (x1 - x0, y1 - y0) == result.image.size
    assert abs((x1 - x0) / (y1 - y0) - img.width / img.height) < 0.02  # the aspect is kept
    assert 0.3 < result.kept_fraction <= 1.0
    again = analyze(result.image)  # an independent look at the output
    assert again.subject is not None and again.subject.face_center is not None  # the head stays in
    # either the target is met, or no crop could meet it and the best crop says so
    assert (again.subject.horizontal == target) != result.needs_outpainting


@pytest.mark.parametrize("fill", ["blur", "reflect"])
def test_a_synthetic_fill_only_when_asked(fill, photos, analyzed) -> None:  # noqa: F811
    from portraitcraft.config import VisionConfig

    img = load(photos["astronaut"])
    crop_only = reframe(img, analyzed("astronaut"), horizontal="right", aspect=1.0, verify=False)
    assert crop_only.needs_outpainting and crop_only.padding == (0, 0, 0, 0)
    padded = reframe(img, analyzed("astronaut"), horizontal="right", aspect=1.0, verify=False,
                     config=VisionConfig(reframe_fill=fill))
    assert padded.fill == fill and padded.padding[0] > 0 and not padded.needs_outpainting
    assert padded.record("a.png")["padding"] == list(padded.padding)


def test_a_requested_aspect_is_met(photos, analyzed) -> None:  # noqa: F811
    result = reframe(load(photos["astronaut"]), analyzed("astronaut"), aspect=parse_aspect("2:3"))
    w, h = result.image.size
    assert abs(w / h - 2 / 3) < 0.01 and result.after.subject is not None


def test_no_person_and_an_unsatisfiable_target_refuse(photos, analyzed) -> None:  # noqa: F811
    with pytest.raises(ReframeError, match="no person"):
        reframe(load(photos["coffee"]), analyzed("coffee"), horizontal="left")
    with pytest.raises(ReframeError, match="cannot reframe"):
        reframe(load(photos["grace_hopper"]), analyzed("grace_hopper"), horizontal="left", aspect=parse_aspect("1:4"))


def test_parse_aspect_refuses_nonsense() -> None:
    assert parse_aspect("16:9") == pytest.approx(16 / 9)
    for bad in ("0:1", "a:b", "1:100"):
        with pytest.raises(ReframeError, match="aspect"):
            parse_aspect(bad)


def test_cli_reframe_writes_the_png_with_its_crop_box(photos, tmp_path, capsys, monkeypatch) -> None:  # noqa: F811
    out = tmp_path / "framed.png"
    res = run_cli(["reframe", str(photos["camera"]), "--horizontal", "left", "--aspect", "2:3", "--out", str(out),
                   "--json"], capsys, monkeypatch)
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["subject"]["horizontal"] == "left" and 0 < data["kept_fraction"] <= 1
    assert data["fill"] == "none" and data["padding"] == [0, 0, 0, 0] and not data["needs_outpainting"]
    with Image.open(out) as img:
        meta = json.loads(img.info["portraitcraft:reframe"])
        assert meta["crop_box"] == data["crop_box"] and meta["source"] == str(photos["camera"])
        assert meta["mirrored"] is False and meta["size"] == list(img.size) and meta["fill"] == "none"
        assert img.size == (data["crop_box"][2] - data["crop_box"][0], data["crop_box"][3] - data["crop_box"][1])
        assert abs(img.width / img.height - 2 / 3) < 0.01


def test_cli_reframe_guards_the_source_and_pads_only_when_asked(photos, tmp_path) -> None:  # noqa: F811
    from console_script import run_script_many

    src = tmp_path / "astronaut.png"
    src.write_bytes(photos["astronaut"].read_bytes())
    before = src.read_bytes()
    same, bad_fill, bad_aspect, crop_only, reflect = run_script_many([
        ["reframe", src, "--horizontal", "right", "--out", src],
        ["reframe", src, "--fill", "smear", "--out", tmp_path / "x.png"],
        ["reframe", src, "--aspect", "0:0", "--out", tmp_path / "x.png"],
        ["reframe", photos["grace_hopper"], "--horizontal", "left", "--aspect", "1:1", "--out", tmp_path / "crop.png",
         "--json"],
        ["reframe", photos["grace_hopper"], "--horizontal", "left", "--aspect", "1:1", "--fill", "reflect", "--out",
         tmp_path / "pad.png", "--json"],
    ], timeout=180)
    assert same.code == 2 and "--force" in same.stderr and src.read_bytes() == before  # the photo is untouched
    assert bad_fill.code == 2 and "--fill" in bad_fill.stderr and not (tmp_path / "x.png").exists()
    assert bad_aspect.code == 2 and "--aspect" in bad_aspect.stderr and not (tmp_path / "x.png").exists()
    assert crop_only.code == 0, crop_only.stderr
    data = json.loads(crop_only.stdout)
    assert data["needs_outpainting"] and data["padding"] == [0, 0, 0, 0] and data["fill"] == "none"
    assert reflect.code == 0, reflect.stderr
    padded = json.loads(reflect.stdout)
    assert padded["fill"] == "reflect" and padded["padding"][2] > 0 and not padded["needs_outpainting"]
    with Image.open(tmp_path / "pad.png") as img, Image.open(padded["pad_mask"]) as mask:
        assert mask.size == img.size and mask.getpixel((img.width - 1, 0)) == 255 and mask.getpixel((0, 0)) == 0
    forced = run_script_many([["reframe", src, "--aspect", "9:16", "--out", src, "--force"]], timeout=120)[0]
    assert forced.code == 0, forced.stderr
    with Image.open(src) as img:
        assert abs(img.width / img.height - 9 / 16) < 0.01


@pytest.mark.parametrize("args", [["coffee"], ["grace_hopper", "--horizontal", "left", "--aspect", "1:4"]])
def test_cli_reframe_refusals_write_nothing(args, photos, tmp_path, capsys, monkeypatch) -> None:  # noqa: F811
    out = tmp_path / "never.png"
    res = run_cli(["reframe", str(photos[args[0]]), *args[1:], "--out", str(out)], capsys, monkeypatch)
    assert res.exit_code != 0 and "error" in res.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_cli_inspect_json_goes_on_past_a_corrupt_file(photos, tmp_path, capsys, monkeypatch) -> None:  # noqa: F811
    bad = tmp_path / "corrupt.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    res = run_cli(["inspect", str(photos["astronaut"]), str(bad), str(photos["coffee"]), "--json"], capsys, monkeypatch)
    assert res.exit_code != 0
    assert f"error: {bad}" in res.stderr
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["image"] for r in rows] == [str(photos["astronaut"]), str(photos["coffee"])]
    assert rows[0]["subject"]["crop_level"] == "half-body" and rows[1]["subject"] is None


def test_cli_inspect_table(photos, capsys, monkeypatch) -> None:  # noqa: F811
    res = run_cli(["inspect", str(photos["grace_hopper"])], capsys, monkeypatch)
    assert res.exit_code == 0, res.output
    assert "head-and-shoulders" in res.stdout and "face detector" in res.stdout


def test_cli_inspect_with_a_description_checks_targets(photos, capsys, monkeypatch) -> None:  # noqa: F811
    pytest.importorskip("portraitcraft.agents.planner.targets")
    res = run_cli(["inspect", str(photos["camera"]), "--json", "--description",
                   "A man stands on the right third of the frame, shown full body, looking to the left."],
                  capsys, monkeypatch)
    row = json.loads(res.stdout)
    assert row["targets"]["horizontal"] == "right"
    finding = next(f for f in row["findings"] if f["rule"] == "horizontal")
    assert finding["detected"] and finding["measured"] == "left" and finding["source"] == "geometry"


@pytest.mark.parametrize("level", ["head-and-shoulders", "close-up"])
def test_a_crop_tightens_the_crop_level_and_never_loosens_it(level, photos, analyzed) -> None:  # noqa: F811
    from portraitcraft.agents.reframe import reframeable
    from portraitcraft.tools.vision import analyze

    img = load(photos["astronaut"])
    assert analyzed("astronaut").subject.crop_level == "half-body"
    assert reframeable("crop_level", "half-body", level)
    result = reframe(img, analyzed("astronaut"), crop_level=level)
    again = analyze(result.image)
    assert again.subject.crop_level == level and again.subject.face_center is not None
    assert result.kept_fraction < 0.6
    assert not reframeable("crop_level", "half-body", "full-body")
    with pytest.raises(ReframeError, match="only tighten"):
        reframe(img, analyzed("astronaut"), crop_level="full-body")


def test_cli_inspect_with_a_spec_file_matches_items_by_name_or_id(photos, tmp_path, capsys, monkeypatch) -> None:  # noqa: F811
    pytest.importorskip("portraitcraft.agents.planner.targets")
    spec = tmp_path / "track_2.json"
    spec.write_text(json.dumps([
        {"image_path": "camera.png", "content_description": "A photographer at work in a park.",
         "composition_analysis": "He stands on the left third of the frame, turned toward the viewer's right."},
        {"image_path": "other.png", "content_description": "A man.",
         "composition_analysis": "He stands in the centre of the frame."},
    ]))
    res = run_cli(["inspect", str(photos["camera"]), "--spec", str(spec), "--json"], capsys, monkeypatch)
    assert res.exit_code == 0, res.output
    row = json.loads(res.stdout)
    assert row["targets"]["horizontal"] == "left"
    assert {f["rule"]: f["detected"] for f in row["findings"]}["horizontal"] is False
    res = run_cli(["inspect", str(photos["camera"]), "--spec", str(spec), "--id", "other", "--json"],
                  capsys, monkeypatch)
    row = json.loads(res.stdout)
    assert row["targets"]["horizontal"] == "center"
    assert {f["rule"]: f["detected"] for f in row["findings"]}["horizontal"] is True
    res = run_cli(["inspect", str(photos["camera"]), "--spec", str(spec), "--id", "nope"], capsys, monkeypatch)
    assert res.exit_code != 0 and "nope" in res.stderr


def test_cli_inspect_reads_targets_with_the_planners_convention(photos, tmp_path, capsys, monkeypatch) -> None:  # noqa: F811
    from portraitcraft.agents.planner.canvas_policy import rule_policy

    text = "A man looks to his left."  # strict: the viewer's right; loose: the viewer's left
    image = str(photos["camera"])

    def gaze(*extra: str) -> str:
        res = run_cli(["inspect", image, "--json", *extra], capsys, monkeypatch)
        assert res.exit_code == 0, res.output
        return json.loads(res.stdout)["targets"]["gaze"]

    assert gaze("--description", text) == "right"
    assert gaze("--description", text, "--set", "planner.convention=loose") == "left"
    spec = tmp_path / "track_2.json"
    spec.write_text(json.dumps([{"image_path": "camera.png", "content_description": text,
                                 "composition_analysis": ""}]))
    policy = rule_policy([1.0]).model_copy(update={"convention": {"value": "loose"}}).save(tmp_path / "policy.json")
    assert gaze("--spec", str(spec)) == "right"
    assert gaze("--spec", str(spec), "--set", f"planner.policy={policy}") == "left"  # the fitted policy's reading
    assert gaze("--spec", str(spec), "--set", f"planner.policy={policy}", "--set", "planner.convention=strict") \
        == "right"  # an explicit setting beats the policy's
