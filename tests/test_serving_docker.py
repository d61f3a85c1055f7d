"""The ``docker`` target against a real Docker engine (``scripts/test-dockerd.sh``).

vLLM's CPU build serves the tiny model in a container from the project's engine venv,
mounted read-only (``_docker_helpers``). vLLM starts up fully once (~1 min on 2 cores): that
container, deployed over an earlier one of the same run, is shared by the serving and stop
tests; the CLI is also tried on cheap ``sleep`` containers. The failure, timeout, SIGTERM
and Ctrl-C tests stop vLLM while it starts, and every test checks that no container is
left behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from _docker_helpers import (
    base_image,
    docker_client_or_skip,
    docker_serve_options,
    tuneship_containers,
)
from _serving_helpers import STARTUP_TIMEOUT_S, engine_python_or_skip
from typer.testing import CliRunner

from tuneship.cli.deployments import deployments_app
from tuneship.registry import DeploymentEntry, Registry
from tuneship.serving import (
    DockerEngineError,
    DockerTarget,
    ServerStartError,
    managed_deployment,
    run_smoke_test,
)
from tuneship.serving.docker import (
    LABEL_MODEL,
    LABEL_RUN,
    MODEL_MOUNT,
    container_name,
    remove_container,
)

if TYPE_CHECKING:
    from docker import DockerClient

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client() -> Iterator[DockerClient]:
    client = docker_client_or_skip()
    yield client
    client.close()


@pytest.fixture(scope="module")
def image(client: DockerClient) -> str:
    return base_image(client)


@pytest.fixture(scope="module")
def engine() -> Path:
    return engine_python_or_skip()


@pytest.fixture(autouse=True)
def _no_container_left(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test, only the shared container may be left (and only while shared)."""
    yield
    if "client" not in request.fixturenames:
        return
    client = request.getfixturevalue("client")
    shared = {container_name("tiny-docker")}
    left = [c.name for c in tuneship_containers(client) if c.name not in shared]
    for name in left:
        client.containers.get(name).remove(force=True)
    assert left == [], f"containers left behind: {left}"


@pytest.fixture(scope="module")
def registry_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('docker-registry') / 'registry.db'}"


def _sleeper(client: DockerClient, image: str, run: str) -> Any:
    """A cheap container that carries a run's name and label (no vLLM inside)."""
    return client.containers.run(
        image,
        ["sleep", "600"],
        name=container_name(run),
        labels={LABEL_RUN: run},
        detach=True,
        init=True,
    )


def _record(registry_url: str, name: str, container: Any) -> None:
    with Registry(registry_url) as registry:
        registry.upsert_deployment(
            DeploymentEntry(
                name=name,
                model_name="acme/tiny",
                model_version="1",
                target="docker",
                url="http://127.0.0.1:1/v1",
                status="running",
                details={"container_id": container.id, "container_name": container.name},
            )
        )


@pytest.fixture(scope="module")
def served(
    client: DockerClient, image: str, engine: Path, tiny_model_dir: Path, registry_url: str
) -> Iterator[tuple[Any, str]]:
    """One container serving the tiny model, recorded in the registry, for several tests.

    It is deployed over an earlier container of the same run, which it must replace.
    """
    previous = _sleeper(client, image, "tiny-docker")
    options = docker_serve_options(engine, image, keep_serving=True)
    with managed_deployment(
        tiny_model_dir,
        options,
        name="tiny-docker",
        model_name="acme/tiny",
        model_version="1",
        registry_url=registry_url,
    ) as info:
        yield info, str(previous.id)
    # Normally test_target_stop_then_list_and_cli has removed it already.
    remove_container(client, info.container_id, None, timeout_s=5)


def test_redeploy_replaced_the_runs_container(
    served: tuple[Any, str], client: DockerClient
) -> None:
    info, previous_id = served
    assert [c.id for c in tuneship_containers(client)] == [info.container_id]
    assert info.container_id != previous_id
    assert list(Path(info.log_path).parent.glob("replaced-*.log")), "its log is kept"


