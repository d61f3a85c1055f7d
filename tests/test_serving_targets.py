"""Every serving target is found by name, implements the whole protocol, and its record
survives the registry (pure: no server, engine or network)."""

from __future__ import annotations

import pytest

from tuneship.registry import DeploymentEntry
from tuneship.serving.base import DeploymentInfo, ServingTarget
from tuneship.serving.docker import DockerDeploymentInfo, DockerTarget
from tuneship.serving.targets import get_target, target_names


def test_every_config_target_is_registered() -> None:
    from typing import get_args

    from tuneship.config import ServeConfig

    names = set(get_args(ServeConfig.model_fields["target"].annotation)) - {"none"}
    assert names <= set(target_names())


@pytest.mark.parametrize("name", ["local", "local-vllm", "docker", "runpod-pod"])
def test_registered_targets_implement_the_protocol(name: str) -> None:
    target = get_target(name)
    assert isinstance(target, ServingTarget)
    assert issubclass(target.record_type, DeploymentInfo)
    for method in ("plan", "deploy", "health", "stop", "describe"):
        assert callable(getattr(target, method))


def test_docker_record_round_trips_through_the_registry() -> None:
    info = DockerDeploymentInfo(
        name="run",
        target="docker",
        url="http://127.0.0.1:8123/v1",
        served_model_name="run",
        api_key="secret-key",
        model="/models/run",
        container_id="abc123",
        container_name="tuneship-run",
        docker_host="ssh://me@gpu-box",
        image="vllm/vllm-openai:v0",
        host="127.0.0.1",
        port=8123,
        backend="cuda",
        gpu_indices=[2, 3],
        tensor_parallel_size=2,
    )
    details = info.registry_details()
    assert "secret-key" not in str(details)
    entry = DeploymentEntry(
        name=info.name,
        model_name="acme/run",
        model_version="1",
        target=info.target,
        url=info.url,
        served_model_name=info.served_model_name,
        status="running",
        details=details,
    )
    target = get_target(entry.target)
    record = target.record_type.from_entry(entry)
    assert isinstance(record, DockerDeploymentInfo)
    assert (record.container_id, record.docker_host, record.gpu_indices, record.port) == (
        "abc123",
        "ssh://me@gpu-box",
        [2, 3],
        8123,
    )
    assert record.api_key == ""
    assert "tuneship-run" in target.describe(record) and "GPUs 2,3" in target.describe(record)


def test_docker_target_gets_the_hub_token_from_the_prefect_layer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tuneship.tasks.credentials import load_target

    monkeypatch.setenv("HF_TOKEN", "hf_from_env")
    target = load_target("docker")
    assert isinstance(target, DockerTarget)
    assert target.hub_token is not None
    assert target.hub_token.get_secret_value() == "hf_from_env"
