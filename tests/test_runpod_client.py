"""RunPod client, plans, budget and teardown against the fake RunPod API (no vLLM needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from _runpod_helpers import MODEL_ID, client_for, runpod_options, tiny_plan
from fake_hub import FakeHub, fake_hub  # noqa: F401 - fixture
from fake_runpod import FakeRunPod, fake_runpod  # noqa: F401 - fixture

from tuneship.errors import ConfigError, TuneshipError
from tuneship.runpod.client import RunPodClient
from tuneship.runpod.errors import (
    QueueStuckError,
    RunPodAuthError,
    RunPodBudgetError,
    RunPodCapacityError,
    RunPodTransientError,
)
from tuneship.runpod.specs import (
    check_pod_image,
    resource_name,
    worker_cuda_versions,
)
from tuneship.serving.runpod_pod import RunPodPodTarget
from tuneship.serving.runpod_serverless import RunPodServerlessTarget, worker_env

CREATING_CALLS = ("saveTemplate", "saveEndpoint", "podFindAndDeployOnDemand")


def test_values_with_quotes_survive_both_sdk_and_direct_calls(
    fake_runpod: FakeRunPod,  # noqa: F811
) -> None:
    import runpod

    client = client_for(fake_runpod)
    tricky = '{"num_speculative_tokens": 3, "path": "a\\\\b"}\nline2'
    template = client.save_template(
        name="tuneship-q",
        image_name="runpod/worker-v1-vllm:v2.25.2",
        env={"SPECULATIVE_CONFIG": tricky},
        container_disk_in_gb=20,
        is_serverless=True,
    )
    assert fake_runpod.templates[template["id"]]["env"][0]["value"] == tricky
    pod = client.create_pod(
        name='tuneship-"quoted"',
        image_name="vllm/vllm-openai:v0.27.1",
        gpu_type_id="NVIDIA L4",
        gpu_count=1,
        cloud_type="SECURE",
        container_disk_in_gb=20,
        docker_args="--speculative-config '" + tricky + "'",
        ports="8000/http",
        env={"VLLM_API_KEY": 'k"1\\'},
    )
    stored = fake_runpod.pods[pod["id"]]
    assert stored["name"] == 'tuneship-"quoted"'
    assert stored["dockerArgs"].endswith(tricky + "'")
    assert stored["env_map"]["VLLM_API_KEY"] == 'k"1\\'
    # The fake parses GraphQL like RunPod: the SDK alone, unescaped, breaks the query.
    runpod.api_key = fake_runpod.api_key
    with pytest.raises(runpod.error.QueryError, match="Syntax Error"):
        runpod.create_template(
            name="raw", image_name="img:v1", env={"X": 'a"b'}, is_serverless=True
        )


def test_server_errors_and_rate_limits_are_retried_then_reported(
    fake_runpod: FakeRunPod,  # noqa: F811
) -> None:
    client = client_for(fake_runpod)
    fake_runpod.fail("myself", status=503, times=2)
    assert client.list_templates() == []
    fake_runpod.fail("myself", "Too many requests", status=429, times=10)
    with pytest.raises(RunPodTransientError, match="after 4 tries") as err:
        client.list_templates()
    assert fake_runpod.api_key not in str(err.value)


def test_bad_key_is_an_actionable_auth_error_without_the_key(
    fake_runpod: FakeRunPod,  # noqa: F811
) -> None:
    wrong = "rpa_WRONGKEYabcdefghijklmnopqrstuvwxyz0123"
    client = RunPodClient(wrong, api_base_url=fake_runpod.url, backoff_s=0.01)
    for call in (client.list_endpoints, client.list_templates):
        with pytest.raises(RunPodAuthError) as err:
            call()
        message = str(err.value)
        assert "RUNPOD_API_KEY" in message and "credentials_block" in message
        assert wrong not in message and "WRONGKEY" not in message


def test_no_capacity_becomes_a_capacity_error_with_advice(
    fake_runpod: FakeRunPod,  # noqa: F811
) -> None:
    fake_runpod.capacity.add("*")
    with pytest.raises(RunPodCapacityError) as err:
        client_for(fake_runpod).create_pod(
            name="tuneship-c",
            image_name="vllm/vllm-openai:v0.27.1",
            gpu_type_id="NVIDIA L4",
            gpu_count=1,
            cloud_type="SECURE",
            container_disk_in_gb=20,
            docker_args="",
            ports="8000/http",
            env={},
        )
    assert "no longer any instances available" in str(err.value)
    assert "cloud_type ALL" in str(err.value)
    assert fake_runpod.pods == {}


def test_spot_price_and_spot_pod_through_direct_calls(fake_runpod: FakeRunPod) -> None:  # noqa: F811
    client = client_for(fake_runpod)
    bid = client.get_spot_bid("NVIDIA L4")
    assert bid is not None and bid > 0
    pod = client.create_spot_pod(
        name="tuneship-spot",
        image_name="vllm/vllm-openai:v0.27.1",
        gpu_type_id="NVIDIA L4",
        gpu_count=1,
        bid_per_gpu=bid,
        cloud_type="SECURE",
        container_disk_in_gb=20,
        docker_args="",
        ports="8000/http",
        env={},
    )
    assert fake_runpod.pods[pod["id"]]["interruptible"] is True
    client.terminate_pod(pod["id"])
    assert client.get_pod(pod["id"]) is None


def test_image_tags_and_cuda_versions() -> None:
    assert worker_cuda_versions("runpod/worker-v1-vllm:v2.25.2") == ["13.0"]
    assert worker_cuda_versions("runpod/worker-v1-vllm:v2.16.0") == ["12.8", "12.9"]
    for bad in (
        "runpod/worker-v1-vllm:latest",
        "runpod/worker-vllm:stable-cuda12.1.0",
        "runpod/worker-v1-vllm:v2.8.0stable-cuda12.1.0",
        "vllm/vllm-openai:v0.27.1",
    ):
        with pytest.raises(ConfigError, match="pinned release tag"):
            worker_cuda_versions(bad)
    check_pod_image("vllm/vllm-openai:v0.27.1")
    with pytest.raises(ConfigError, match="exits"):
        check_pod_image("runpod/worker-v1-vllm:v2.25.2")
    with pytest.raises(ConfigError, match="pin"):
        check_pod_image("vllm/vllm-openai:latest")
    assert resource_name("Crimson Frog!") == "tuneship-crimson-frog"
    assert resource_name("tuneship-x") == "tuneship-x"


def test_worker_env_uses_the_names_the_worker_reads(tiny_model_dir: Path) -> None:
    options = runpod_options(max_num_seqs=8)
    options.extra_options = {"enforce_eager": True, "speculative_config": '{"n": 2}'}
    plan = tiny_plan(tiny_model_dir, options).model_copy(update={"revision": "abc123"})
    env = worker_env(plan, options)
    assert env["MODEL_NAME"] == MODEL_ID and env["MODEL_REVISION"] == "abc123"
    assert env["MAX_MODEL_LEN"] == "512" and "MAX_MODEL_LENGTH" not in env
    assert env["TENSOR_PARALLEL_SIZE"] == str(plan.gpu_count)
    assert env["GPU_MEMORY_UTILIZATION"] == f"{plan.gpu_memory_utilization:.2f}"
    assert env["DTYPE"] == "float32" and env["MAX_NUM_SEQS"] == "8"
    assert env["OPENAI_SERVED_MODEL_NAME_OVERRIDE"] == MODEL_ID
    assert env["ENFORCE_EAGER"] == "true" and env["SPECULATIVE_CONFIG"] == '{"n": 2}'
    assert "HF_TOKEN" not in env


def test_hf_token_goes_to_runpod_only_for_private_or_gated_repos(
    fake_hub: FakeHub,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tuneship.serving.runpod_base import hf_token_if_needed

    token = fake_hub.add_token("acme", role="read")
    monkeypatch.setenv("HF_TOKEN", token)
    fake_hub.add_repo("acme/public", {"config.json": b"{}"})
    fake_hub.add_repo("acme/private", {"config.json": b"{}"}, private=True)
    fake_hub.add_repo("acme/gated", {"config.json": b"{}"}, gated="manual")
    assert hf_token_if_needed("acme/public", None, None) is None
    assert hf_token_if_needed("acme/private", None, None) == token
    assert hf_token_if_needed("acme/gated", None, None) == token
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(ConfigError, match="HF_TOKEN"):
        hf_token_if_needed("acme/gated", None, None)


def test_serverless_budget_is_checked_before_anything_is_created(
    fake_runpod: FakeRunPod,  # noqa: F811
    tiny_model_dir: Path,
) -> None:
    options = runpod_options(workers_max=3, budget_usd_per_day=10.0)
    plan = tiny_plan(tiny_model_dir, options)
    target = RunPodServerlessTarget(client_for(fake_runpod), plan=plan, hf_token="")
    with pytest.raises(RunPodBudgetError) as err:
        target.deploy(MODEL_ID, options, name="run1")
    assert "workers_max" in str(err.value) and "Nothing was created" in str(err.value)
    assert assert_day_price(str(err.value), plan.usd_per_day_at_max_workers)
    assert not [n for n, _ in fake_runpod.graphql_log if n in CREATING_CALLS]
    assert fake_runpod.leftovers() == {"templates": [], "endpoints": [], "pods": []}


def assert_day_price(message: str, expected: float | None) -> bool:
    """The message quotes the plan's worst-case day price."""
    return expected is not None and f"${expected:,.2f}/day" in message


