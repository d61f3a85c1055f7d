"""The vLLM engine check imports vLLM once per install, not once per run."""

from __future__ import annotations

from pathlib import Path

from tuneship.serving.engine import probe_engine

# Stands in for a venv's interpreter: "imports vLLM" (prints its version) and counts calls.
FAKE_PYTHON = """#!/bin/sh
echo run >> "$(dirname "$0")/../imports.log"
echo "VLLM $(cat "$(dirname "$0")/../version")"
"""


def _fake_venv(root: Path, version: str = "0.32.0") -> Path:
    python = root / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(FAKE_PYTHON, encoding="utf-8")
    python.chmod(0o755)
    package = root / "lib" / "python3.11" / "site-packages" / "vllm"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("", encoding="utf-8")
    (root / "version").write_text(version, encoding="utf-8")
    return python


def _imports(root: Path) -> int:
    log = root / "imports.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_a_successful_import_is_remembered_until_the_install_changes(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    python = str(_fake_venv(venv))
    probe_engine.cache_clear()
    assert probe_engine(python) == "0.32.0"
    probe_engine.cache_clear()  # a new process: only the file remembers
    assert probe_engine(python) == "0.32.0"
    assert _imports(venv) == 1

    # An upgrade rewrites the package: imported again, the new version reported.
    init = venv / "lib" / "python3.11" / "site-packages" / "vllm" / "__init__.py"
    init.write_text("__version__ = '0.33.0'\n", encoding="utf-8")
    (venv / "version").write_text("0.33.0", encoding="utf-8")
    probe_engine.cache_clear()
    assert probe_engine(python) == "0.33.0"
    assert _imports(venv) == 2


def test_a_failed_import_is_tried_again_every_time(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    python = _fake_venv(venv)
    python.write_text('#!/bin/sh\necho run >> "$(dirname "$0")/../imports.log"\nexit 1\n')
    probe_engine.cache_clear()
    assert probe_engine(str(python)) is None
    probe_engine.cache_clear()
    assert probe_engine(str(python)) is None
    assert _imports(venv) == 2


def test_an_interpreter_outside_a_venv_layout_is_always_imported(tmp_path: Path) -> None:
    python = tmp_path / "python"
    python.write_text(FAKE_PYTHON.replace("/../", "/"), encoding="utf-8")
    python.chmod(0o755)
    (tmp_path / "version").write_text("0.32.0", encoding="utf-8")
    for _ in range(2):
        probe_engine.cache_clear()
        assert probe_engine(str(python)) == "0.32.0"
    assert len((tmp_path / "imports.log").read_text().splitlines()) == 2
