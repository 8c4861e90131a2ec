"""The CLI reference, generated from the typer app itself (`portraitcraft.cli.root.build_command()`).

Every command and subcommand the console script has, with its usage line, help text, arguments, options
(declaration, help, default and bounds exactly as `--help` shows them) and exit codes. Called by
`reference_pages.py` at build time and by tests/test_docs*.py.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from markdown_cells import cell, code
from typer._click.core import Context

from portraitcraft.cli import root

PROG = "portraitcraft"
EXIT_CODES_HEADING = "Exit codes"
_EXIT_PARAGRAPH = re.compile(r"^\s*Exit codes?:\s*(?P<text>.+)$", re.S | re.M | re.I)
# "Exit codes: 0 ...; 3 ...", or a short help's own "Exit 0 valid, 2 not." sentence
_EXIT_SENTENCE = re.compile(r"\bExit(?: codes?:)?\s+(?P<text>\d.*?)(?:\.(?=\s|$)|\Z)", re.S)


@dataclass(frozen=True)
class Param:
    """One argument or option as `--help` shows it."""

    kind: str  # "argument" | "option"
    name: str  # the declaration: `ITEMS`, `-c, --config <path>`
    help: str
    extras: str  # `[required]`, `[default: 512]`, `[x>=0]` (what --help appends)


@dataclass(frozen=True)
class Command:
    """One command of the tree (`portraitcraft eval track2`)."""

    path: tuple[str, ...]  # ("eval", "track2"); () for the root
    usage: str
    help: str
    params: tuple[Param, ...]
    subcommands: tuple[str, ...] = field(default_factory=tuple)

    @property
    def name(self) -> str:
        return " ".join((PROG, *self.path))

    @property
    def anchor(self) -> str:
        """The HTML id of the command's heading (`eval-track2`; `portraitcraft` for the root)."""
        return "-".join(self.path) or PROG

    @property
    def exit_codes(self) -> str | None:
        """The command's own exit codes from its help ("Exit codes: 0 ...; 3 ..." or "Exit 0 valid, 2 not.")."""
        match = _EXIT_SENTENCE.search(self.help)
        return " ".join(match.group("text").split()) if match else None


def _param(param: Any, ctx: Context) -> Param | None:
    record = param.get_help_record(ctx)
    if record is None or getattr(param, "hidden", False):
        return None
    decl, text = record
    extras = " ".join(re.findall(r"\[[^\[\]]*\]\s*$", text or ""))
    kind = "argument" if type(param).__name__.endswith("Argument") else "option"
    return Param(kind=kind, name=decl, help=" ".join((param.help or "").split()), extras=extras.strip())


def walk(command: Any | None = None, ctx: Context | None = None, path: tuple[str, ...] = ()) -> Iterator[Command]:
    """Every visible command, depth first in the order `--help` lists them (the root first)."""
    command = command or root.build_command()
    ctx = ctx or Context(command, info_name=PROG)
    subcommands = {n: c for n, c in getattr(command, "commands", {}).items() if not c.hidden}
    params = tuple(p for p in (_param(p, ctx) for p in command.get_params(ctx)) if p is not None)
    yield Command(
        path=path,
        usage=" ".join([ctx.command_path, *command.collect_usage_pieces(ctx)]),
        help=inspect.cleandoc(command.help or command.short_help or ""),
        params=params,
        subcommands=tuple(subcommands),
    )
    for name, sub in subcommands.items():
        yield from walk(sub, Context(sub, info_name=name, parent=ctx), (*path, name))




def _help_markdown(text: str) -> str:
    """The help text as Markdown paragraphs (the Exit codes paragraph is shown in its own block)."""
    paragraphs = [p for p in re.split(r"\n\s*\n", text) if p.strip() and not _EXIT_PARAGRAPH.match(p)]
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


def common_exit_codes() -> str:
    """The exit-code convention every command follows, from the console-script entry's docstring."""
    doc = inspect.cleandoc(root.main.__doc__ or "")
    match = _EXIT_PARAGRAPH.search(doc)
    return " ".join(match.group("text").split()) if match else ""


def render(*, exit_codes_guide: str | None = None) -> str:
    """The whole reference page (Markdown). `exit_codes_guide`: a docs path to link for the details."""
    commands = list(walk())
    see = f" The [exit codes guide]({exit_codes_guide}) explains each one." if exit_codes_guide else ""
    out = [
        "# CLI reference",
        "",
        f"Generated at build time from the typer app (`portraitcraft.cli.root.build_command()`): every command "
        f"and subcommand `{PROG} --help` lists, with exactly the arguments, options, defaults and bounds "
        f"`--help` shows.",
        "",
        f"## {EXIT_CODES_HEADING} {{#exit-codes}}",
        "",
        f"Every command: {common_exit_codes()} A command that documents codes of its own lists them under "
        f"its entry.{see}",
        "",
        "## Commands",
        "",
        "| command | what it does |",
        "| --- | --- |",
    ]
    for cmd in commands[1:]:
        first = _help_markdown(cmd.help).split("\n\n")[0]
        out.append(f"| [`{cmd.name}`](#{cmd.anchor}) | {cell(first)} |")
    out.append("")
    for cmd in commands:
        level = "#" * min(2 + len(cmd.path), 4) if cmd.path else "##"
        out += [f"{level} `{cmd.name}` {{#{cmd.anchor}}}", "", f"```text\n{cmd.usage}\n```", ""]
        if cmd.help:
            out += [_help_markdown(cmd.help), ""]
        if cmd.subcommands:
            links = ", ".join(f"[`{s}`](#{'-'.join((*cmd.path, s))})" for s in cmd.subcommands)
            out += [f"Subcommands: {links}.", ""]
        for kind, title in (("argument", "Arguments"), ("option", "Options")):
            rows = [p for p in cmd.params if p.kind == kind]
            if rows:
                out += [f"**{title}**", "", f"| {kind} | description | default / bounds |", "| --- | --- | --- |"]
                out += [f"| {code(p.name)} | {cell(p.help)} | {cell(p.extras)} |" for p in rows]
                out.append("")
        if cmd.path and not cmd.subcommands:
            codes = cmd.exit_codes
            out += [f"**{EXIT_CODES_HEADING}:** " + (codes or "the [common codes](#exit-codes)."), ""]
    return "\n".join(out)
