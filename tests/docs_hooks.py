"""Import the docs generators (docs/hooks/*.py: not a package) the way MkDocs does, for tests/test_docs*.py."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
HOOKS = ROOT / "docs" / "hooks"


def hook_module(name: str) -> ModuleType:
    """`docs/hooks/<name>.py` as a module (its folder on sys.path, as MkDocs puts it for hooks)."""
    if str(HOOKS) not in sys.path:
        sys.path.insert(0, str(HOOKS))
    return importlib.import_module(name)
