"""A local server lives as long as it should: with tuneship, or on its own when kept.

A stand-in engine (``serve.engine_command``: a small HTTP server answering ``/health``
and ``/v1/models`` as vLLM does) makes these seconds-long: the starting process is killed
with SIGKILL, which no handler sees, so only the kernel's parent-death signal can end the
server it started.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

from _serving_helpers import assert_group_gone, group_pids, tiny_serve_options

FAKE_ENGINE = """
import argparse, http.server, json, os, time

parser = argparse.ArgumentParser()
parser.add_argument("--served-model-name")
parser.add_argument("--host")
parser.add_argument("--port", type=int)
args, _ = parser.parse_known_args()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"data": [{"id": args.served_model_name}]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


# A slow start (vLLM loading weights) when the test asks for one.
time.sleep(float(os.environ.get("FAKE_ENGINE_START_DELAY_S", "0")))
http.server.HTTPServer((args.host, args.port), Handler).serve_forever()
"""

STARTER = """
import json, sys, time
from tuneship.config import ServeConfig
from tuneship.serving import managed_deployment

options = ServeConfig.model_validate_json(sys.argv[1])
with managed_deployment(sys.argv[2], options, name="lifetime", registry_url=sys.argv[3]) as info:
    print(json.dumps({"pgid": info.pgid, "url": info.url}), flush=True)
    time.sleep(120)
"""


def _launch(
    tmp_path: Path, tiny_model_dir: Path, keep: bool, start_delay_s: float = 0.0
) -> tuple[subprocess.Popen[str], str]:
    """Serve from a child process (the stand-in engine takes ``start_delay_s`` to start);
    return the child and the registry URL."""
    engine = tmp_path / "fake_engine.py"
    engine.write_text(textwrap.dedent(FAKE_ENGINE), encoding="utf-8")
    starter = tmp_path / "starter.py"
    starter.write_text(textwrap.dedent(STARTER), encoding="utf-8")
    options = tiny_serve_options(
        Path(sys.executable),
        engine_command=[sys.executable, str(engine)],
        keep_serving=keep,
        startup_timeout_s=120,
    )
    registry = f"sqlite:///{tmp_path / 'registry.db'}"
    proc = subprocess.Popen(
        [sys.executable, str(starter), options.model_dump_json(), str(tiny_model_dir), registry],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "FAKE_ENGINE_START_DELAY_S": str(start_delay_s)},
    )
    return proc, registry


def _start_and_kill(tmp_path: Path, tiny_model_dir: Path, keep: bool) -> tuple[int, str]:
    """Serve from a child process, SIGKILL the child once ready; return the server's group
    and URL."""
    proc, _ = _launch(tmp_path, tiny_model_dir, keep)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, "the starter exited before the server was ready"
        started = json.loads(line)
        assert group_pids(started["pgid"])
    finally:
        proc.kill()
        proc.wait(timeout=30)
    return int(started["pgid"]), str(started["url"])


def test_a_server_that_is_not_kept_dies_with_a_killed_tuneship(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    pgid, _ = _start_and_kill(tmp_path, tiny_model_dir, keep=False)
    try:
        assert_group_gone(pgid)
    finally:
        if group_pids(pgid):
            os.killpg(pgid, signal.SIGKILL)


def test_a_kept_server_outlives_the_process_that_started_it(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    pgid, url = _start_and_kill(tmp_path, tiny_model_dir, keep=True)
    try:
        # Still answering after its starter is gone (and reaped).
        with urllib.request.urlopen(url.removesuffix("/v1") + "/health", timeout=10) as answer:
            assert answer.status == 200
        assert group_pids(pgid)
    finally:
        if group_pids(pgid):
            os.killpg(pgid, signal.SIGKILL)


def test_deployments_list_shows_a_server_still_alive_whatever_its_recorded_status(
    tmp_path: Path,
) -> None:
    """A stop that failed leaves the row `failed`; the list still says the server runs."""
    from typer.testing import CliRunner

    from tuneship.cli.deployments import deployments_app
    from tuneship.registry import DeploymentEntry, Registry
    from tuneship.serving.process import process_start_time

    registry = f"sqlite:///{tmp_path / 'registry.db'}"
    server = subprocess.Popen(["sleep", "120"], start_new_session=True)
    try:
        with Registry(registry) as reg:
            for name, status, pid in (("left", "failed", server.pid), ("gone", "stopped", None)):
                reg.upsert_deployment(
                    DeploymentEntry(
                        name=name,
                        model_name="acme/chat",
                        model_version="1",
                        target="local-vllm",
                        status=status,
                        details={"pid": pid, "pgid": pid, "pid_start_time": process_start_time(pid)}
                        if pid
                        else {},
                    )
                )
        listed = CliRunner().invoke(deployments_app, ["list", "--registry", registry])
    finally:
        server.kill()
        server.wait()
    assert listed.exit_code == 0, listed.output
    lines = {line.split()[0]: line for line in listed.output.splitlines() if line[:1].isalpha()}
    assert "failed (process still running)" in lines["left"]
    assert "still running" not in lines["gone"]


def _start_slowly(
    tmp_path: Path, tiny_model_dir: Path, keep: bool
) -> tuple[subprocess.Popen[str], str, int]:
    """Serve from a child whose engine takes minutes to start; return the child, the
    registry URL and the server's group, once the `starting` row names it."""
    from tuneship.registry import Registry

    proc, registry = _launch(tmp_path, tiny_model_dir, keep, start_delay_s=300)
    deadline = time.monotonic() + 60
    while True:
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise AssertionError("no `starting` row was recorded while the server started")
        entry = Registry(registry).get_deployment("lifetime")
        if entry is not None:
            assert entry.status == "starting"
            return proc, registry, int(entry.details["pgid"])
        time.sleep(0.2)


