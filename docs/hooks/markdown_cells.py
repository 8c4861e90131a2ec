"""Table-cell helpers shared by the reference generators."""

from __future__ import annotations


def cell(text: str) -> str:
    """Text for one Markdown table cell (a `|` would end the cell, a newline the row)."""
    return text.replace("|", "\\|").replace("\n", " ")


def code(text: str) -> str:
    """Inline code for a table cell: `<code>` with `&`, `<` and `|` escaped (backticks cannot hold a `|`)."""
    return "<code>" + text.replace("&", "&amp;").replace("<", "&lt;").replace("|", "&#124;") + "</code>"
