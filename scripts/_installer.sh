# shellcheck shell=bash
# Package installer used by install.sh and setup-vllm-engine.sh (sourced, not run).
#
# uv (https://docs.astral.sh/uv/) installs the same packages as pip from the same places, but
# resolves and installs several times faster; where uv cannot be had, pip does the work as
# before. What gets installed does not change:
#   - venvs are still made by `python -m venv` (pip and setuptools inside, as before; other
#     tools such as a Hub model fetch run `python -m pip`);
#   - uv gets pip's own configuration (`pip config list`: PIP_* variables, pip.conf files):
#     every index URL, extra index URL, find-links location and constraints file, and picks
#     the best version across all indexes as pip does (--index-strategy unsafe-best-match).
#     That is how a local wheel such as torch 2.13.0+cpu under a find-links folder is found.
#
# Environment:
#   TUNESHIP_INSTALLER  auto (default: uv when on PATH or installable, else pip), uv, pip
#   TUNESHIP_UV_SPEC    what `pip install` fetches when uv is not on PATH (default: uv)
#   TUNESHIP_UV_DIR     where that uv is kept between installs
#                       (default: ${XDG_CACHE_HOME:-$HOME/.cache}/tuneship-uv)

UV=""
UV_ARGS=()

# installer_setup PYTHON: choose uv or pip; PYTHON (any interpreter with pip) bootstraps uv.
installer_setup() {
  local py="$1" mode="${TUNESHIP_INSTALLER:-auto}"
  UV=""
  UV_ARGS=()
  if [[ "$mode" == "pip" ]]; then
    return 0
  fi
  if command -v uv >/dev/null 2>&1; then
    UV="$(command -v uv)"
  else
    local dir="${TUNESHIP_UV_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tuneship-uv}"
    if [[ ! -x "$dir/bin/uv" ]]; then
      # --target keeps uv out of the venvs (and out of an externally managed system Python).
      "$py" -m pip install -q --disable-pip-version-check --target "$dir" \
        "${TUNESHIP_UV_SPEC:-uv}" >/dev/null 2>&1 || true
    fi
    if [[ -x "$dir/bin/uv" ]] && "$dir/bin/uv" --version >/dev/null 2>&1; then
      UV="$dir/bin/uv"
    fi
  fi
  if [[ -z "$UV" ]]; then
    if [[ "$mode" == "uv" ]]; then
      echo "error: TUNESHIP_INSTALLER=uv but uv is not on PATH and pip could not install it" >&2
      return 1
    fi
    echo "uv not available: installing with pip"
    return 0
  fi
  # pip's configuration, as uv arguments (one per line).
  local line
  while IFS= read -r line; do
    [[ -n "$line" ]] && UV_ARGS+=("$line")
  done < <("$py" - <<'PY'
import subprocess, sys

try:
    listing = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"],
        capture_output=True, text=True, check=False,
    ).stdout
except OSError:
    listing = ""
flags = {
    "index-url": "--index-url",
    "extra-index-url": "--extra-index-url",
    "find-links": "--find-links",
    "constraint": "--constraint",
}
seen = set()
for raw in listing.splitlines():
    key, sep, value = raw.partition("=")
    if not sep:
        continue
    option = key.rsplit(".", 1)[-1]  # global.find-links, install.x, :env:.find-links
    flag = flags.get(option)
    if flag is None:
        continue
    for item in value.strip().strip("'\"").split():
        if (flag, item) not in seen:
            seen.add((flag, item))
            print(flag)
            print(item)
PY
)
  UV_ARGS+=(--index-strategy unsafe-best-match)
  echo "installing with $("$UV" --version) (pip's indexes and constraints)"
}

# pkg_install VENV_PYTHON REQUIREMENT...: install into the venv of VENV_PYTHON.
pkg_install() {
  local venv_py="$1"
  shift
  if [[ -n "$UV" ]]; then
    "$UV" pip install --quiet --python "$venv_py" "${UV_ARGS[@]}" "$@"
  else
    "$venv_py" -m pip install -q "$@"
  fi
}

# pkg_uninstall VENV_PYTHON NAME...: remove packages (missing ones are fine).
pkg_uninstall() {
  local venv_py="$1"
  shift
  if [[ -n "$UV" ]]; then
    "$UV" pip uninstall --quiet --python "$venv_py" "$@" || true
  else
    "$venv_py" -m pip uninstall -y -q "$@" || true
  fi
}
