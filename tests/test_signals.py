"""Signals sent to a real ``tuneship run`` leave no process, no port and no open flow run."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from tests._serving_helpers import engine_python_or_skip
from tuneship.demo import demo_config_path

FINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _tree(pid: int) -> tuple[list[int], list[int]]:
    """Descendant pids of ``pid`` and the TCP ports they listen on."""
    pids, ports = [], []
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return [], []
    for child in children:
        pids.append(child.pid)
        try:
            ports += [c.laddr.port for c in child.net_connections("inet") if c.status == "LISTEN"]
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return pids, ports


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _wait_for(check: Callable[[], bool], proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        if proc.poll() is not None:
            pytest.fail(f"the run ended (rc {proc.returncode}) before the stage was reached")
        time.sleep(0.2)
    pytest.fail("the stage was not reached in time")


def _flow_run_states(prefect_home: Path) -> list[str]:
    with sqlite3.connect(prefect_home / "prefect.db") as db:
        return [row[0] for row in db.execute("select state_type from flow_run")]


STAGES = {
    # The training spec is written when the training task starts.
    "training": lambda tmp: any((tmp / "run").rglob("train-spec.json")),
    # The server's log file is created just before vLLM starts.
    "serving": lambda tmp: any((tmp / "home").rglob("server-*.log")),
}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("stage", "signum"),
    [
        ("training", signal.SIGTERM),
        ("training", signal.SIGHUP),
        ("training", signal.SIGINT),
        ("serving", signal.SIGTERM),
    ],
    ids=["training-TERM", "training-HUP", "training-INT", "serving-TERM"],
)
def test_a_signal_ends_every_process_the_run_started(
    tmp_path: Path, tiny_model_dir: Path, stage: str, signum: int
) -> None:
    sets = {
        # The demo's pre-trained base would be pre-trained first; the tiny model is ready.
        "model.base": tiny_model_dir,
        "workdir": tmp_path / "run",
        "publish.store_path": tmp_path / "store",
        "registry.url": f"sqlite:///{tmp_path / 'registry.db'}",
        "publish.vllm_load_check": "off",
        "training.eval_strategy": "no",
        "training.require_improvement": "false",
        "serve.target": "none",
    }
    if stage == "training":
        sets["training.max_steps"] = 5000  # long enough to be interrupted
    else:
        engine = engine_python_or_skip()
        sets |= {
            "training.max_steps": 2,
            "serve.target": "local",
            "serve.engine_python": engine,
            "serve.dtype": "float32",
            "serve.cpu_kvcache_space_gib": 1,
        }
    env = {
        **os.environ,
        "TUNESHIP_HOME": str(tmp_path / "home"),
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
    }
    env.pop("PREFECT_API_URL", None)  # the run starts its own temporary API, as for a user
    args = [sys.executable, "-m", "tuneship.cli", "run", str(demo_config_path())]
    for key, value in sets.items():
        args += ["--set", f"{key}={value}"]
    log = (tmp_path / "cli.log").open("wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_for(lambda: STAGES[stage](tmp_path), proc, timeout_s=300)
        time.sleep(1)  # let the stage get going
        pids, ports = _tree(proc.pid)
        assert pids, "the run started no processes (no temporary Prefect API?)"
        proc.send_signal(signum)
        rc = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    output = (tmp_path / "cli.log").read_text(errors="replace")
    assert rc != 0, output
    deadline = time.monotonic() + 15  # children get their own SIGTERM grace period
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.3)
    left = [p for p in pids if _alive(p)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"processes left running: {left}\n{output[-3000:]}"
    assert not [p for p in ports if _listening(p)], output[-3000:]
    states = _flow_run_states(tmp_path / "prefect-home")
    assert states and set(states) <= FINAL_STATES, states
    if stage == "serving":
        from tuneship.registry import Registry

        deployments = Registry(str(sets["registry.url"])).list_deployments()
        # Interrupted while starting, the server was never recorded, or recorded stopped.
        assert all(d.status == "stopped" for d in deployments), deployments
