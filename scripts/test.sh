#!/usr/bin/env bash
# Set up a fresh venv and run every test tier. This is the README's test command and what .ci/run calls.
#   bash scripts/test.sh                              # lint, unit + fake-server tests, tiny diffusers, real vLLM
#   PORTRAITCRAFT_SKIP_VLLM=1 bash scripts/test.sh    # skip the real-vLLM tier (no multi-GB install)
#   bash scripts/test.sh -k judge                     # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${PORTRAITCRAFT_VENV:-.venv}
bash scripts/setup.sh
if [ "${PORTRAITCRAFT_SKIP_VLLM:-0}" != "1" ]; then
  bash scripts/setup_vllm.sh
fi
"$VENV/bin/ruff" check --output-format concise .
"$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