def test_serves_chat_and_stream(served: tuple[Any, str], registry_url: str) -> None:
    info, _ = served
    assert info.url.startswith("http://127.0.0.1:") and info.url.endswith("/v1")
    result = run_smoke_test(info.url, info.api_key, info.served_model_name, max_tokens=16)
    assert result.answer.strip() and result.streamed_answer.strip()
    assert result.completion_tokens and 0 < result.completion_tokens <= 16
    assert result.stream_completion_tokens and result.stream_completion_tokens > 0
    entry = Registry(registry_url).get_deployment("tiny-docker")
    assert entry is not None and entry.status == "running" and entry.target == "docker"
    assert entry.details["container_id"] == info.container_id
    assert info.api_key not in json.dumps(entry.model_dump(mode="json"))


def test_container_settings(
    served: tuple[Any, str], client: DockerClient, tiny_model_dir: Path
) -> None:
    info, _ = served
    container = client.containers.get(info.container_id)
    attrs = container.attrs
    assert container.name == "tuneship-tiny-docker"
    assert container.labels[LABEL_RUN] == "tiny-docker"
    assert container.labels[LABEL_MODEL] == "acme/tiny"
    host = attrs["HostConfig"]
    assert host["Init"] is True
    assert host["PortBindings"]["8000/tcp"][0]["HostIp"] == "127.0.0.1"
    model_mount = next(m for m in attrs["Mounts"] if m["Destination"] == MODEL_MOUNT)
    assert model_mount["Source"] == str(tiny_model_dir.resolve()) and model_mount["RW"] is False
    assert all(m["RW"] is False for m in attrs["Mounts"])
    command = attrs["Config"]["Cmd"]
    assert command[command.index("--model") + 1] == MODEL_MOUNT
    assert command[command.index("--max-model-len") + 1] == "512"
    env = dict(e.split("=", 1) for e in attrs["Config"]["Env"])
    assert env["VLLM_API_KEY"] == info.api_key and env["HF_HUB_OFFLINE"] == "1"
    assert "HF_TOKEN" not in env
    assert info.api_key not in " ".join(command)
    # The health check waits as long as the target does for the server to start.
    assert attrs["Config"]["Healthcheck"]["StartPeriod"] == STARTUP_TIMEOUT_S * 1_000_000_000
    assert attrs["State"]["Health"]["Status"] == "healthy"


def test_target_stop_then_list_and_cli(
    served: tuple[Any, str], client: DockerClient, registry_url: str
) -> None:
    info, _ = served
    runner = CliRunner()
    listed = runner.invoke(deployments_app, ["list", "--json", "--registry", registry_url])
    assert listed.exit_code == 0, listed.output
    assert {r["name"]: r["alive"] for r in json.loads(listed.output)}["tiny-docker"] is True

    DockerTarget().stop(info)  # what managed_deployment calls on failure, cancel, Ctrl-C
    assert tuneship_containers(client) == []
    assert "Application startup complete" in Path(info.log_path).read_text()  # log kept
    DockerTarget().stop(info)  # idempotent

    text = runner.invoke(deployments_app, ["list", "--registry", registry_url]).output
    assert "tiny-docker  running (container gone)  docker" in text
    stopped = runner.invoke(deployments_app, ["stop", "tiny-docker", "--registry", registry_url])
    assert stopped.exit_code == 0, stopped.output
    assert Registry(registry_url).get_deployment("tiny-docker").status == "stopped"  # type: ignore[union-attr]


def test_cli_stops_a_live_container_and_sees_one_removed_by_hand(
    client: DockerClient, image: str, registry_url: str
) -> None:
    live, by_hand = _sleeper(client, image, "live"), _sleeper(client, image, "by-hand")
    _record(registry_url, "live", live)
    _record(registry_url, "by-hand", by_hand)
    runner = CliRunner()
    listed = runner.invoke(deployments_app, ["list", "--json", "--registry", registry_url])
    alive = {r["name"]: r["alive"] for r in json.loads(listed.output)}
    assert alive["live"] is True and alive["by-hand"] is True

    stopped = runner.invoke(deployments_app, ["stop", "live", "--registry", registry_url])
    assert stopped.exit_code == 0, stopped.output
    assert all(c.id != live.id for c in client.containers.list(all=True))
    assert Registry(registry_url).get_deployment("live").status == "stopped"  # type: ignore[union-attr]

    by_hand.remove(force=True)
    text = runner.invoke(deployments_app, ["list", "--registry", registry_url]).output
    by_hand = next(line for line in text.splitlines() if line.startswith("by-hand "))
    assert "running (container gone)" in by_hand and " docker " in by_hand
    stopped = runner.invoke(deployments_app, ["stop", "by-hand", "--registry", registry_url])
    assert stopped.exit_code == 0, stopped.output
    assert Registry(registry_url).get_deployment("by-hand").status == "stopped"  # type: ignore[union-attr]


