"""RunPod as strict as the real API: what it refuses, GPU choice, crash loops, the janitor."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from _runpod_helpers import MODEL_ID, client_for, runpod_options, tiny_plan
from fake_runpod import FakeRunPod, fake_runpod  # noqa: F401 - fixture
from typer.testing import CliRunner

from tuneship.errors import ServingError
from tuneship.runpod.client import CREATED_AT_ENV, gql_value
from tuneship.runpod.errors import RunPodApiError, RunPodCapacityError, RunPodTransientError
from tuneship.runpod.gpu_choice import rank_gpu_types, rent_first_available, rentable_gpu_types
from tuneship.runpod.janitor import list_leftovers, parse_age, select_older

POD = {
    "name": "tuneship-strict",
    "image_name": "vllm/vllm-openai:v0.27.1",
    "gpu_count": 1,
    "cloud_type": "SECURE",
    "container_disk_in_gb": 20,
    "docker_args": "",
    "ports": "8000/http",
    "env": {},
}


def _template(client, name: str = "tuneship-strict") -> dict:  # type: ignore[no-untyped-def]
    return client.save_template(
        name=name,
        image_name="runpod/worker-v1-vllm:v2.25.2",
        env={"MODEL_NAME": MODEL_ID},
        container_disk_in_gb=20,
        is_serverless=True,
    )


def test_fake_refuses_what_runpod_refuses(fake_runpod: FakeRunPod) -> None:  # noqa: F811
    client = client_for(fake_runpod)
    base = {
        "name": "tuneship-raw",
        "imageName": "img:v1",
        "dockerArgs": "",
        "containerDiskInGb": 20,
        "volumeInGb": 0,
        "env": [],
    }
    refused = {
        "not defined": {**base, "containerDiskSize": 20},
        "Int cannot represent": {**base, "containerDiskInGb": "20"},
    }
    for message, fields in refused.items():
        with pytest.raises(RunPodApiError, match=message):
            client.graphql("t", f"mutation {{ saveTemplate(input: {gql_value(fields)}) {{ id }} }}")
    with pytest.raises(RunPodApiError, match="Cannot query field"):
        client.graphql("t", "query { myself { pods { id bogusField } } }")
    pod = {
        "name": "tuneship-raw",
        "imageName": "img:v1",
        "gpuTypeId": "NVIDIA L4",
        "cloudType": "SECURE",  # a quoted enum: RunPod wants SECURE bare
    }
    with pytest.raises(RunPodApiError, match="Enum cannot represent"):
        client.graphql(
            "p", f"mutation {{ podFindAndDeployOnDemand(input: {gql_value(pod)}) {{ id }} }}"
        )
    template = _template(client)
    endpoint = {
        "template_id": template["id"],
        "gpu_count": 1,
        "workers_min": 0,
        "workers_max": 2,
        "idle_timeout": 7,
        "scaler_type": "QUEUE_DELAY",
        "scaler_value": 4,
        "flashboot": False,
        "allowed_cuda_versions": "13.0",
        "network_volume_id": None,
    }
    with pytest.raises(RunPodApiError, match="pool ids"):
        client.create_endpoint(name="tuneship-strict", gpu_ids="NVIDIA L4", **endpoint)
    created = client.create_endpoint(name="tuneship-strict", gpu_ids="AMPERE_24", **endpoint)
    # A partial save resets what it leaves out (RunPod replaces the whole endpoint) ...
    partial = {"id": created["id"], "name": "tuneship-strict", "templateId": template["id"]}
    partial["gpuIds"] = "AMPERE_24"
    client.graphql("e", f"mutation {{ saveEndpoint(input: {gql_value(partial)}) {{ id }} }}")
    assert fake_runpod.endpoints[created["id"]]["idleTimeout"] == 5
    assert fake_runpod.endpoints[created["id"]]["allowedCudaVersions"] == ""
    # ... so the client lays its change over the whole current endpoint.
    client.update_endpoint(created["id"], {"idleTimeout": 9})
    client.update_endpoint(created["id"], {"workersMax": 1})
    saved = fake_runpod.endpoints[created["id"]]
    assert (saved["idleTimeout"], saved["workersMax"], saved["gpuIds"]) == (9, 1, "AMPERE_24")
    client.scale_endpoint_to_zero(saved)
    client.delete_endpoint(created["id"])
    with pytest.raises(RunPodApiError, match="used recently"):
        client.delete_template("tuneship-strict")
    time.sleep(fake_runpod.template_refusal_s)
    client.delete_template("tuneship-strict")
    assert fake_runpod.leftovers() == {"templates": [], "endpoints": [], "pods": []}


def test_one_retry_policy_never_repeats_a_post_that_may_have_acted(
    fake_runpod: FakeRunPod,  # noqa: F811
) -> None:
    client = client_for(fake_runpod)
    fake_runpod.fail("podFindAndDeployOnDemand", "bad gateway", status=502)
    with pytest.raises(RunPodTransientError, match="after 1 tries"):
        client.create_pod(gpu_type_id="NVIDIA L4", **POD)
    assert len(fake_runpod.calls("podFindAndDeployOnDemand")) == 1  # not sent twice
    fake_runpod.fail("podFindAndDeployOnDemand", "slow down", status=429)  # with Retry-After
    pod = client.create_pod(gpu_type_id="NVIDIA L4", **POD)
    assert len(fake_runpod.calls("podFindAndDeployOnDemand")) == 3
    env = fake_runpod.pods[pod["id"]]["env_map"]
    assert float(env[CREATED_AT_ENV]) <= time.time()
    template = _template(client, "tuneship-r")
    created = client.create_endpoint(
        name="tuneship-r",
        template_id=template["id"],
        gpu_ids="AMPERE_24",
        gpu_count=1,
        workers_min=0,
        workers_max=1,
        idle_timeout=5,
        scaler_type="QUEUE_DELAY",
        scaler_value=4,
        flashboot=False,
        allowed_cuda_versions=None,
        network_volume_id=None,
    )
    fake_runpod.fail("health", "bad gateway", status=502, times=2)  # a GET: retried
    assert "workers" in client.endpoint_health(created["id"])


def test_only_whole_nvidia_gpus_ranked_by_price_with_capacity_fallback(
    fake_runpod: FakeRunPod,  # noqa: F811
) -> None:
    from tuneship.planning import load_runpod_catalog

    client = client_for(fake_runpod)
    rows = client.get_gpu_types()
    ids = {r["id"] for r in rows}
    assert "AMD Instinct MI300X OAM" in ids and any("MIG" in i for i in ids)
    rentable = {r["id"] for r in rentable_gpu_types(rows)}
    assert rentable and all(i.startswith("NVIDIA") and "MIG" not in i for i in rentable)
    assert {g.runpod_id for g in load_runpod_catalog(client)} <= rentable
    fitting = sorted(ids)  # as if the plan said every type fits
    ranked = rank_gpu_types(fitting, rows, "SECURE")
    assert {c.gpu_type_id for c in ranked} == rentable
    prices = [c.usd_per_gpu_hour or 0 for c in ranked]
    assert prices == sorted(prices) and {c.cloud_type for c in ranked} == {"SECURE"}
    both = rank_gpu_types(fitting, rows, "SECURE", other_cloud=True)
    assert [c.cloud_type for c in both] == ["SECURE"] * len(ranked) + ["COMMUNITY"] * len(ranked)
    chosen = rank_gpu_types(
        fitting, rows, "SECURE", ["NVIDIA A40", "L4", "AMD Instinct MI300X OAM"]
    )
    assert [c.gpu_type_id for c in chosen] == ["NVIDIA A40", "NVIDIA L4"]
    fake_runpod.capacity.add("NVIDIA A40")
    pod, choice = rent_first_available(
        chosen,
        lambda c: client.create_pod(
            gpu_type_id=c.gpu_type_id, allowed_cuda_versions=["13.0"], **POD
        ),
    )
    assert choice.gpu_type_id == "NVIDIA L4"
    assert fake_runpod.pods[pod["id"]]["allowedCudaVersions"] == ["13.0"]
    fake_runpod.capacity.add("*")
    with pytest.raises(RunPodCapacityError, match="NVIDIA A40 \\(SECURE\\)"):
        rent_first_available(chosen, lambda c: client.create_pod(gpu_type_id=c.gpu_type_id, **POD))
    assert len(fake_runpod.pods) == 1


def test_crash_looping_pod_is_reported_and_terminated(
    fake_runpod: FakeRunPod,  # noqa: F811
    tiny_model_dir: Path,
) -> None:
    from tuneship.serving.runpod_pod import RunPodPodTarget

    options = runpod_options("runpod-pod")
    plan = tiny_plan(tiny_model_dir, options)
    fake_runpod.crash_loop.add("tuneship-looping")
    fake_runpod.pod_boot_polls = 1
    target = RunPodPodTarget(client_for(fake_runpod), plan=plan, hf_token="", poll_interval_s=0.1)
    with pytest.raises(ServingError, match="keeps restarting"):
        target.deploy(MODEL_ID, options, name="looping")
    (created,) = fake_runpod.calls("podFindAndDeployOnDemand")
    assert created["input"]["allowedCudaVersions"] == ["13.0"]
    assert fake_runpod.leftovers()["pods"] == []


def test_janitor_lists_then_removes_old_tuneship_resources(
    fake_runpod: FakeRunPod,  # noqa: F811
) -> None:
    from tuneship.cli.main import app

    assert parse_age("2h") == 7200 and parse_age("90s") == 90
    client = client_for(fake_runpod)
    three_hours_ago = str(int(time.time()) - 3 * 3600)
    old_pod = client.create_pod(
        gpu_type_id="NVIDIA L4",
        **{**POD, "name": "tuneship-old", "env": {CREATED_AT_ENV: three_hours_ago}},
    )
    client.create_pod(gpu_type_id="NVIDIA L4", **{**POD, "name": "tuneship-new"})
    client.create_pod(gpu_type_id="NVIDIA L4", **{**POD, "name": "someone-elses"})
    template = _template(client, "tuneship-oldep")
    fake_runpod.templates[template["id"]]["readme"] = f"Created by tuneship at {three_hours_ago}"
    client.create_endpoint(
        name="tuneship-oldep",
        template_id=template["id"],
        gpu_ids="AMPERE_24",
        gpu_count=1,
        workers_min=1,
        workers_max=1,
        idle_timeout=5,
        scaler_type="QUEUE_DELAY",
        scaler_value=4,
        flashboot=False,
        allowed_cuda_versions=None,
        network_volume_id=None,
    )
    old = select_older(list_leftovers(client), 7200)
    assert sorted((r.kind, r.name) for r in old) == [
        ("endpoint", "tuneship-oldep"),
        ("pod", "tuneship-old"),
        ("template", "tuneship-oldep"),
    ]
    runner = CliRunner()
    dry = runner.invoke(app, ["runpod", "janitor", "--older-than", "2h", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert (
        "would remove pod tuneship-old" in dry.output and "keep    pod tuneship-new" in dry.output
    )
    assert "3 to remove" in dry.output and old_pod["id"] in fake_runpod.pods
    first = runner.invoke(app, ["runpod", "janitor", "--older-than", "2h"])
    # RunPod refuses the template for a while after its endpoint went: reported, rerun.
    assert first.exit_code == 1 and "2 removed, 1 failed" in first.output
    time.sleep(fake_runpod.template_refusal_s)
    second = runner.invoke(app, ["runpod", "janitor", "--older-than", "2h"])
    assert second.exit_code == 0 and "1 removed, 0 failed" in second.output
    assert fake_runpod.leftovers() == {
        "templates": [],
        "endpoints": [],
        "pods": ["tuneship-new", "someone-elses"],
    }
