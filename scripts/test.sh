#!/usr/bin/env bash
# Set up a fresh venv and run every test tier. This is the README's test command and what .ci/run calls.
#   bash scripts/test.sh            # everything: lint, unit + fake-server tests, tiny diffusers, real vLLM tier
#   PORTRAITCRAFT_SKIP_VLLM=1 bash scripts/test.sh   # skip the real-vLLM tier (no multi-GB install)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
VENV=${PORTRAITCRAFT_VENV:-.venv}

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
# torch pinned first: a bare `torch` would pull a multi-GB CUDA build.
"$VENV/bin/python" -m pip install -q "torch==2.13.0"
"$VENV/bin/python" -m pip install -q -e ".[all]"

if [ "${PORTRAITCRAFT_SKIP_VLLM:-0}" != "1" ]; then
  bash scripts/setup_vllm.sh
fi

"$VENV/bin/ruff" check --output-format concise .
"$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
