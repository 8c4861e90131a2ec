"""One page per critic rule (`prompts/rules/*.md`), generated from the shipped rule files at build time."""

from __future__ import annotations

import re

from markdown_cells import code

from portraitcraft.prompts.rules import Rule, load_rules


def rules() -> list[Rule]:
    """The shipped rule set, in the critic's order."""
    return load_rules()


def page_name(rule: Rule) -> str:
    """The rule's page inside reference/rules/ (`placement.md`)."""
    return f"{rule.id}.md"



def render_rule(rule: Rule) -> str:
    """A rule's page: its front matter as a table, then the body the VLM reads (headings one level down)."""
    applies = ", ".join(code(c) for c in rule.applies_when) or "always"
    body = re.sub(r"^(#+) ", r"#\1 ", rule.body.strip(), flags=re.M)
    return "\n".join([
        f"# {rule.title}",
        "",
        f"Generated from `prompts/rules/{rule.id}.md` (`portraitcraft rules show {rule.id}` prints the same).",
        "",
        "| field | value |",
        "| --- | --- |",
        f"| id | {code(rule.id)} |",
        f"| category | {rule.category} |",
        f"| severity | {rule.severity} (1-5) |",
        f"| applies when | {applies} |",
        f"| geometric cross-check | {code(rule.geometry) if rule.geometry else 'none'} |",
        f"| model-free check | {code(rule.heuristic) if rule.heuristic else 'none'} |",
        "",
        "**Question asked of the VLM** (yes = the failure is present):",
        "",
        f"> {rule.question}",
        "",
        "**Edit instruction template** (Jinja2: `expected`, `measured`, `phrase`, `evidence`):",
        "",
        f"```jinja\n{rule.instruction}\n```",
        "",
        body,
        "",
    ])


def render_index() -> str:
    """The rule set's index page: one row per rule with a link to its page."""
    out = [
        "# Critic rules",
        "",
        "The rule prompts the VLM critic asks of every image (`prompts/rules/*.md`), one page each, generated "
        "from the shipped files. How rules are written, checked (`portraitcraft rules lint`) and mined from "
        "data: the [rules and mining guide](../../guides/rules-and-mining.md).",
        "",
        "| rule | category | severity | applies when | cross-check |",
        "| --- | --- | --- | --- | --- |",
    ]
    for rule in rules():
        check = rule.geometry or rule.heuristic or ""
        applies = ", ".join(code(c) for c in rule.applies_when) or "always"
        out.append(f"| [{rule.title}]({page_name(rule)}) | {rule.category} | {rule.severity} | {applies} | "
                   f"{code(check) if check else ''} |")
    out.append("")
    return "\n".join(out)