def test_pod_budget_is_checked_before_anything_is_created(
    fake_runpod: FakeRunPod,  # noqa: F811
    tiny_model_dir: Path,
) -> None:
    options = runpod_options("runpod-pod", budget_usd_per_hour=0.05)
    plan = tiny_plan(tiny_model_dir, options)
    target = RunPodPodTarget(client_for(fake_runpod), plan=plan, hf_token="")
    with pytest.raises(RunPodBudgetError, match="budget_usd_per_hour"):
        target.deploy(MODEL_ID, options, name="run1")
    assert not [n for n, _ in fake_runpod.graphql_log if n in CREATING_CALLS]


def test_pod_capacity_everywhere_creates_nothing(
    fake_runpod: FakeRunPod,  # noqa: F811
    tiny_model_dir: Path,
) -> None:
    options = runpod_options("runpod-pod")
    plan = tiny_plan(tiny_model_dir, options)
    fake_runpod.capacity.add("*")
    target = RunPodPodTarget(client_for(fake_runpod), plan=plan, hf_token="")
    with pytest.raises(RunPodCapacityError) as err:
        target.deploy(MODEL_ID, options, name="run1")
    assert all(gpu in str(err.value) for gpu in plan.gpu_ids)
    assert len(fake_runpod.calls("podFindAndDeployOnDemand")) == len(plan.gpu_ids)
    assert fake_runpod.leftovers()["pods"] == []


