"""`portraitcraft rules list|show|lint [--rules DIR]`: the critic's rule set (prompts/rules/*.md)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markdown import Markdown
from rich.markup import escape
from rich.table import Table

from portraitcraft.cli.common import console, print_json
from portraitcraft.errors import InputError
from portraitcraft.prompts.rules import lint_rules, load_rules

app = typer.Typer(no_args_is_help=True)
RulesOption = typer.Option(None, "--rules", help="A folder of extra rule files (*.md) added to the shipped set.")


@app.command("list")
def list_rules(
    rules: Path | None = RulesOption,
    as_json: bool = typer.Option(False, "--json", help="Print the rules as JSON."),
) -> None:
    """List every rule: id, severity, category, when it applies, its geometric / heuristic cross-check."""
    loaded = load_rules(rules)
    if as_json:
        print_json([r.model_dump(exclude={"body"}) for r in loaded])
        return
    table = Table("id", "sev", "category", "applies when", "geometry", "heuristic", "title")
    for r in loaded:
        table.add_row(r.id, str(r.severity), r.category, ", ".join(r.applies_when) or "always", r.geometry or "-",
                      r.heuristic or "-", r.title)
    console.print(table)


@app.command("show")
def show(
    rule_id: str = typer.Argument(..., help="The rule's id (see `rules list`)."),
    rules: Path | None = RulesOption,
    as_json: bool = typer.Option(False, "--json", help="Print the rule as JSON."),
) -> None:
    """Show one rule: its front matter and the body the VLM reads."""
    by_id = {r.id: r for r in load_rules(rules)}
    if rule_id not in by_id:
        raise InputError(f"no rule {rule_id!r}; known: {', '.join(sorted(by_id))}")
    rule = by_id[rule_id]
    if as_json:
        print_json(rule.model_dump())
        return
    console.print(f"[bold]{rule.id}[/] - {escape(rule.title)}  (severity {rule.severity}, {escape(rule.category)}; "
                  f"{escape(rule.path)})", highlight=False)
    console.print(f"applies when: {', '.join(rule.applies_when) or 'always'}; geometry: {rule.geometry}; "
                  f"heuristic: {rule.heuristic}", markup=False, highlight=False)
    console.print(f"question: {rule.question}", markup=False, highlight=False)
    console.print(f"instruction: {rule.instruction}", markup=False, highlight=False)
    console.print(Markdown(rule.body))


@app.command("lint")
def lint(
    rules: Path | None = typer.Option(None, "--rules", help="The folder to lint (default: the shipped rules)."),
    as_json: bool = typer.Option(False, "--json", help="Print the problems as JSON."),
) -> None:
    """Check rule files: malformed front matter, duplicate ids, unknown or missing fields, bad templates.

    Exit codes: 0 every file is a valid rule; 2 some problem (each listed with its file)."""
    found, problems = lint_rules(rules)
    if as_json:
        print_json({"n_rules": len(found), "problems": [{"path": p.path, "problem": p.problem} for p in problems]})
    else:
        for p in problems:
            console.print(f"[red]{escape(p.path)}[/]: {escape(p.problem)}", highlight=False, soft_wrap=True)
        console.print(f"{len(found)} valid rule(s), {len(problems)} problem(s)")
    if problems:
        raise typer.Exit(2)
