"""Run the INSTALLED `portraitcraft` console script in subprocesses, as a user's shell does.

The script lives next to the test interpreter (the venv's bin/); PYTHONPATH puts this checkout first so the
script runs the code under test. Several invocations run concurrently to keep the tests fast.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(sys.executable).with_name("portraitcraft")


@dataclass
class Run:
    args: list[str]
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTRAITCRAFT_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["COLUMNS"] = "200"
    env.update(extra or {})
    return env


def run_script_many(calls: Sequence[Sequence[str | Path]], *, cwd: Path | None = None, timeout: float = 60,
                    env: dict[str, str] | None = None, parallel: int = 4) -> list[Run]:
    """Run `portraitcraft <args>` for each call, `parallel` at a time; results in call order."""
    assert SCRIPT.is_file(), f"the console script is not installed next to {sys.executable}"
    out: list[Run] = []
    for start in range(0, len(calls), parallel):
        batch = [list(map(str, args)) for args in calls[start:start + parallel]]
        procs = [
            subprocess.Popen([str(SCRIPT), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=cwd, env=_env(env))
            for args in batch
        ]
        for args, proc in zip(batch, procs, strict=True):
            stdout, stderr = proc.communicate(timeout=timeout)
            out.append(Run(args, proc.returncode, stdout, stderr))
    return out


def run_script(*args: str | Path, cwd: Path | None = None, timeout: float = 60,
               env: dict[str, str] | None = None) -> Run:
    return run_script_many([list(map(str, args))], cwd=cwd, timeout=timeout, env=env)[0]
