"""The rule set: the shipped rules are valid and cover the failure modes; lint names each problem clearly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_run import run_cli

from portraitcraft.prompts.rules import RULES_DIR, RuleError, lint_rules, load_rules
from portraitcraft.schemas import CompositionTargets

GOOD = """---
id: {id}
title: A test rule
category: test
severity: 2
applies_when: [gaze]
question: Is it wrong?
instruction: Fix it towards {{{{ expected or "x" }}}}.
geometry: gaze
heuristic: null
---
The body the VLM reads.
"""


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")
    return folder / name


def test_shipped_rules_cover_the_failure_modes_and_spell_out_frames() -> None:
    rules, problems = lint_rules()
    assert problems == []
    ids = {r.id for r in rules}
    assert {"pose-layout", "facing", "limbs", "gaze", "placement", "framing", "people-count", "negative-space",
            "horizon", "depth-of-field", "lighting", "anatomy", "text-artifacts"} <= ids
    geometry = {r.geometry for r in rules if r.geometry}
    assert {"horizontal", "vertical", "crop_level", "facing", "gaze", "people", "orientation"} <= geometry
    for r in rules:
        if r.category == "chirality" or r.geometry == "horizontal":
            assert "VIEWER" in r.body and ("SUBJECT" in r.body or "subject's own" in r.body), r.id


def test_applies_when_follows_targets_and_words() -> None:
    by_id = {r.id: r for r in load_rules()}
    assert by_id["gaze"].applies(CompositionTargets(gaze="left"), "")
    assert not by_id["gaze"].applies(CompositionTargets(), "she looks left")
    assert by_id["horizon"].applies(None, "The horizon line sits low")
    assert not by_id["horizon"].applies(None, "a studio portrait")
    assert by_id["anatomy"].applies(None, "")
    text = by_id["placement"].render_instruction(expected="left")
    assert "left" in text and "viewer" in text


@pytest.mark.parametrize(("text", "message"), [
    ("no front matter at all\n", "no YAML front matter"),
    ("---\nid: [unclosed\n---\nbody\n", "not valid YAML"),
    (GOOD.format(id="bad").replace("severity: 2", "severity: 2\ncolour: red"), "unknown field 'colour'"),
    (GOOD.format(id="bad").replace("severity: 2\n", ""), "field 'severity': missing required field"),
    (GOOD.format(id="bad").replace("geometry: gaze", "geometry: elbow"), "field 'geometry'"),
    (GOOD.format(id="bad").replace("[gaze]", "[moon]"), "unknown condition 'moon'"),
    (GOOD.format(id="bad").replace('"x" }}', '"x" }'), "does not render"),
])
def test_lint_names_the_problem(tmp_path: Path, text: str, message: str) -> None:
    write(tmp_path, "bad.md", text)
    rules, problems = lint_rules(tmp_path)
    assert rules == []
    assert any(message in p.problem for p in problems), problems
    assert all(p.path.endswith("bad.md") for p in problems)


def test_duplicate_ids_and_extra_rules(tmp_path: Path) -> None:
    write(tmp_path / "dup", "one.md", GOOD.format(id="one"))
    write(tmp_path / "dup", "two.md", GOOD.format(id="one"))
    _, problems = lint_rules(tmp_path / "dup")
    assert any("duplicate id 'one'" in p.problem for p in problems)
    with pytest.raises(RuleError, match="duplicate id"):
        load_rules(tmp_path / "dup")
    write(tmp_path / "extra", "gaze.md", GOOD.format(id="gaze").replace("severity: 2", "severity: 1"))
    write(tmp_path / "extra", "mine.md", GOOD.format(id="mine"))
    rules = {r.id: r for r in load_rules(tmp_path / "extra")}
    assert rules["gaze"].severity == 1 and "mine" in rules and "anatomy" in rules
    assert [r.id for r in load_rules(names=["gaze", "anatomy"])] == ["gaze", "anatomy"]
    with pytest.raises(RuleError, match="unknown rule"):
        load_rules(names=["nope"])


def test_rules_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    res = run_cli(["rules", "list", "--json"], capsys, monkeypatch)
    assert res.exit_code == 0
    assert len(json.loads(res.stdout)) == len(list(RULES_DIR.glob("*.md")))
    res = run_cli(["rules", "show", "facing"], capsys, monkeypatch)
    assert res.exit_code == 0 and "VIEWER" in res.stdout
    assert run_cli(["rules", "show", "nope"], capsys, monkeypatch).exit_code != 0
    assert run_cli(["rules", "lint"], capsys, monkeypatch).exit_code == 0
    write(tmp_path, "x.md", GOOD.format(id="x").replace("title:", "tittle:"))
    res = run_cli(["rules", "lint", "--rules", str(tmp_path), "--json"], capsys, monkeypatch)
    assert res.exit_code == 2  # problems in the rule files are bad input
    problems = json.loads(res.stdout)["problems"]
    assert any("unknown field 'tittle'" in p["problem"] for p in problems)
