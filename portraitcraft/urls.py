"""Endpoint URLs: secrets in them masked for display, query strings kept apart from the path when joining.

Some hosted APIs take the key in the query (`https://host/v1?key=...`). Such a URL must never be shown as
is (config show, error messages, CSV reports), and a path must be joined BEFORE the query
(`https://host/v1/chat/completions?key=...`, not `https://host/v1?key=.../chat/completions`).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit, urlunsplit

SECRET_NAME = re.compile(r"(key|token|secret|password|passwd|authorization|auth|cookie|signature)", re.I)
_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")
_BARE_CREDENTIALS = re.compile(r"(?<![\w./:@-])[^/@\s:'\"]+:[^/@\s'\"]+@(?=[\w.\[-])")
"""`user:pw@host` with no scheme in front (a base_url typed without `http://`)."""
_QUERY_PARAM = re.compile(r"(?P<sep>[?&;])(?P<name>[^=&#\s'\"]+)=(?P<value>[^&#\s'\"<>]*)")
MASK = "***"


def mask_url_secrets(text: str) -> str:
    """Mask URL credentials (`user:pw@`) and secret-named query values (`?key=...`) anywhere in `text`.

    Example:
        >>> mask_url_secrets("https://u:pw@host/v1?key=AIza123&alt=json failed")
        'https://***@host/v1?key=***&alt=json failed'
    """
    text = _CREDENTIALS.sub(MASK + "@", text)
    text = _BARE_CREDENTIALS.sub(MASK + "@", text)

    def mask(m: re.Match[str]) -> str:
        if SECRET_NAME.search(m["name"]) and m["value"]:
            return f"{m['sep']}{m['name']}={MASK}"
        return m[0]

    return _QUERY_PARAM.sub(mask, text)


def check_base_url(url: str) -> str:
    """`url` when it is an http(s) URL with a host (and a valid port), else a ValueError whose message shows
    the URL masked (never its credentials).

    Example:
        >>> check_base_url("http://127.0.0.1:8000/v1")
        'http://127.0.0.1:8000/v1'
    """
    shown = mask_url_secrets(url)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number in range
    except ValueError as exc:
        raise ValueError(f"{shown!r} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{shown!r} must start with http:// or https://")
    if not parts.hostname:
        raise ValueError(f"{shown!r} names no host")
    return url


def split_query(url: str) -> tuple[str, dict[str, str]]:
    """The URL without its query and fragment, and the query as a dict (what an HTTP client sends as
    default query parameters on every request).

    Example:
        >>> split_query("https://host/v1beta/openai/?key=abc")
        ('https://host/v1beta/openai/', {'key': 'abc'})
    """
    parts = urlsplit(url)
    base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    return base, dict(parse_qsl(parts.query, keep_blank_values=True))


def join_url(base_url: str, path: str) -> str:
    """`path` appended to the base URL's path, the base URL's query kept at the end.

    Example:
        >>> join_url("https://host/v1?key=abc", "chat/completions")
        'https://host/v1/chat/completions?key=abc'
        >>> join_url("http://127.0.0.1:8000/v1/", "/models")
        'http://127.0.0.1:8000/v1/models'
    """
    parts = urlsplit(base_url)
    joined = parts.path.rstrip("/") + "/" + path.lstrip("/")
    return urlunsplit((parts.scheme, parts.netloc, joined, parts.query, ""))
