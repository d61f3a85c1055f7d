"""prefect.yaml against a real ``prefect server``: deploy, a process worker, a form-style run.

Starts a server on a free port, deploys every deployment in prefect.yaml (the pull step
clones this repository's committed code), starts a process worker and runs
``finetune-manual`` with only ``config`` parameters, as the UI's form sends them. With
``TUNESHIP_SCREENSHOT_DIR`` set and Chromium installed, the metrics artifacts' pages are
screenshotted there for a person to look at.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _prefect(env: dict[str, str], *args: str, timeout: float = 300) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "prefect", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"prefect {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A ``prefect server`` on a free port and the environment that points at it."""
    if not (REPO / ".git").exists():
        pytest.skip("the pull step clones a git checkout; this is not one")
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_API_URL": api,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_API_PORT": str(port),
        "PYTHONPATH": str(REPO),
    }
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{api}/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            assert time.monotonic() < deadline, "prefect server did not answer in 180 s"
            time.sleep(1)
        yield api, env
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=60)
        log.close()


def _post(api: str, path: str, body: dict[str, Any]) -> Any:
    response = httpx.post(f"{api}{path}", json=body, timeout=30)
    response.raise_for_status()
    return response.json()


def test_form_style_deployment_run_completes_with_names_tags_and_metrics(
    server: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    api, env = server
    _prefect(env, "work-pool", "create", "local-process", "--type", "process")
    _prefect(env, "variable", "set", "tuneship_repo", str(REPO))
    _prefect(env, "--no-prompt", "deploy", "--all")
    deployments = _post(api, "/deployments/filter", {})
    assert {d["name"] for d in deployments} == {
        "finetune-manual",
        "nightly-retrain",
        "deploy-model",
    }

    worker_log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", "local-process"],
        env=env,
        cwd=tmp_path,
        stdout=worker_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    config = {
        "name": "form-run",
        "workdir": str(tmp_path / "run"),
        "training": {"max_steps": 10, "eval_steps": 5, "logging_steps": 5},
        "publish": {"store_path": str(tmp_path / "store"), "vllm_load_check": "off"},
        "serve": {"target": "none"},
        "registry": {"url": f"sqlite:///{tmp_path / 'registry.db'}"},
    }
    try:
        # Only `config`: the deployment's pre-filled config_file is ignored, as from the form.
        out = _prefect(
            env,
            "deployment",
            "run",
            "finetune-and-deploy/finetune-manual",
            "--params",
            json.dumps({"config": config}),
            "--watch",
            "--watch-timeout",
            "900",
            timeout=960,
        )
    finally:
        os.killpg(worker.pid, 15)
        worker.wait(timeout=60)
        worker_log.close()
    (run,) = _post(api, "/flow_runs/filter", {"flow_runs": {"name": {"like_": "form-run-"}}})
    assert run["state_type"] == "COMPLETED", out + (tmp_path / "worker.log").read_text()
    assert re.fullmatch(r"form-run-\d{8}-\d{6}", run["name"])
    assert {"method:sft", "adapter:lora", "publish:local", "serve:none"} <= set(run["tags"])
    task_runs = _post(api, "/task_runs/filter", {"flow_runs": {"id": {"any_": [run["id"]]}}})
    assert "train-sft-lora-form-run" in {t["name"] for t in task_runs}

    artifacts = {
        a["key"]: a
        for a in _post(
            api, "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run["id"]]}}}
        )
        if a.get("key")
    }
    table = artifacts["form-run-training-metrics"]["data"]
    rows = json.loads(table) if isinstance(table, str) else table
    assert set(rows[0]) == {"step", "loss", "eval_loss"}
    assert any(isinstance(r["eval_loss"], float) for r in rows)
    assert "data:image/svg+xml;base64," in artifacts["form-run-loss-chart"]["data"]

    shots = os.environ.get("TUNESHIP_SCREENSHOT_DIR")
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if shots and browser:
        ui = api.removesuffix("/api")
        for key in ("form-run-loss-chart", "form-run-training-metrics", "form-run-run-summary"):
            _screenshot(
                browser,
                f"{ui}/artifacts/artifact/{artifacts[key]['id']}",
                Path(shots) / f"{key}.png",
                tmp_path,
            )


def _screenshot(browser: str, url: str, png: Path, tmp_path: Path) -> None:
    png.parent.mkdir(parents=True, exist_ok=True)
    profile = tmp_path / f"chromium-{png.stem}"
    profile.mkdir()
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=20000",
            f"--screenshot={png}",
            "--window-size=1400,2000",
            url,
        ],
        capture_output=True,
        timeout=180,
        check=False,
    )
