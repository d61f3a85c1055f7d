"""Helpers for the serving tests: the vLLM engine fixture and process checks."""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from tuneship.config import ServeConfig

REQUIRE_ENV = "TUNESHIP_REQUIRE_VLLM"


def engine_python_or_skip() -> Path:
    """Return the vLLM engine's Python; skip (or fail under TUNESHIP_REQUIRE_VLLM=1)."""
    from tuneship.serving.engine import EngineNotFoundError, find_engine_python

    try:
        return find_engine_python()
    except EngineNotFoundError as exc:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but the vLLM engine is missing: {exc}")
        pytest.skip(f"vLLM engine venv absent (CI creates it): {exc}")


# Generous: a loaded 2-core CI machine once needed more than 300 s in a container.
STARTUP_TIMEOUT_S = 600


def tiny_serve_options(engine: Path, **changes: Any) -> ServeConfig:
    """Serve options for the tiny model on vLLM's CPU backend (float32, 512 tokens)."""
    values: dict[str, Any] = {
        "target": "local",
        "engine_python": str(engine),
        "dtype": "float32",
        "max_model_len": 512,
        "cpu_kvcache_space_gib": 1,
        "startup_timeout_s": STARTUP_TIMEOUT_S,
        # Eager mode skips torch.compile: a faster start on 2 cores, same HTTP behaviour.
        "extra_options": {"enforce_eager": True},
    }
    values.update(changes)
    return ServeConfig.model_validate(values)


def group_pids(pgid: int) -> list[int]:
    """Return live processes in group ``pgid`` per psutil (independent of tuneship)."""
    found = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(proc.pid)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return found


def assert_group_gone(pgid: int, reap_wait_s: float = 30.0) -> None:
    """Assert that no process of group ``pgid`` is alive, by psutil and by killpg.

    Killed orphans are reaped by PID 1 when it gets to it (in some sandboxes PID 1 is not a
    prompt init); until then killpg still finds them as zombies. A zombie holds no memory,
    GPU or port, so members that are all zombies count as gone.
    """
    assert group_pids(pgid) == []
    deadline = time.monotonic() + reap_wait_s
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        if group_pids(pgid) == [] and time.monotonic() > deadline:
            return  # only unreaped zombies are left
        if group_pids(pgid):
            raise AssertionError(f"process group {pgid} has live members: {group_pids(pgid)}")
        time.sleep(0.2)


DRIVER = r"""
import json, sys, time
from tuneship.config import ServeConfig
from tuneship.serving import LocalVllmTarget, managed_deployment

options = ServeConfig.model_validate_json(sys.argv[1])
model, name, registry_url = sys.argv[2], sys.argv[3], sys.argv[4]

def on_start(proc):
    print(json.dumps({"event": "started", "pgid": proc.pid}), flush=True)

with managed_deployment(
    model, options, name=name, registry_url=registry_url,
    target=LocalVllmTarget(on_start=on_start),
) as info:
    print(json.dumps({"event": "ready", "pgid": info.pgid}), flush=True)
    time.sleep(600)
"""


class Driver:
    """A child Python process that serves under managed_deployment, for signal tests."""

    def __init__(self, tmp: Path, options: ServeConfig, model: Path, name: str, registry: str):
        script = tmp / "driver.py"
        script.write_text(DRIVER, encoding="utf-8")
        self.proc = subprocess.Popen(
            [sys.executable, str(script), options.model_dump_json(), str(model), name, registry],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._selector = selectors.DefaultSelector()
        assert self.proc.stdout is not None
        self._selector.register(self.proc.stdout, selectors.EVENT_READ)

    def wait_for(self, event: str, timeout_s: float = 400.0) -> dict[str, Any]:
        """Return the first JSON line with ``event`` from the child's stdout."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self._selector.select(timeout=1.0):
                continue
            line = self.proc.stdout.readline()
            if not line:
                err = self.proc.stderr.read() if self.proc.stderr else ""
                raise AssertionError(f"driver exited before {event!r}:\n{err[-3000:]}")
            data = json.loads(line)
            if data.get("event") == event:
                return dict(data)
        raise AssertionError(f"driver did not report {event!r} in {timeout_s} s")

    def finish(self, timeout_s: float = 120.0) -> tuple[int, str]:
        """Wait for the child to exit; return its exit code and stderr."""
        _, err = self.proc.communicate(timeout=timeout_s)
        return self.proc.returncode, err
