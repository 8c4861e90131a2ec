#!/usr/bin/env bash
# The README's main-job command: set up the venv (torch pinned) and run the offline demo on examples/.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${PORTRAITCRAFT_VENV:-.venv}
bash scripts/setup.sh
"$VENV/bin/python" scripts/demo.py "$@"