def test_stuck_queue_is_reported_with_health_and_everything_deleted(
    fake_runpod: FakeRunPod,  # noqa: F811
    tiny_model_dir: Path,
) -> None:
    options = runpod_options(queue_timeout_s=1.5)
    plan = tiny_plan(tiny_model_dir, options)
    fake_runpod.workers_start = False
    target = RunPodServerlessTarget(
        client_for(fake_runpod), plan=plan, hf_token="", poll_interval_s=0.2, template_wait_s=1
    )
    with pytest.raises(QueueStuckError) as err:
        target.deploy(MODEL_ID, options, name="stuck")
    message = str(err.value)
    assert "no worker started" in message and "inQueue 1" in message
    assert ",".join(plan.gpu_ids) in message and "CUDA 13.0" in message
    assert err.value.health["workers"]["running"] == 0
    assert fake_runpod.leftovers() == {"templates": [], "endpoints": [], "pods": []}
    assert all(job.status == "CANCELLED" for job in fake_runpod.jobs.values())


def test_serverless_template_and_endpoint_fields(
    fake_runpod: FakeRunPod,  # noqa: F811
    tiny_model_dir: Path,
) -> None:
    options = runpod_options(
        queue_timeout_s=0.5, workers_max=2, idle_timeout_s=7, network_volume_id="vol1"
    )
    plan = tiny_plan(tiny_model_dir, options)
    fake_runpod.workers_start = False
    target = RunPodServerlessTarget(
        client_for(fake_runpod), plan=plan, hf_token="", poll_interval_s=0.1, template_wait_s=1
    )
    with pytest.raises(QueueStuckError):
        target.deploy(MODEL_ID, options, name="fields")
    (template,) = [c["input"] for c in fake_runpod.calls("saveTemplate")]
    assert template["imageName"] == "runpod/worker-v1-vllm:v2.25.2"
    assert template["isServerless"] is True and template["name"] == "tuneship-fields"
    env = {e["key"]: e["value"] for e in template["env"]}
    assert env["MODEL_NAME"] == MODEL_ID and env["BASE_PATH"] == "/runpod-volume"
    assert fake_runpod.worker_warnings == []  # every variable is one the worker reads
    (endpoint,) = [c["input"] for c in fake_runpod.calls("saveEndpoint") if "id" not in c["input"]]
    assert endpoint["gpuIds"] == ",".join(plan.gpu_ids)
    assert endpoint["gpuCount"] == plan.gpu_count == int(env["TENSOR_PARALLEL_SIZE"])
    assert endpoint["allowedCudaVersions"] == "13.0"
    assert endpoint["workersMax"] == 2 and endpoint["idleTimeout"] == 7
    assert endpoint["networkVolumeId"] == "vol1" and endpoint["flashBootType"] == "FLASHBOOT"


