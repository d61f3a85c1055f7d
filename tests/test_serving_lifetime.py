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
import urllib.request
from pathlib import Path

from _serving_helpers import assert_group_gone, group_pids, tiny_serve_options

FAKE_ENGINE = """
import argparse, http.server, json

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


def _start_and_kill(tmp_path: Path, tiny_model_dir: Path, keep: bool) -> tuple[int, str]:
    """Serve from a child process, SIGKILL the child once ready; return the server's group
    and URL."""
    engine = tmp_path / "fake_engine.py"
    engine.write_text(textwrap.dedent(FAKE_ENGINE), encoding="utf-8")
    starter = tmp_path / "starter.py"
    starter.write_text(textwrap.dedent(STARTER), encoding="utf-8")
    options = tiny_serve_options(
        Path(sys.executable),
        engine_command=[sys.executable, str(engine)],
        keep_serving=keep,
        startup_timeout_s=60,
    )
    registry = f"sqlite:///{tmp_path / 'registry.db'}"
    proc = subprocess.Popen(
        [sys.executable, str(starter), options.model_dump_json(), str(tiny_model_dir), registry],
        stdout=subprocess.PIPE,
        text=True,
    )
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
