"""Bounded reads: non-regular files, oversized files and zip members, deep nesting and binary configs are one
line naming the file (exit 2), through the installed console script; never an endless read or a traceback."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest
from console_script import run_script, run_script_many

from portraitcraft import bounded
from portraitcraft.data import read_records
from portraitcraft.errors import DataError

LABELS = Path(__file__).resolve().parent.parent / "examples" / "track_1_test_labels.json"


def test_hostile_inputs_are_one_line_naming_the_file(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    deep_lines = tmp_path / "deep.jsonl"
    deep_lines.write_text('{"a": ' * 100_000 + "1" + "}" * 100_000 + "\n")
    binary_cfg = tmp_path / "bin.toml"
    binary_cfg.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")
    folder_cfg = tmp_path / "cfgdir"
    folder_cfg.mkdir()
    cases: list[tuple[list[str | Path], str]] = [
        (["data", "validate", "/dev/zero"], "/dev/zero: is not a regular file"),
        (["data", "validate", fifo], f"{fifo}: is not a regular file"),
        (["data", "validate", deep], f"{deep}: JSON nested too deeply"),
        (["data", "validate", deep_lines], f"{deep_lines}: no line is valid JSON (JSON on line 1 is nested too deeply"),
        (["config", "show", "--config", binary_cfg], f"config file {binary_cfg}: is a binary file"),
        (["config", "show", "--config", folder_cfg], f"{folder_cfg}: is a folder, expected a config file"),
        (["eval", "calibrate-judge", "/dev/zero", "/dev/zero"], "/dev/zero: is not a regular file"),
        (["eval", "track1", "/dev/zero", LABELS], "/dev/zero: is not a regular file"),
    ]
    runs = run_script_many([args for args, _ in cases], timeout=30)
    for (args, text), run in zip(cases, runs, strict=True):
        assert run.code == 2, (args, run.code, run.output[-2000:])
        assert text in run.stderr, (args, run.stderr[-2000:])
        assert "Traceback" not in run.output and "RecursionError" not in run.output
        assert len(run.stderr.strip().splitlines()) == 1, run.stderr


def test_size_cap_is_configurable_and_covers_zip_members(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    big.write_text(json.dumps(["a description " * 10] * 20_000))  # about 3 MB
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("track_1_test.json", "[" + " " * (3 * 1024 * 1024) + "]")
    over, zipped = run_script_many([["data", "validate", big], ["eval", "track1", bomb, LABELS]],
                                   env={bounded.ENV_MAX_INPUT_MB: "1"}, timeout=30)
    under = run_script("data", "validate", big, "--json", env={bounded.ENV_MAX_INPUT_MB: "8"})
    assert over.code == 2 and f"{big}: 2." in over.stderr and "over the 1.0 MB input limit" in over.stderr
    assert zipped.code == 2 and f"{bomb}!track_1_test.json: 3.0 MB uncompressed" in zipped.stderr
    assert under.code == 0, under.output[-500:]


def test_config_key_sets_the_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from portraitcraft.cli.common import config_from_cli

    big = tmp_path / "big.json"
    big.write_text(json.dumps(["x" * 1000] * 2000))
    monkeypatch.delenv(bounded.ENV_MAX_INPUT_MB, raising=False)
    try:
        config_from_cli(None, ["limits.max_input_mb=1"])
        with pytest.raises(DataError, match=r"over the 1\.0 MB input limit"):
            read_records(big)
        config_from_cli(None, [])
        assert len(read_records(big)) == 2000
    finally:
        bounded.set_max_input_mb(None)
    show = run_script("config", "show", "--json")
    assert json.loads(show.stdout)["limits"]["max_input_mb"] == bounded.DEFAULT_MAX_INPUT_MB


def test_bad_env_cap_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(bounded.ENV_MAX_INPUT_MB, "lots")
    with pytest.raises(DataError, match="PORTRAITCRAFT_LIMITS__MAX_INPUT_MB='lots'"):
        bounded.max_input_bytes()
