"""Day-2: ``tuneship deployments list`` costs and ``tuneship deployments export``.

The registry is real (SQLite and PostgreSQL); the "local server" is a real process group
(``sleep``) recorded the way tuneship records a vLLM server, so liveness is checked as in
production; RunPod deployments are rows with the prices the planner recorded.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tuneship.cli.deployments import deployments_app
from tuneship.registry import DeploymentEntry, ModelEntry, Registry
from tuneship.serving.api_keys import write_api_key_file
from tuneship.serving.process import process_start_time

LOCAL_KEY = "local-key-0123456789abcdef"
POD_KEY = "pod-key-0123456789abcdef"
RUNPOD_KEY = "rpa_EXPORTTESTKEY0123456789ABCDEFGHIJ"


@pytest.fixture
def server_process() -> Iterator[subprocess.Popen[bytes]]:
    """A live process group standing in for a vLLM server."""
    proc = subprocess.Popen(["sleep", "120"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


def _populate(url: str, tmp_path: Path, proc: subprocess.Popen[bytes]) -> None:
    two_hours_ago = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    local_key = write_api_key_file(tmp_path / "local", LOCAL_KEY)
    pod_key = write_api_key_file(tmp_path / "pod", POD_KEY)
    with Registry(url) as reg:
        reg.upsert_model(ModelEntry(name="acme/chat", version="3"))

        def add(name: str, target: str, status: str, details: dict[str, object], **kw: str) -> None:
            reg.upsert_deployment(
                DeploymentEntry(
                    name=name,
                    model_name="acme/chat",
                    model_version="3",
                    target=target,
                    url=kw.get("url", f"http://127.0.0.1:9/{name}/v1"),
                    served_model_name=kw.get("served", name),
                    status=status,
                    details=details,
                )
            )

        add(
            "chat-local",
            "local-vllm",
            "running",
            {
                "pid": proc.pid,
                "pgid": proc.pid,
                "pid_start_time": process_start_time(proc.pid),
                "api_key_file": str(local_key),
                "started_at": two_hours_ago,
            },
        )
        # Recorded as running, but its process is gone: not live.
        add("chat-gone", "local-vllm", "running", {"pid": 999_999, "pgid": 999_999})
        add("chat-old", "local-vllm", "stopped", {"api_key_file": str(local_key)})
        add(
            "chat-pod",
            "runpod-pod",
            "running",
            {"usd_per_hour": 0.79, "api_key_file": str(pod_key), "started_at": two_hours_ago},
            url="https://abc-8000.proxy.runpod.net/v1",
            served="acme/chat",
        )
        add(
            "chat-serverless",
            "runpod-serverless",
            "running",
            {"usd_per_hour": 1.19, "workers_min": 1, "workers_max": 3, "started_at": two_hours_ago},
            url="https://api.runpod.ai/v2/ep123/openai/v1",
            served="acme/chat",
        )


def test_list_shows_cost_per_hour_and_since(
    registry_url: str, tmp_path: Path, server_process: subprocess.Popen[bytes]
) -> None:
    _populate(registry_url, tmp_path, server_process)
    result = CliRunner().invoke(deployments_app, ["list", "--registry", registry_url])
    assert result.exit_code == 0, result.output
    blocks = result.output.split("\n")
    pod = next(i for i, line in enumerate(blocks) if line.startswith("chat-pod "))
    assert "cost $0.79/h since" in blocks[pod + 1] and "(2h " in blocks[pod + 1]
    assert "$1.58 so far" in blocks[pod + 1]
    sls = next(i for i, line in enumerate(blocks) if line.startswith("chat-serverless "))
    assert "$1.19/h (+$1.19/h per busy worker)" in blocks[sls + 1]
    assert "running (process gone)" in result.output

    raw = CliRunner().invoke(deployments_app, ["list", "--json", "--registry", registry_url])
    rows = {row["name"]: row for row in json.loads(raw.output)}
    assert rows["chat-pod"]["cost"]["usd_per_hour"] == 0.79
    assert rows["chat-pod"]["cost"]["usd_so_far"] == pytest.approx(1.58, abs=0.01)
    assert rows["chat-serverless"]["cost"]["usd_per_hour_max"] == pytest.approx(3.57)
    assert rows["chat-local"]["cost"]["usd_per_hour"] == 0.0
    assert rows["chat-local"]["alive"] is True and rows["chat-gone"]["alive"] is False


def test_export_openai_env_sources_in_a_shell(
    registry_url: str,
    tmp_path: Path,
    server_process: subprocess.Popen[bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _populate(registry_url, tmp_path, server_process)
    runner = CliRunner()
    result = runner.invoke(deployments_app, ["export", "--registry", registry_url])
    assert result.exit_code == 0, result.output
    out = result.output
    for key in (LOCAL_KEY, POD_KEY, RUNPOD_KEY):
        assert key not in out
    assert "chat-gone" not in out and "chat-old" not in out  # only live endpoints
    assert "key: the RunPod API key" not in out  # no block recorded: the variable
    assert "key: $RUNPOD_API_KEY" in out

    script = tmp_path / "endpoints.env"
    script.write_text(out)
    shown = subprocess.run(
        [
            "bash",
            "-c",
            f'source "{script}"; echo "$CHAT_POD_OPENAI_BASE_URL|$CHAT_POD_MODEL|'
            '$(cat "$CHAT_LOCAL_OPENAI_API_KEY_FILE")|$CHAT_SERVERLESS_OPENAI_BASE_URL"',
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert shown == (
        f"https://abc-8000.proxy.runpod.net/v1|acme/chat|{LOCAL_KEY}|"
        "https://api.runpod.ai/v2/ep123/openai/v1"
    )

    monkeypatch.setenv("RUNPOD_API_KEY", RUNPOD_KEY)
    keyed = runner.invoke(
        deployments_app,
        ["export", "--include-keys", "--model", "acme/chat", "--registry", registry_url],
    )
    assert keyed.exit_code == 0, keyed.output
    assert f"export CHAT_POD_OPENAI_API_KEY={POD_KEY}" in keyed.output
    assert f"export CHAT_LOCAL_OPENAI_API_KEY={LOCAL_KEY}" in keyed.output
    assert f"export CHAT_SERVERLESS_OPENAI_API_KEY={RUNPOD_KEY}" in keyed.output

    monkeypatch.delenv("RUNPOD_API_KEY")
    missing = runner.invoke(
        deployments_app, ["export", "--include-keys", "--registry", registry_url]
    )
    assert missing.exit_code == 1
    assert "chat-serverless: cannot read its key ($RUNPOD_API_KEY)" in missing.output


def test_export_litellm_config(
    registry_url: str, tmp_path: Path, server_process: subprocess.Popen[bytes]
) -> None:
    _populate(registry_url, tmp_path, server_process)
    result = CliRunner().invoke(
        deployments_app, ["export", "--format", "litellm", "--registry", registry_url]
    )
    assert result.exit_code == 0, result.output
    config = yaml.safe_load(result.output)
    by_id = {m["model_info"]["id"]: m for m in config["model_list"]}
    assert set(by_id) == {"chat-local", "chat-pod", "chat-serverless"}
    pod = by_id["chat-pod"]
    assert pod["model_name"] == "acme/chat"
    assert pod["litellm_params"] == {
        "model": "openai/acme/chat",
        "api_base": "https://abc-8000.proxy.runpod.net/v1",
        "api_key": "os.environ/CHAT_POD_OPENAI_API_KEY",
    }
    assert f"# CHAT_POD_OPENAI_API_KEY: file {tmp_path / 'pod' / 'api-key'}" in result.output
    assert POD_KEY not in result.output

    keyed = CliRunner().invoke(
        deployments_app,
        [
            "export",
            "--format",
            "litellm",
            "--include-keys",
            "--model",
            "nobody/none",
            "--registry",
            registry_url,
        ],
    )
    assert keyed.exit_code == 0 and yaml.safe_load(keyed.stdout) == {"model_list": []}
    assert "no live deployments" in keyed.stderr

    bad = CliRunner().invoke(deployments_app, ["export", "--format", "xml"])
    assert bad.exit_code == 2 and "openai-env, litellm" in bad.output


def test_one_endpoint_also_sets_the_standard_openai_variables(
    tmp_path: Path, server_process: subprocess.Popen[bytes]
) -> None:
    url = f"sqlite:///{tmp_path / 'one.db'}"
    _populate(url, tmp_path, server_process)
    result = CliRunner().invoke(
        deployments_app,
        ["export", "--include-keys", "--registry", url, "--model", "acme/chat"],
        env={**os.environ, "RUNPOD_API_KEY": RUNPOD_KEY},
    )
    assert "export OPENAI_BASE_URL" not in result.output  # three endpoints: prefixed only
    with Registry(url) as reg:
        for name in ("chat-pod", "chat-serverless"):
            reg.set_deployment_status(name, "stopped")
    single = CliRunner().invoke(deployments_app, ["export", "--include-keys", "--registry", url])
    assert "export OPENAI_BASE_URL=http://127.0.0.1:9/chat-local/v1" in single.output
    assert f"export OPENAI_API_KEY={LOCAL_KEY}" in single.output
    assert "export OPENAI_MODEL=chat-local" in single.output
