"""The `portraitcraft` command: a typer app that registers one sub-app per area.

Sub-command modules live in cli/ and must not import torch at module level, so that
`portraitcraft --help` works on an install without the `diffusion` extra.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import typer
import typer.main
from rich.markup import escape

from portraitcraft.cli.common import err_console
from portraitcraft.errors import PortraitcraftError

# name -> (module under portraitcraft.cli, help). Each module exposes `app: typer.Typer`.
SUBAPPS: dict[str, tuple[str, str]] = {
    "data": ("data", "Validate and inspect PortraitCraft data files."),
    "config": ("config", "Show the effective configuration."),
    "plan": ("plan", "Fit and explain the canvas policy (description -> width x height)."),
    "eval": ("eval", "Score Track 1 and Track 2 outputs, calibrate the judge, measure edit fidelity."),
    "understand": ("understand", "Track 1: views, votes and calibration over a VLM; the submission zip; SFT export."),
    "pairs": ("pairs", "Export preference pairs (DPO) from generate, mine and group runs."),
    "rules": ("rules", "List, show and lint the critic's rule prompts (prompts/rules/*.md)."),
    "train": ("train", "LoRA training: SFT on Track 2 items, Diffusion-DPO on preference pairs."),
    "serve": ("serve", "Serve the critic as an HTTP reward for online RL (Flow-Factory protocol)."),
}
# Single commands: name -> (module, function name).
COMMANDS: dict[str, tuple[str, str]] = {
    "doctor": ("doctor", "doctor"),
    "generate": ("generate", "generate"),
    "report": ("report", "report"),
    "mine": ("mine", "mine"),
    "inspect": ("inspect", "inspect"),
    "reframe": ("reframe", "reframe"),
    "compare": ("compare", "compare"),
}

app = typer.Typer(
    name="portraitcraft",
    help="Composition-faithful portrait generation and PortraitCraft scoring.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        from importlib import metadata

        try:
            version = metadata.version("portraitcraft")
        except metadata.PackageNotFoundError:  # pragma: no cover - run from a bare checkout
            version = "unknown"
        typer.echo(f"portraitcraft {version}")
        raise typer.Exit(0)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    _state["debug"] = debug


for _name, (_module, _help) in SUBAPPS.items():
    _mod = importlib.import_module(f"portraitcraft.cli.{_module}")
    app.add_typer(_mod.app, name=_name, help=_help)
for _name, (_module, _func) in COMMANDS.items():
    _mod = importlib.import_module(f"portraitcraft.cli.{_module}")
    app.command(_name)(getattr(_mod, _func))


def _tidy_help(command: Any) -> None:
    """Help without type placeholders on boolean flags (`--json` takes no value, so no `<bool>`), and a
    repeatable option shows its value's name (`--ids ID`), not `<list[str]>`."""
    help_option = command.get_help_option(typer.Context(command))  # created once and cached by click
    if getattr(command, "help", None) and not getattr(command, "_markup_escaped", False):
        command.help = escape(command.help)  # help is plain text: `[default: ...]` is not rich markup
        command._markup_escaped = True
    for param in [*command.params, help_option]:
        if getattr(param, "help", None) and not getattr(param, "_markup_escaped", False):
            param.help = escape(param.help)
            param._markup_escaped = True
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
        elif getattr(param, "multiple", False) and param.metavar is None and getattr(param, "opts", None):
            param.metavar = param.opts[0].lstrip("-").upper().rstrip("S").replace("-", "_") or None
    for sub in getattr(command, "commands", {}).values():
        _tidy_help(sub)


def build_command() -> Any:
    """The click command tree behind `app`, with the help tidied (what the console script runs)."""
    command = typer.main.get_command(app)
    _tidy_help(command)
    return command


def main() -> None:
    """Console-script entry: the command's exit code reaches the shell; known errors are one readable line.

    Exit codes: 0 success; 1 an unexpected error (a bug: run with --debug); 2 bad input or usage (click's
    usage errors, `InputError`, `DataError`, a command's own "not valid" outcome); 130 interrupted.
    """
    debug = _state["debug"] or "--debug" in sys.argv
    try:
        code = build_command().main(args=sys.argv[1:], prog_name="portraitcraft", standalone_mode=False)
    except PortraitcraftError as exc:
        if _state["debug"] or debug:
            raise
        err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except typer.TyperException as exc:  # click's usage errors (typer vendors click): usage line, exit 2
        exc.show()  # type: ignore[attr-defined]
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
    except Exception as exc:  # anything unexpected is a bug: one line, exit 1
        if _state["debug"] or debug:
            raise
        err_console.print(f"[red]error:[/red] {type(exc).__name__}: {escape(str(exc))} (run with --debug for the "
                          "traceback)",
                          highlight=False, soft_wrap=True)
        sys.exit(1)
    # With standalone_mode=False click returns a `typer.Exit(code)` as its code (a plain return gives None);
    # it also turns Ctrl-C into Exit(130).
    if code == 130:
        err_console.print("interrupted")
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
