#!/usr/bin/env bash
# Set up a fresh venv and run every test tier. This is the README's test command and what .ci/run calls.
#   bash scripts/test.sh                              # lint, docs build, unit + fake-server tests, tiny diffusers, real vLLM
#   PORTRAITCRAFT_SKIP_VLLM=1 bash scripts/test.sh    # skip the real-vLLM tier (no multi-GB install)
#   bash scripts/test.sh -k judge                     # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${PORTRAITCRAFT_VENV:-.venv}
bash scripts/setup.sh
if [ "${PORTRAITCRAFT_SKIP_VLLM:-0}" != "1" ]; then
  bash scripts/setup_vllm.sh
fi
# Headless Chromium (Debian package) for the report's browser test; playwright drives it by executable_path
# (no browser download). Idempotent; if it cannot be installed here that one test skips and says why.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  { apt-get install -y -qq chromium || { apt-get update -qq && apt-get install -y -qq chromium; }; } >/dev/null 2>&1 \
    || echo "[test] chromium could not be installed: tests/test_generate_report.py's browser test will skip"
fi
"$VENV/bin/ruff" check --output-format concise .
# the docs site (mkdocs.yml, docs/; references generated from the code): any warning fails (broken link, missing page)
NO_MKDOCS_2_WARNING=1 "$VENV/bin/mkdocs" build --strict --quiet
bash scripts/lint_imports.sh   # the layer + no-cycle contracts ([tool.importlinter] in pyproject.toml)
"$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