def test_a_kept_server_whose_starter_is_killed_while_it_starts_is_recorded_and_stoppable(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    """SIGKILL (no handler runs) while a kept server loads: the registry already has it."""
    from typer.testing import CliRunner

    from tuneship.cli.deployments import deployments_app
    from tuneship.registry import Registry

    proc, registry, pgid = _start_slowly(tmp_path, tiny_model_dir, keep=True)
    try:
        proc.kill()  # while the server is still starting
        proc.wait(timeout=30)
        assert group_pids(pgid), "a kept server outlives its starter"
        listed = CliRunner().invoke(deployments_app, ["list", "--registry", registry])
        assert listed.exit_code == 0, listed.output
        (row,) = [line for line in listed.output.splitlines() if line.startswith("lifetime")]
        assert "starting" in row and "gone" not in row
        stopped = CliRunner().invoke(deployments_app, ["stop", "lifetime", "--registry", registry])
        assert stopped.exit_code == 0, stopped.output
        assert_group_gone(pgid)
        assert Registry(registry).get_deployment("lifetime").status == "stopped"  # type: ignore[union-attr]
    finally:
        if group_pids(pgid):
            os.killpg(pgid, signal.SIGKILL)


def test_an_interrupted_start_is_recorded_stopped(tmp_path: Path, tiny_model_dir: Path) -> None:
    """SIGTERM while the server starts: it is stopped, and the `starting` row says so."""
    from tuneship.registry import Registry

    proc, registry, pgid = _start_slowly(tmp_path, tiny_model_dir, keep=False)
    try:
        proc.terminate()
        assert proc.wait(timeout=60) != 0
        assert_group_gone(pgid)
        assert Registry(registry).get_deployment("lifetime").status == "stopped"  # type: ignore[union-attr]
    finally:
        if proc.poll() is None:
            proc.kill()
        if group_pids(pgid):
            os.killpg(pgid, signal.SIGKILL)