def test_crash_hook_removes_the_runs_container(client: DockerClient, image: str) -> None:
    """The flows' crash cleanup (shared with RunPod) finds the container by the run's name
    and label."""
    import logging

    from tuneship.config import DockerServeConfig
    from tuneship.serving.docker import remove_run_containers
    from tuneship.tasks.deploy import delete_run_resources

    class Lines(logging.Handler):
        def __init__(self) -> None:
            super().__init__()
            self.lines: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.lines.append(record.getMessage())

    sleeper = _sleeper(client, image, "crashed")
    options = DockerServeConfig(host=os.environ.get("DOCKER_HOST"))
    logger, lines = logging.getLogger("test-crash-hook"), Lines()
    logger.addHandler(lines)
    try:
        delete_run_resources(logger, "docker", None, "crashed", "Crashed", options)
    finally:
        logger.removeHandler(lines)
    assert lines.lines == ["run Crashed: container of crashed removed"]
    assert all(c.id != sleeper.id for c in client.containers.list(all=True))
    assert remove_run_containers(options, "crashed") is False


def test_foreign_container_with_the_name_is_not_replaced(
    client: DockerClient, image: str, engine: Path, tiny_model_dir: Path
) -> None:
    foreign = client.containers.run(
        image, ["sleep", "600"], name=container_name("not-ours"), detach=True, init=True
    )
    try:
        with pytest.raises(DockerEngineError, match="tuneship did not start"):
            DockerTarget().deploy(
                tiny_model_dir, docker_serve_options(engine, image), name="not-ours"
            )
        assert client.containers.get(foreign.id).status == "running"
    finally:
        foreign.remove(force=True)


def test_startup_crash_quotes_vllm_and_keeps_log(
    client: DockerClient, image: str, engine: Path, tiny_model_copy: Path
) -> None:
    (tiny_model_copy / "config.json").write_text('{"model_type": "llama", "hidden_size": ')
    with pytest.raises(ServerStartError) as caught:
        DockerTarget().deploy(tiny_model_copy, docker_serve_options(engine, image), name="bad")
    err = caught.value
    assert "container exited with code" in str(err) and "was removed" in str(err)
    assert err.engine_lines and any(line in str(err) for line in err.engine_lines)
    assert err.log_path is not None and err.log_path.is_file()
    log_text = err.log_path.read_text()
    assert all(line.split(": ", 1)[-1][:40] in log_text for line in err.engine_lines)


def test_readiness_timeout_removes_container(
    client: DockerClient, image: str, engine: Path, tiny_model_dir: Path
) -> None:
    started: list[str] = []
    target = DockerTarget(on_start=lambda c: started.append(c.id))
    options = docker_serve_options(engine, image, startup_timeout_s=4)
    with pytest.raises(ServerStartError, match=r"not ready after serve.startup_timeout_s=4 s"):
        target.deploy(tiny_model_dir, options, name="slow")
    assert started and all(c.id != started[0] for c in client.containers.list(all=True))


def test_errors_before_anything_starts(
    client: DockerClient, image: str, engine: Path, tiny_model_dir: Path
) -> None:
    from tuneship.planning.inventory import LocalGpu

    def deploy(**changes: Any) -> None:
        DockerTarget(gpus=changes.pop("gpus", None)).deploy(
            tiny_model_dir, docker_serve_options(engine, image, **changes), name="early"
        )

    with pytest.raises(DockerEngineError, match="no Docker engine answers at unix:///nowhere"):
        deploy(docker={"host": "unix:///nowhere/docker.sock"})
    with pytest.raises(DockerEngineError, match="not on the Docker engine and could not be"):
        deploy(docker={"image": "localhost:1/tuneship/absent:v0"})
    # The run's pre-flight check finds the same before training.
    from tuneship.serving.docker import check_docker_serving

    absent = docker_serve_options(engine, "localhost:1/tuneship/absent:v0")
    with pytest.raises(DockerEngineError, match="could not be pulled"):
        check_docker_serving(absent)
    assert "(present)" in check_docker_serving(docker_serve_options(engine, image))
    gib = 1024**3
    gpu = LocalGpu(0, "Test GPU", "GPU-0", 80 * gib, 79 * gib, None)
    with pytest.raises(DockerEngineError, match="no NVIDIA runtime"):
        deploy(gpus=[gpu], dtype="bfloat16")


