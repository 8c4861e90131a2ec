"""`mkdocs build --strict` of the docs as they are plus one guide dropped in (as the parallel guides will be
merged): no warning, the new guide in the nav with no nav edit, and the built references carry an anchor for
every command and configuration key, a page per rule, and the section the run report links to."""

from __future__ import annotations

import html
import inspect
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from docs_hooks import ROOT

from portraitcraft.config import load_config
from portraitcraft.docs_links import DOCS_URL_ENV, docs_link
from portraitcraft.graphs.generate_report import DOCS_SECTION, write_report
from portraitcraft.prompts.rules import load_rules
from portraitcraft.runs import ResultsLog


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("mkdocs", reason="the docs extra is not installed (pip install -e '.[docs]')")
    work = tmp_path_factory.mktemp("docs")
    shutil.copytree(ROOT / "docs", work / "docs", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "mkdocs.yml", work / "mkdocs.yml")
    (work / "docs" / "guides" / "zz-merged-later.md").write_text(
        "# A guide merged later\n\nSee [the CLI](../reference/cli.md#generate).\n", encoding="utf-8")
    exit_codes = work / "docs" / "guides" / "exit-codes.md"  # another engineer's guide, once merged
    if not exit_codes.exists():
        exit_codes.write_text("# Exit codes\n\nWhat each code means.\n", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(work / "site")],
                          cwd=work, capture_output=True, text=True, timeout=600,
                          env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin", "HOME": str(work)})
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "WARNING" not in proc.stderr, proc.stderr[-4000:]
    return work / "site"


def _ids(html: str) -> set[str]:
    return set(re.findall(r'\bid="([^"]+)"', html))


def test_strict_build_includes_a_guide_added_without_a_nav_edit(site: Path) -> None:
    page = site / "guides" / "zz-merged-later" / "index.html"
    assert page.is_file()
    home = (site / "index.html").read_text(encoding="utf-8")
    assert "A guide merged later" in home  # in the nav of every page
    assert 'href="guides/generate/"' in home
    cli = (site / "reference" / "cli" / "index.html").read_text(encoding="utf-8")
    assert 'href="../../guides/exit-codes/"' in cli  # the CLI reference links the exit-codes guide once it exists


def test_cli_page_has_every_command(site: Path) -> None:
    from portraitcraft.cli.root import build_command

    ids = _ids((site / "reference" / "cli" / "index.html").read_text(encoding="utf-8"))

    def paths(command: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
        for name, sub in command.commands.items():
            yield (*prefix, name)
            if hasattr(sub, "commands"):
                yield from paths(sub, (*prefix, name))

    names = list(paths(build_command()))
    assert ("eval", "track2") in names and ("train", "dpo") in names
    assert [p for p in names if "-".join(p) not in ids] == []


def test_configuration_page_has_every_key(site: Path) -> None:
    page = (site / "reference" / "configuration" / "index.html").read_text(encoding="utf-8")
    ids = _ids(page)
    data = load_config().masked()
    keys = [f"{section}.{key}" for section, values in data.items() for key in values]
    assert len(keys) > 250 and [k for k in keys if k not in ids] == []
    assert "PORTRAITCRAFT_GENERATOR__MAX_SEQUENCE_LENGTH" in page


def test_a_page_per_rule_and_the_api_page(site: Path) -> None:
    for rule in load_rules():
        page = site / "reference" / "rules" / rule.id / "index.html"
        assert rule.question in html.unescape(page.read_text(encoding="utf-8")), rule.id
    api = (site / "reference" / "api" / "index.html").read_text(encoding="utf-8")
    assert 'id="portraitcraft.agents.geometry_critic.critique_geometry"' in api
    from portraitcraft.agents.geometry_critic import critique_geometry

    summary = inspect.getdoc(critique_geometry).splitlines()[0]
    assert summary in html.unescape(api)  # the live docstring, rendered by mkdocstrings


def test_report_links_to_the_section_that_explains_it(site: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    page, anchor = DOCS_SECTION
    assert anchor in _ids((site / page / "index.html").read_text(encoding="utf-8"))
    ResultsLog(tmp_path / "results.jsonl").append({"id": "a", "image_path": "a.png", "status": "done",
                                                   "passed": True, "rounds": 0, "history": []})
    monkeypatch.setenv(DOCS_URL_ENV, "https://docs.example.org/portraitcraft/")
    report = write_report(tmp_path).read_text(encoding="utf-8")
    assert ('<a href="https://docs.example.org/portraitcraft/guides/generate/#the-run-report">'
            "docs/guides/generate.md#the-run-report</a>") in report


def test_docs_link_without_url_prefers_the_built_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DOCS_URL_ENV, raising=False)
    none = docs_link("guides/generate", "the-run-report", checkout=tmp_path)
    assert none.url is None and none.page == "docs/guides/generate.md#the-run-report"
    built = tmp_path / "site" / "guides" / "generate" / "index.html"
    built.parent.mkdir(parents=True)
    built.write_text("<html></html>")
    link = docs_link("guides/generate", "the-run-report", checkout=tmp_path)
    assert link.url == built.resolve().as_uri() + "#the-run-report"
    assert json.dumps(link.url).startswith('"file:///')
