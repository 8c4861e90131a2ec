"""The installed `portraitcraft.*` names as one folder tree, for mkdocstrings' static analysis (griffe).

The top-level folders install as `portraitcraft.agents`, `portraitcraft.tools`, ... through setuptools
`package-dir` (pyproject.toml); griffe follows only a top-level mapping, so it cannot find
`portraitcraft.agents` in the checkout. This builds, in a temporary folder, a `portraitcraft/` whose entries
are symbolic links to the kernel's files and to the mapped folders (read from pyproject.toml, the one list).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

PACKAGE = "portraitcraft"


def checkout(fallback: Path) -> Path:
    """The source checkout the installed `portraitcraft` comes from (editable install), else `fallback`."""
    import portraitcraft

    here = Path(portraitcraft.__file__).resolve().parent.parent
    return here if (here / "pyproject.toml").is_file() else fallback


def package_dirs(repo: Path) -> dict[str, Path]:
    """`portraitcraft.x` -> its folder in the checkout, from pyproject.toml's `[tool.setuptools] package-dir`."""
    pyproject = tomllib.loads((repo / "pyproject.toml").read_text(encoding="utf-8"))
    mapping = pyproject["tool"]["setuptools"]["package-dir"]
    return {name: (repo / folder).resolve() for name, folder in mapping.items()}


def build_tree(repo: Path, into: Path) -> Path:
    """Make `into/portraitcraft/` mirror the installed package; returns `into` (the search path)."""
    dirs = package_dirs(repo)
    top = into / PACKAGE
    top.mkdir(parents=True, exist_ok=True)
    for entry in dirs[PACKAGE].iterdir():
        if entry.name != "__pycache__":
            (top / entry.name).symlink_to(entry)
    for name, folder in dirs.items():
        parts = name.split(".")
        if len(parts) == 2:  # portraitcraft.agents -> agents/
            (top / parts[1]).symlink_to(folder, target_is_directory=True)
    return into
