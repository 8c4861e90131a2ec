"""A griffe extension for mkdocstrings: the project's docstrings title their doctests `Example:`.

Google style (and griffe) call that section `Examples:`; without this the `>>>` lines are read as Markdown
(`['subject']` looks like a link). Renamed on load, so the API pages show them as examples (code).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:\s*$", re.M)


class ExampleSections(griffe.Extension):
    """Rename every `Example:` section of a loaded docstring to `Examples:`."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _EXAMPLE.sub(r"\1Examples:", obj.docstring.value)
