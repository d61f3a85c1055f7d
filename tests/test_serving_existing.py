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


class _SleepTarget:
    """A serving target whose 'server' is a sleeping process (the lifecycle is under test)."""

    name = "local-vllm"

    def deploy(self, model: object, options: object, *, name: str, **_: object):  # type: ignore[no-untyped-def]
        from tuneship.serving.base import DeploymentInfo

        proc = subprocess.Popen(["sleep", "120"], start_new_session=True)
        self.proc = proc
        return DeploymentInfo(
            name=name,
            target=self.name,
            url="http://127.0.0.1:1/v1",
            served_model_name=name,
            model=str(model),
            host="127.0.0.1",
            port=1,
            pid=proc.pid,
            pgid=proc.pid,
            pid_start_time=process_start_time(proc.pid),
        )

    def stop(self, deployment: object, timeout_s: float = 30.0) -> None:
        self.proc.terminate()
        self.proc.wait(timeout_s)


def test_a_termination_during_the_smoke_test_records_the_deployment_stopped(
    tmp_path: Path,
) -> None:
    # Prefect's SIGTERM bridge raises its TerminationSignal inside a flow; that is a user
    # stopping the run, so the deployment is 'stopped', not 'failed'.
    from prefect.exceptions import TerminationSignal

    from tuneship.config import ServeConfig
    from tuneship.serving.lifecycle import managed_deployment

    url = f"sqlite:///{tmp_path / 'r.db'}"
    target = _SleepTarget()
    with (
        pytest.raises(TerminationSignal),
        managed_deployment(
            "model",
            ServeConfig(),
            name="demo",
            registry_url=url,
            target=target,  # type: ignore[arg-type]
        ),
    ):
        raise TerminationSignal(15)
    assert target.proc.poll() is not None
    entry = Registry(url).get_deployment("demo")
    assert entry is not None and entry.status == "stopped"
