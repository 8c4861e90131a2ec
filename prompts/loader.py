"""Load and render the prompt text assets that live beside this file (no prompt text in Python).

Templates are Jinja2 with StrictUndefined: a variable a template needs but is not given is an error, not
an empty string. `{# ... #}` comments document a template without reaching the model.
"""

from __future__ import annotations

import functools
from pathlib import Path, PurePosixPath
from typing import Any

import jinja2

from portraitcraft.errors import PortraitcraftError

PROMPTS_DIR = Path(__file__).resolve().parent


class PromptError(PortraitcraftError):
    """A prompt asset is missing, outside the prompts folder, or fails to render."""


def _check(relpath: str) -> str:
    parts = PurePosixPath(relpath.replace("\\", "/"))
    if parts.is_absolute() or ".." in parts.parts or not parts.parts:
        raise PromptError(f"prompt {relpath!r}: must be a relative path inside {PROMPTS_DIR}")
    return parts.as_posix()


def load_prompt(relpath: str) -> str:
    """The raw text of a prompt asset.

    Args:
        relpath (str): a path relative to the prompts folder, e.g. "judge/default.md".

    Raises:
        PromptError: the file does not exist or the path leaves the prompts folder.

    Example:
        >>> load_prompt("judge/default.md")[:1]  # doctest: +SKIP
        '#'
    """
    path = PROMPTS_DIR / _check(relpath)
    if not path.is_file():
        raise PromptError(f"prompt {relpath!r}: no such file under {PROMPTS_DIR}")
    return path.read_text(encoding="utf-8")


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(PROMPTS_DIR),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_prompt(relpath: str, **variables: Any) -> str:
    """Render a prompt asset as a Jinja2 template; leading/trailing blank space is stripped.

    Args:
        relpath (str): a path relative to the prompts folder, e.g. "judge/sampled.md".
        **variables: the template's variables.

    Raises:
        PromptError: a missing file, a syntax error, or a variable the template needs but was not given.

    Example:
        >>> render_prompt("judge/sampled.md", content="a woman", composition="centred")  # doctest: +SKIP
    """
    name = _check(relpath)
    try:
        return _environment().get_template(name).render(**variables).strip()
    except jinja2.TemplateNotFound:
        raise PromptError(f"prompt {relpath!r}: no such file under {PROMPTS_DIR}") from None
    except jinja2.UndefinedError as exc:
        raise PromptError(f"prompt {relpath!r}: {exc.message}") from None
    except jinja2.TemplateSyntaxError as exc:
        raise PromptError(f"prompt {relpath!r} line {exc.lineno}: {exc.message}") from None


def render_text(text: str, **variables: Any) -> str:
    """Render template text that lives elsewhere (a user's own rubric file) with the same rules.

    Example:
        >>> render_text("{# a note #}Score {{ what }}.", what="the image")
        'Score the image.'
    """
    try:
        return _environment().from_string(text).render(**variables).strip()
    except jinja2.UndefinedError as exc:
        raise PromptError(f"prompt text: {exc.message}") from None
    except jinja2.TemplateSyntaxError as exc:
        raise PromptError(f"prompt text line {exc.lineno}: {exc.message}") from None
