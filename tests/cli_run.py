"""Run the real console entry point (`portraitcraft.cli.main`) in-process: error mapping and exit codes
included, which typer's CliRunner on the bare app would bypass."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import pytest

from portraitcraft.cli import main


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> CliResult:
    monkeypatch.setattr(sys, "argv", ["portraitcraft", *args])
    capsys.readouterr()
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out = capsys.readouterr()
    return CliResult(code, out.out, out.err)
