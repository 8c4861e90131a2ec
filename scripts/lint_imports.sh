#!/usr/bin/env bash
# Check the layer and no-cycle contracts of pyproject.toml ([tool.importlinter]) against a NON-editable install:
# grimp walks folders, and the editable install maps `portraitcraft.agents` onto `agents/` only at import time.
#   bash scripts/lint_imports.sh        (part of scripts/test.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${PORTRAITCRAFT_VENV:-.venv}
ROOT=$(pwd)
TARGET=$(mktemp -d)
trap 'rm -rf "$TARGET"' EXIT
if ! "$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation --target "$TARGET/site" . \
    >"$TARGET/pip.log" 2>&1; then
  cat "$TARGET/pip.log" >&2
  exit 1
fi
cd "$TARGET"
PYTHONPATH="$TARGET/site" "$ROOT/$VENV/bin/lint-imports" "$ROOT/pyproject.toml" --no-cache
