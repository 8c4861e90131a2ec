"""The `portraitcraft` command: a typer app that registers one sub-app per area.

Sub-command modules live in portraitcraft/commands/ and must not import torch at module level, so that
`portraitcraft --help` works on an install without the `diffusion` extra.
"""

from __future__ import annotations

import importlib
import sys

import typer
from rich.console import Console

from portraitcraft.errors import PortraitcraftError

# name -> (module under portraitcraft.commands, help). Each module exposes `app: typer.Typer`.
SUBAPPS: dict[str, tuple[str, str]] = {
    "data": ("data", "Validate and inspect PortraitCraft data files."),
    "config": ("config", "Show the effective configuration."),
    "plan": ("plan", "Fit and explain the canvas policy (description -> width x height)."),
    "eval": ("eval", "Score Track 1 and Track 2 outputs, calibrate the judge, measure edit fidelity."),
    "train": ("train", "LoRA training: SFT on Track 2 items, Diffusion-DPO on preference pairs."),
    "serve": ("serve", "Serve the critic as an HTTP reward for online RL (Flow-Factory protocol)."),
}
# Single commands: name -> (module, function name).
COMMANDS: dict[str, tuple[str, str]] = {
    "doctor": ("doctor", "doctor"),
}

err_console = Console(stderr=True)
app = typer.Typer(
    name="portraitcraft",
    help="Composition-faithful portrait generation and PortraitCraft scoring.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
_state = {"debug": False}


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors.")) -> None:
    _state["debug"] = debug


for _name, (_module, _help) in SUBAPPS.items():
    _mod = importlib.import_module(f"portraitcraft.commands.{_module}")
    app.add_typer(_mod.app, name=_name, help=_help)
for _name, (_module, _func) in COMMANDS.items():
    _mod = importlib.import_module(f"portraitcraft.commands.{_module}")
    app.command(_name)(getattr(_mod, _func))


def main() -> None:
    """Console-script entry: known errors become one readable line and a non-zero exit."""
    try:
        app(standalone_mode=False)
    except PortraitcraftError as exc:
        if _state["debug"] or "--debug" in sys.argv:
            raise
        err_console.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(exc.exit_code)
    except (typer.Exit, SystemExit) as exc:
        code = getattr(exc, "exit_code", None)
        sys.exit(code if code is not None else getattr(exc, "code", 0))
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except Exception as exc:  # click usage errors and anything unexpected
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if _state["debug"] or "--debug" in sys.argv:
            raise
        err_console.print(f"[red]error:[/red] {type(exc).__name__}: {exc} (run with --debug for the traceback)",
                          highlight=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
