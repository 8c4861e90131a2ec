"""MkDocs hook: the generated reference pages and the guides' nav, made at build time so they cannot drift.

- `reference/cli.md` from the typer app, `reference/configuration.md` from the pydantic settings,
  `reference/rules/*.md` from `prompts/rules/*.md` (cli_reference.py, config_reference.py, rules_reference.py);
- every `docs/guides/*.md` gets into the Guides section of the nav: the pages mkdocs.yml names keep their
  order, any other guide (one merged later) is appended by its title, so adding a guide needs no nav edit.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

import api_sources
import cli_reference
import config_reference
import rules_reference
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

GUIDES_SECTION = "Guides"
_api_tree: tempfile.TemporaryDirectory[str] | None = None
RULES_DIR = "reference/rules"


def generated_pages(docs_dir: Path) -> dict[str, str]:
    """Every generated page: its path inside the docs folder -> its Markdown."""
    guide = "../guides/exit-codes.md" if (docs_dir / "guides" / "exit-codes.md").is_file() else None
    pages = {
        "reference/cli.md": cli_reference.render(exit_codes_guide=guide),
        "reference/configuration.md": config_reference.render(),
        f"{RULES_DIR}/index.md": rules_reference.render_index(),
    }
    for rule in rules_reference.rules():
        pages[f"{RULES_DIR}/{rules_reference.page_name(rule)}"] = rules_reference.render_rule(rule)
    return pages


def page_title(path: Path) -> str:
    """A page's first `# ` heading (its nav title), else its file name."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return path.stem.replace("-", " ").capitalize()


def _listed(entries: list[Any]) -> set[str]:
    out: set[str] = set()
    for entry in entries:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        if isinstance(value, list):
            out |= _listed(value)
        elif isinstance(value, str):
            out.add(value)
    return out


def guides_nav(nav: list[Any], docs_dir: Path) -> list[Any]:
    """`nav` with every docs/guides/*.md it does not name appended to its Guides section (title order)."""
    for entry in nav:
        if isinstance(entry, dict) and GUIDES_SECTION in entry:
            section = entry[GUIDES_SECTION]
            listed = _listed(section)
            extra = sorted(
                (page_title(p), f"guides/{p.name}") for p in (docs_dir / "guides").glob("*.md")
                if f"guides/{p.name}" not in listed
            )
            section.extend({title: path} for title, path in extra)
    return nav


@event_priority(100)  # before mkdocstrings' on_config, which builds its handlers
def on_config(config: MkDocsConfig) -> MkDocsConfig:
    global _api_tree
    config.nav = guides_nav(config.nav or [], Path(config.docs_dir))
    # mkdocstrings reads the installed names from a mirror of the package tree (api_sources.py); `mkdocs serve`
    # calls this on every rebuild, so the previous mirror goes first
    on_shutdown()
    _api_tree = tempfile.TemporaryDirectory(prefix="portraitcraft-api-")
    repo = api_sources.checkout(fallback=Path(config.config_file_path).parent)
    search_path = api_sources.build_tree(repo, Path(_api_tree.name))
    handler = config.plugins["mkdocstrings"].config.handlers.setdefault("python", {})
    handler["paths"] = [str(search_path)]
    return config


def on_shutdown() -> None:
    global _api_tree
    if _api_tree is not None:
        _api_tree.cleanup()
        _api_tree = None


def on_files(files: Files, config: MkDocsConfig) -> Files:
    pages = generated_pages(Path(config.docs_dir))
    rules_nav = [{re.sub(r"^# ", "", md.splitlines()[0]): path} for path, md in pages.items()
                 if path.startswith(f"{RULES_DIR}/") and not path.endswith("index.md")]
    for entry in config.nav or []:
        if isinstance(entry, dict) and "Reference" in entry:
            for item in entry["Reference"]:
                if isinstance(item, dict) and "Critic rules" in item:
                    item["Critic rules"] = [f"{RULES_DIR}/index.md", *rules_nav]
    for path, markdown in pages.items():
        files.append(File.generated(config, path, content=markdown))
    return files
