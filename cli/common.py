"""Small helpers shared by the command modules: config loading from CLI options, JSON printing."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from portraitcraft.bounded import set_max_input_mb
from portraitcraft.config import PortraitcraftConfig, load_config, merge, parse_override

console = Console()
err_console = Console(stderr=True)
"""The one stderr console of the CLI: progress, warnings and errors (stdout keeps results and --json)."""

# The exit codes every command shares (docs/guides/exit-codes.md); 1 is only ever a bug.
EXIT_BAD_INPUT = 2
"""Bad input or usage: nothing was run (InputError, DataError, click's usage errors)."""
EXIT_NOTHING_DONE = 3
"""The command ran but nothing came of it: no item finished / scored (every one failed, or there were none)."""
EXIT_SOME_FAILED = 4
"""`--strict`: some items failed (the results of the others are still written)."""
EXIT_INTERRUPTED = 130
"""Ctrl-C: what finished is kept."""

ConfigOption = typer.Option(None, "--config", "-c", help="A TOML config file (see configs/).", exists=False)
SetOption = typer.Option(
    None, "--set", metavar="KEY=VALUE",
    help="Override one key, e.g. --set judge.model=gemini-3.1-pro (repeatable; beats env and file)."
)


def config_from_cli(path: Path | None, sets: list[str] | None = None, **flags: dict[str, Any]) -> PortraitcraftConfig:
    """File < env < `--set` overrides < dedicated flags (passed as {section: {key: value}})."""
    overrides: dict[str, Any] = {}
    for text in sets or []:
        overrides = merge(overrides, parse_override(text))
    for name, section in flags.items():
        overrides = merge(overrides, {name: {k: v for k, v in (section or {}).items() if v is not None}})
    cfg = load_config(path, overrides)
    set_max_input_mb(cfg.limits.max_input_mb)
    return cfg


def print_json(data: Any) -> None:
    """Machine-readable output on stdout (plain json, no rich markup)."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
