"""`portraitcraft config show`: the effective configuration, secrets masked."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.syntax import Syntax

from portraitcraft.cli.common import ConfigOption, SetOption, config_from_cli, console, print_json

app = typer.Typer(no_args_is_help=True)

ENDPOINT_SECTIONS = ("critic", "judge", "assessor", "miner")


@app.command("show")
def show(
    config: Path | None = ConfigOption,
    sets: list[str] | None = SetOption,
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Print the effective config (file < PORTRAITCRAFT_* env < --set) with secrets masked."""
    cfg = config_from_cli(config, sets)
    data = cfg.masked()
    keys = {s: ("set" if os.environ.get(getattr(cfg, s).api_key_env) else "not set") for s in ENDPOINT_SECTIONS}
    if as_json:
        data["_api_keys"] = keys
        print_json(data)
        return
    console.print(Syntax(_to_toml(data), "toml", theme="ansi_dark", word_wrap=True))
    for section, state in keys.items():
        console.print(f"# {section}: key from ${getattr(cfg, section).api_key_env} is {state}", highlight=False)


def _to_toml(data: dict, prefix: str = "") -> str:
    """A readable TOML rendering (no dependency: values as JSON literals, which TOML mostly accepts)."""
    import json

    scalars, tables = [], []
    for key, value in data.items():
        if isinstance(value, dict) and value:
            tables.append((key, value))
        elif value is None:
            scalars.append(f"# {key} = (unset)")
        else:
            scalars.append(f"{key} = {json.dumps(value)}")
    out = []
    if prefix and scalars:
        out.append(f"[{prefix}]")
    out.extend(scalars)
    for key, value in tables:
        out.append("")
        out.append(_to_toml(value, f"{prefix}.{key}" if prefix else key))
    return "\n".join(out)
