"""Exit codes and usage errors as the shell sees them: every command that can fail, through the installed
console script (an in-process CliRunner on the bare app bypasses the entry point that maps exit codes)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from console_script import run_script, run_script_many

from portraitcraft.cli import build_command
from portraitcraft.schemas import ATTRIBUTES


def _train_item(path: str = "a.jpg") -> dict:
    return {"image_path": path, "criteria": {a: {"score": 6.0, "reason": "r"} for a in ATTRIBUTES},
            "total_score": 50}


def _write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


@pytest.fixture()
def bad_files(tmp_path: Path) -> dict[str, Path]:
    wrong_type = _train_item()
    wrong_type["criteria"]["Sharpness"]["score"] = "high"
    no_criteria = _train_item()
    del no_criteria["criteria"]
    unknown_attr = _train_item()
    unknown_attr["criteria"]["Bogus"] = {"score": 1.0, "reason": ""}
    return {
        "wrong_type": _write(tmp_path / "wrong_type.json", [wrong_type, _train_item("b.jpg")]),
        "no_criteria": _write(tmp_path / "no_criteria.json", [no_criteria, _train_item("b.jpg")]),
        "unknown_attr": _write(tmp_path / "unknown_attr.json", [unknown_attr, _train_item("b.jpg")]),
        "duplicate": _write(tmp_path / "duplicate.json", [_train_item("x/a.jpg"), _train_item("y/a.jpg")]),
        "good": _write(tmp_path / "good.json", [_train_item("a.jpg"), _train_item("b.jpg")]),
    }


def test_data_validate_exit_codes_reach_the_shell(bad_files: dict[str, Path], tmp_path: Path) -> None:
    names = ["wrong_type", "no_criteria", "unknown_attr", "duplicate"]
    runs = run_script_many([["data", "validate", bad_files[n]] for n in names]
                           + [["data", "validate", bad_files["good"]],
                              ["data", "validate", tmp_path / "absent.json"]])
    for name, run in zip(names, runs, strict=False):
        assert run.code == 2, (name, run.code, run.output)
        assert "1 problem(s)" in run.stdout, (name, run.output)
    assert runs[4].code == 0, runs[4].output
    assert runs[5].code == 2 and "does not exist" in runs[5].stderr


def test_every_failing_command_exits_non_zero(examples_dir: Path, tmp_path: Path) -> None:
    missing = tmp_path / "absent.json"
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("[judge]\nbogus = 1\n")
    unreachable = tmp_path / "unreachable.toml"
    unreachable.write_text('[judge]\nbase_url = "http://127.0.0.1:9/v1"\n')
    empty_preds = _write(tmp_path / "preds.json", [])
    cases: list[tuple[list[str | Path], int, str]] = [
        (["data", "submit", "track1", examples_dir / "track_1_test.json", empty_preds], 2, "no prediction"),
        (["data", "submit", "track2", examples_dir / "track_2_test.json", "--images", tmp_path / "none",
          "--out", tmp_path / "t2"], 2, "no such folder"),
        (["config", "show", "--config", bad_toml], 2, "judge.bogus"),
        (["eval", "track1", missing, examples_dir / "track_1_test_labels.json"], 2, "does not exist"),
        (["eval", "track2", examples_dir / "track_2_test.json", "--images", tmp_path / "none"], 2, "not a folder"),
        (["eval", "calibrate-judge", missing, missing], 2, "absent.json"),
        # portraitcraft.tools.images.ImageError is bad input (an InputError): code 2
        (["eval", "fidelity", missing, missing, "--mask", missing], 2, "file not found"),
        (["plan", "fit", examples_dir / "track_2_train.json", "--images", tmp_path / "none", "--out",
          tmp_path / "p.json"], 2, "not a folder"),
        (["doctor", "--json", "--config", unreachable, "--timeout", "1", "--strict"], 4, ""),
    ]
    runs = run_script_many([args for args, _, _ in cases])
    for (args, code, text), run in zip(cases, runs, strict=True):
        assert run.code == code, (args, run.code, run.output)
        assert text in run.output, (args, run.output)
        assert "Traceback" not in run.output, (args, run.output)


def test_usage_errors_show_usage_and_exit_2() -> None:
    runs = run_script_many([["data", "validate", "--nope", "x"], ["doctor", "--timeout", "abc"],
                            ["eval", "track1"], ["no-such-command"]])
    for run in runs:
        assert run.code == 2, (run.args, run.output)
        assert "Usage: portraitcraft" in run.stderr, run.output
        assert "NoSuchOption" not in run.output and "--debug" not in run.output
    assert "No such option: --nope" in runs[0].stderr
    assert "'--timeout'" in runs[1].stderr and "abc" not in runs[1].stderr.split("'--timeout'")[0]


def test_version_and_help_placeholders() -> None:
    version, help_text = run_script_many([["--version"], ["config", "show", "--help"]])
    assert version.code == 0 and version.stdout.startswith("portraitcraft ") and version.stdout.split()[1][0].isdigit()
    assert help_text.code == 0
    assert "<bool>" not in help_text.stdout and "<list[str]>" not in help_text.stdout
    assert "KEY=VALUE" in help_text.stdout


def _leaves(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    subs = getattr(command, "commands", None)
    if not subs:
        yield path
        return
    for name, sub in subs.items():
        yield from _leaves(sub, (*path, name))


def test_no_command_help_shows_a_bool_placeholder(capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    command = build_command()
    leaves = list(_leaves(command))
    assert len(leaves) >= 8
    for path in leaves:
        code = command.main(args=[*path, "--help"], prog_name="portraitcraft", standalone_mode=False)
        out = capsys.readouterr().out
        assert code == 0 and "Usage: portraitcraft" in out, (path, out)
        assert "<bool>" not in out, path
        assert "<list[str]>" not in out, path


def test_debug_still_shows_the_traceback(tmp_path: Path) -> None:
    run = run_script("--debug", "data", "validate", tmp_path / "absent.json")
    assert run.code != 0 and "Traceback" in run.stderr


def test_other_commands_failures_reach_the_shell(tmp_path: Path) -> None:
    """The entry point propagates every command's failure (codes chosen by each command)."""
    missing = tmp_path / "absent"
    runs = run_script_many([["generate", f"{missing}.json", "--out", tmp_path / "g"], ["report", missing],
                            ["inspect", f"{missing}.png"], ["rules", "lint", "--rules", missing]])
    for run in runs:
        assert run.code != 0, (run.args, run.output)
        assert str(missing) in run.output and "Traceback" not in run.output, (run.args, run.output)


def test_an_unusable_image_is_bad_input_naming_the_file(tmp_path: Path) -> None:
    from PIL import Image

    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    good = tmp_path / "good.png"
    Image.new("RGB", (32, 32), "white").save(good)
    runs = run_script_many([["eval", "fidelity", good, corrupt, "--mask", good],
                            ["reframe", corrupt, "--horizontal", "left", "--out", tmp_path / "out.png"]])
    for run in runs:
        assert run.code == 2, (run.args, run.code, run.output)
        assert any("corrupt.png" in line and "image" in line for line in run.stderr.splitlines()), run.output
        assert "Traceback" not in run.output, run.output
    assert not (tmp_path / "out.png").exists()
