"""Re-deploying a name that is still serving stops the old server first, or refuses."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tuneship.errors import ServingError
from tuneship.registry import DeploymentEntry, Registry
from tuneship.serving.existing import is_alive, make_way_for
from tuneship.serving.process import process_start_time


def _record_running(url: str, proc: subprocess.Popen[bytes]) -> None:
    Registry(url).upsert_deployment(
        DeploymentEntry(
            name="demo",
            model_name="me/m",
            model_version="v1",
            target="local-vllm",
            url="http://127.0.0.1:1/v1",
            status="running",
            details={
                "pid": proc.pid,
                "pgid": os.getpgid(proc.pid),
                "pid_start_time": process_start_time(proc.pid),
            },
        )
    )


def test_a_live_server_of_the_same_name_is_refused_or_replaced(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert make_way_for("demo", url, "replace") is None  # nothing recorded yet
    # Stands in for a kept vLLM server: its own process group, like the real one.
    proc = subprocess.Popen(["sleep", "120"], start_new_session=True)
    try:
        _record_running(url, proc)
        with pytest.raises(ServingError, match=r"'demo' is still serving.*deployments stop demo"):
            make_way_for("demo", url, "refuse")
        assert proc.poll() is None
        message = make_way_for("demo", url, "replace")
        assert message is not None and "stopped the running deployment 'demo'" in message
        assert proc.wait(timeout=30) is not None
        entry = Registry(url).get_deployment("demo")
        assert entry is not None and entry.status == "stopped"
        assert not is_alive(entry.details)
        assert make_way_for("demo", url, "refuse") is None  # a stopped one is no obstacle
    finally:
        if proc.poll() is None:
            proc.kill()
