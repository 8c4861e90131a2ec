#!/usr/bin/env bash
# Create (or reuse) the project venv with torch pinned and every extra. Sourced by demo.sh and test.sh.
#   PORTRAITCRAFT_VENV   venv folder (default .venv)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
VENV=${PORTRAITCRAFT_VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
# torch pinned first: a bare `torch` would pull a multi-GB CUDA build on a CPU box.
"$VENV/bin/python" -m pip install -q "torch==2.13.0"
"$VENV/bin/python" -m pip install -q -e ".[all]"
echo "[setup] $("$VENV/bin/python" -c 'import torch, diffusers; print("torch", torch.__version__, "diffusers", diffusers.__version__)')"