def test_gpu_plan_becomes_command_and_environment() -> None:
    """Pure rendering: a TP-2 GPU plan, a Hub model with a token, a remote engine."""
    from tuneship.config import ServeConfig
    from tuneship.serving.docker import (
        container_command,
        container_environment,
        endpoint_host,
        host_options,
    )
    from tuneship.serving.placement import LocalPlan

    plan = LocalPlan(
        backend="cuda",
        gpu_indices=[2, 3],
        tensor_parallel_size=2,
        gpu_memory_utilization=0.85,
        max_model_len=8192,
    )
    options = ServeConfig(
        target="docker", tensor_parallel_size=2, extra_options={"max_num_seqs": 8}
    )
    command = container_command("acme/model", options, plan, served_model_name="run")
    flags = dict(zip(command[::2], command[1::2], strict=True))
    assert flags["--model"] == "acme/model" and flags["--host"] == "0.0.0.0"
    assert flags["--port"] == "8000" and flags["--tensor-parallel-size"] == "2"
    assert flags["--gpu-memory-utilization"] == "0.85" and flags["--max-model-len"] == "8192"
    assert flags["--max-num-seqs"] == "8"
    env = container_environment(
        plan, options, model_is_local=False, api_key="k", hf_token="hf_secret"
    )
    assert env["HF_TOKEN"] == "hf_secret" and "hf_secret" not in command
    assert "CUDA_VISIBLE_DEVICES" not in env  # the runtime renumbers the chosen GPUs
    assert "HF_TOKEN" not in container_environment(plan, options, model_is_local=True, api_key="k")
    gpus = host_options(plan, options.docker)["device_requests"][0]
    assert gpus["DeviceIDs"] == ["2", "3"] and gpus["Capabilities"] == [["gpu"]]
    assert host_options(plan, options.docker)["shm_size"] == "8g"
    ipc = options.docker.model_copy(update={"ipc_host": True})
    assert host_options(plan, ipc)["ipc_mode"] == "host"
    assert endpoint_host("ssh://me@gpu-box", "0.0.0.0") == "gpu-box"
    assert endpoint_host("ssh://me@gpu-box", "127.0.0.1") == "127.0.0.1"
    assert endpoint_host(None, "0.0.0.0") == "127.0.0.1"


DRIVER = r"""
import json, sys, time
from tuneship.config import ServeConfig
from tuneship.serving import DockerTarget, managed_deployment

options = ServeConfig.model_validate_json(sys.argv[1])
model, name, registry_url = sys.argv[2], sys.argv[3], sys.argv[4]

def on_start(container):
    print(json.dumps({"event": "started", "id": container.id}), flush=True)

with managed_deployment(
    model, options, name=name, registry_url=registry_url, target=DockerTarget(on_start=on_start)
):
    print(json.dumps({"event": "ready"}), flush=True)
    time.sleep(600)
"""


@pytest.mark.parametrize(
    ("sig", "raised"),
    [(signal.SIGTERM, "TerminationRequested"), (signal.SIGINT, "KeyboardInterrupt")],
)
def test_signal_while_starting_removes_container(
    client: DockerClient,
    image: str,
    engine: Path,
    tiny_model_dir: Path,
    registry_url: str,
    tmp_path: Path,
    sig: signal.Signals,
    raised: str,
) -> None:
    """SIGTERM (Prefect's cancellation) and Ctrl-C while vLLM loads leave no container."""
    script = tmp_path / "driver.py"
    script.write_text(DRIVER, encoding="utf-8")
    options = docker_serve_options(engine, image)
    name = f"sig-{sig.name.lower()}"
    args = [str(script), options.model_dump_json(), str(tiny_model_dir), name, registry_url]
    proc = subprocess.Popen(
        [sys.executable, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, proc.stderr.read() if proc.stderr else ""
    container_id = json.loads(line)["id"]
    deadline = time.monotonic() + 60
    while client.containers.get(container_id).status != "running":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    time.sleep(3)  # vLLM is importing inside
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and raised in err
    assert all(c.id != container_id for c in client.containers.list(all=True))
