#!/usr/bin/env bash
# Makes the two Python environments the tests run the PyTorch engine under, in .cache/venvs/:
#   torch2  torch 2.13.0 (CPU build, pip's copy on this machine) + the test oracles from PyPI
#           (torchinfo, transformers, accelerate) + the Python dev tools scripts/lint.js runs
#           (ruff, mypy), on the `python3` first on PATH (3.11)
#   torch1  Debian's torch 1.13 + torchvision 0.14 (python3-torch, for /usr/bin/python3) with
#           torchinfo added, through a venv that sees the system packages
#   vision2 torch 2.14.1 + torchvision 0.29.1 + torchinfo: the torchvision model zoo on a torch 2.x
#           (no torchvision on PyPI imports beside torch 2.13, so this is its own environment; the
#           wheel is the CUDA build, ~5.5 GB on disk, ~1 min to install from the local index, and
#           runs on CPU). Only the python/tests/vision_test_*.py suites run here.
# The engine itself needs none of these packages: they are references for the tests.
# Idempotent: a stamp per environment records a finished install of these exact pins.
#
# torch is pinned and installed first on purpose: an unpinned torch, or a package that pulls a
# newer one, makes pip download a multi-GB CUDA build.
set -euo pipefail

TORCH2_PINS=(torch==2.13.0)
VISION2_PINS=(torch==2.14.1 torchvision==0.29.1)
ORACLE_PINS=(torchinfo==1.8.0 transformers==5.25.0 accelerate==1.16.0 ruff==0.17.6 mypy==2.4.1)

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venvs="${MODEL_LENS_VENVS:-$repo_root/.cache/venvs}"
log() { printf '[setup-python] %s\n' "$*" >&2; }

make_torch2() {
  local dir="$venvs/torch2" stamp="$venvs/torch2/.installed-${TORCH2_PINS[*]} ${ORACLE_PINS[*]}"
  stamp="${stamp// /_}"
  [ -f "$stamp" ] && return 0
  local py="${MODEL_LENS_TORCH2_BASE_PYTHON:-python3}"
  log "torch2: venv $dir (made with $py if missing); pip install ${TORCH2_PINS[*]}, then ${ORACLE_PINS[*]}"
  # An existing venv is topped up, not rebuilt: pip leaves what is already at its pin alone.
  [ -x "$dir/bin/pip" ] || "$py" -m venv "$dir"
  "$dir/bin/pip" install -q --disable-pip-version-check "${TORCH2_PINS[@]}"
  "$dir/bin/pip" install -q --disable-pip-version-check "${TORCH2_PINS[@]}" "${ORACLE_PINS[@]}"
  "$dir/bin/python" -c 'import torch, torchinfo, transformers; print("torch", torch.__version__)' >&2
  touch "$stamp"
}

make_torch1() {
  local dir="$venvs/torch1" stamp="$venvs/torch1/.installed-torchinfo==1.8.0"
  [ -f "$stamp" ] && return 0
  if ! /usr/bin/python3 -c 'import torch' 2>/dev/null; then
    log "torch1: /usr/bin/python3 cannot import torch; install Debian's python3-torch python3-torchvision"
    return 1
  fi
  log "torch1: /usr/bin/python3 -m venv --system-site-packages $dir; pip install torchinfo==1.8.0"
  rm -rf "$dir"
  /usr/bin/python3 -m venv --system-site-packages "$dir"
  "$dir/bin/pip" install -q --disable-pip-version-check --no-deps torchinfo==1.8.0
  "$dir/bin/python" -c 'import torch, torchinfo; print("torch", torch.__version__)' >&2
  touch "$stamp"
}

make_vision2() {
  local dir="$venvs/vision2" stamp="$venvs/vision2/.installed-${VISION2_PINS[*]} torchinfo==1.8.0"
  stamp="${stamp// /_}"
  [ -f "$stamp" ] && return 0
  local py="${MODEL_LENS_TORCH2_BASE_PYTHON:-python3}"
  log "vision2: $py -m venv $dir; pip install ${VISION2_PINS[*]}, then torchinfo==1.8.0"
  rm -rf "$dir"
  "$py" -m venv "$dir"
  "$dir/bin/pip" install -q --disable-pip-version-check "${VISION2_PINS[@]}"
  "$dir/bin/pip" install -q --disable-pip-version-check --no-deps torchinfo==1.8.0
  "$dir/bin/python" -c 'import torch, torchvision, torchinfo; print("torch", torch.__version__, "torchvision", torchvision.__version__)' >&2
  touch "$stamp"
}

# With arguments, only those environments (torch1, torch2, vision2); without, all three.
mkdir -p "$venvs"
for env_name in "${@:-torch1 torch2 vision2}"; do
  for e in $env_name; do
    case "$e" in
      torch1) make_torch1 ;;
      torch2) make_torch2 ;;
      vision2) make_vision2 ;;
      *) log "unknown environment $e (torch1, torch2, vision2)"; exit 2 ;;
    esac
  done
done
