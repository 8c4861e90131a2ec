"""Links from what portraitcraft writes (the run report, the compare page) to the docs section explaining it.

A run folder can be anywhere (`--out`) and gets copied between machines, so a link relative to it cannot
reach the built site. The link is therefore the docs page path (`docs/guides/generate.md#the-run-report`,
valid in every copy of the repository), made clickable where a site is known: `$PORTRAITCRAFT_DOCS_URL` (a
hosted copy of the site), else the site built in this checkout (`mkdocs build` writes `site/`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DOCS_URL_ENV = "PORTRAITCRAFT_DOCS_URL"
CHECKOUT = Path(__file__).resolve().parent.parent  # the source checkout in an editable install


@dataclass(frozen=True)
class DocsLink:
    """Where a docs section is: its page path in the repository, and a URL to open when one is known."""

    page: str
    url: str | None


def docs_link(page: str, anchor: str = "", *, checkout: Path = CHECKOUT) -> DocsLink:
    """The link to a docs section.

    Args:
        page (str): the page inside docs/, without `.md` (`"guides/generate"`).
        anchor (str, optional): the section's anchor (`"the-run-report"`).
        checkout (Path, optional): where to look for a built `site/` (defaults to this package's checkout).

    Example:
        >>> docs_link("guides/generate", "the-run-report", checkout=Path("/nonexistent")).page
        'docs/guides/generate.md#the-run-report'
    """
    fragment = f"#{anchor}" if anchor else ""
    source = f"docs/{page}.md{fragment}"
    base = os.environ.get(DOCS_URL_ENV, "").strip()
    if base:
        return DocsLink(source, f"{base.rstrip('/')}/{page}/{fragment}")
    built = checkout / "site" / page / "index.html"
    if built.is_file():
        return DocsLink(source, built.resolve().as_uri() + fragment)
    return DocsLink(source, None)