@pytest.mark.parametrize(
    ("op", "status"),
    [
        ("podTemplates", 200),
        ("saveTemplate", 200),
        ("endpoints", 200),
        ("saveEndpoint", 200),
        ("run", 400),
        ("status", 400),
        ("health", 400),
    ],
)
def test_failure_at_each_serverless_step_leaves_nothing(
    fake_runpod: FakeRunPod,  # noqa: F811
    tiny_model_dir: Path,
    op: str,
    status: int,
) -> None:
    options = runpod_options()
    plan = tiny_plan(tiny_model_dir, options)
    target = RunPodServerlessTarget(
        client_for(fake_runpod), plan=plan, hf_token="", poll_interval_s=0.1, template_wait_s=1
    )
    graphql_op = {"podTemplates": "myself", "endpoints": "myself"}.get(op, op)
    if op == "endpoints":
        # The endpoint lookup is the second ``myself`` query (the first lists templates).
        fake_runpod.failures.clear()
        original = fake_runpod._gql_myself
        calls = {"n": 0}

        def failing(f):  # type: ignore[no-untyped-def]
            calls["n"] += 1
            if calls["n"] == 2:
                from fake_runpod import ApiError

                raise ApiError("Something went wrong")
            return original(f)

        fake_runpod._gql_myself = failing  # type: ignore[method-assign]
    else:
        fake_runpod.fail(graphql_op, "Something went wrong", status=status)
    # No backend: the worker would answer the readiness job with an error, but every
    # failure injected here happens first.
    with pytest.raises(TuneshipError):
        target.deploy(MODEL_ID, options, name=f"fail-{op}")
    assert all(f.times == 0 for f in fake_runpod.failures)  # the failure did happen
    assert fake_runpod.leftovers() == {"templates": [], "endpoints": [], "pods": []}


def test_cleanup_by_name_deletes_everything_and_is_idempotent(
    fake_runpod: FakeRunPod,  # noqa: F811
) -> None:
    from tuneship.serving.runpod_base import delete_resources_named

    client = client_for(fake_runpod)
    template = client.save_template(
        name="tuneship-r",
        image_name="runpod/worker-v1-vllm:v2.25.2",
        env={"MODEL_NAME": MODEL_ID},
        container_disk_in_gb=20,
        is_serverless=True,
    )
    client.create_endpoint(
        name="tuneship-r",
        template_id=template["id"],
        gpu_ids="AMPERE_24",
        gpu_count=1,
        workers_min=1,
        workers_max=2,
        idle_timeout=5,
        scaler_type="QUEUE_DELAY",
        scaler_value=4,
        flashboot=False,
        allowed_cuda_versions="13.0",
        network_volume_id=None,
    )
    client.create_pod(
        name="tuneship-r",
        image_name="vllm/vllm-openai:v0.27.1",
        gpu_type_id="NVIDIA L4",
        gpu_count=1,
        cloud_type="SECURE",
        container_disk_in_gb=20,
        docker_args="",
        ports="8000/http",
        env={},
    )
    deleted = delete_resources_named(client, "tuneship-r")
    assert len(deleted) == 3
    assert fake_runpod.leftovers() == {"templates": [], "endpoints": [], "pods": []}
    assert delete_resources_named(client, "tuneship-r") == []
