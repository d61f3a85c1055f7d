"""RunPod targets end to end: the fake RunPod API forwards to a REAL local vLLM server.

One vLLM CPU server (the tiny model, served as ``acme/tiny-chat``) is shared by the module;
the fake's workers and pod proxy forward every inference request to it, so the smoke test
talks to real vLLM through RunPod's OpenAI route and pod proxy.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from _runpod_helpers import MODEL_ID, client_for, runpod_options, tiny_plan
from _serving_helpers import engine_python_or_skip, tiny_serve_options
from fake_hub import FakeHub, fake_hub  # noqa: F401 - fixture
from fake_runpod import FakeRunPod, fake_runpod  # noqa: F401 - fixture
from typer.testing import CliRunner

from tuneship.registry import Registry
from tuneship.serving.lifecycle import managed_deployment
from tuneship.serving.runpod_base import RunPodDeploymentInfo
from tuneship.serving.runpod_pod import RunPodPodTarget
from tuneship.serving.runpod_serverless import RunPodServerlessTarget
from tuneship.serving.smoke import SmokeTestError, run_smoke_test

pytestmark = pytest.mark.slow
BACKEND_KEY = "backend-key-0123456789"
EMPTY = {"templates": [], "endpoints": [], "pods": []}


@pytest.fixture(scope="module")
def vllm_backend(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real vLLM CPU server on the tiny model, serving it as ``acme/tiny-chat``."""
    from tuneship.serving.local_vllm import LocalVllmTarget

    engine = engine_python_or_skip()
    options = tiny_serve_options(engine, served_model_name=MODEL_ID, api_key=BACKEND_KEY)
    target = LocalVllmTarget(deployments_dir=tmp_path_factory.mktemp("backend"))
    info = target.deploy(tiny_model_dir, options, name="runpod-backend")
    try:
        yield info.url.removesuffix("/v1")
    finally:
        target.stop(info)


@pytest.fixture
def fake(fake_runpod: FakeRunPod, vllm_backend: str) -> FakeRunPod:  # noqa: F811
    fake_runpod.backend = (vllm_backend, BACKEND_KEY)
    return fake_runpod


def _cli_stop(name: str, registry: str) -> str:
    from tuneship.cli.main import app

    result = CliRunner().invoke(app, ["deployments", "stop", name, "--registry", registry])
    assert result.exit_code == 0, result.output
    return result.output


def test_serverless_deploys_smoke_tests_redeploys_and_stops(
    fake: FakeRunPod, tiny_model_dir: Path, tmp_path: Path
) -> None:
    options = runpod_options()
    plan = tiny_plan(tiny_model_dir, options)
    client = client_for(fake)
    registry = f"sqlite:///{tmp_path / 'registry.db'}"
    target = RunPodServerlessTarget(client, plan=plan, hf_token="", poll_interval_s=0.2)
    with managed_deployment(
        MODEL_ID, options, name="sl", registry_url=registry, keep=True, target=target
    ) as info:
        assert isinstance(info, RunPodDeploymentInfo)
        assert info.url == f"{fake.endpoint_base}/{info.endpoint_id}/openai/v1"
        smoke = run_smoke_test(info.url, fake.api_key, info.served_model_name)
        assert smoke.answer.strip() and smoke.streamed_answer.strip()
        assert "runsync job COMPLETED" in target.diagnose(info, wait_s=30)
    assert fake.leftovers() == {
        "templates": ["tuneship-sl"],
        "endpoints": ["tuneship-sl"],
        "pods": [],
    }
    with Registry(registry) as reg:
        entry = reg.get_deployment("sl")
    assert entry is not None and entry.status == "running" and entry.target == "runpod-serverless"
    assert entry.details["endpoint_id"] == info.endpoint_id
    assert entry.details["gpu_ids"] == plan.gpu_ids
    assert entry.details["usd_per_second"] == plan.usd_per_second
    assert entry.url == info.url and entry.served_model_name == MODEL_ID
    assert fake.api_key not in entry.model_dump_json()

    # Re-deploying the same name updates the template and endpoint in place.
    options2 = runpod_options(workers_max=2)
    again = RunPodServerlessTarget(
        client, plan=tiny_plan(tiny_model_dir, options2), hf_token="", poll_interval_s=0.2
    ).deploy(MODEL_ID, options2, name="sl")
    assert (again.endpoint_id, again.template_id) == (info.endpoint_id, info.template_id)
    assert len(fake.endpoints) == 1 and len(fake.templates) == 1
    assert next(iter(fake.endpoints.values()))["workersMax"] == 2

    assert "stopped" in _cli_stop("sl", registry)
    assert fake.leftovers() == EMPTY
    with Registry(registry) as reg:
        assert reg.get_deployment("sl").status == "stopped"  # type: ignore[union-attr]


def test_failure_after_deploy_tears_the_endpoint_down(
    fake: FakeRunPod, tiny_model_dir: Path, tmp_path: Path
) -> None:
    options = runpod_options()
    target = RunPodServerlessTarget(
        client_for(fake), plan=tiny_plan(tiny_model_dir, options), hf_token="", poll_interval_s=0.2
    )
    registry = f"sqlite:///{tmp_path / 'registry.db'}"
    fake.fail("openai", "worker crashed", status=500)
    with (
        pytest.raises(SmokeTestError),
        managed_deployment(
            MODEL_ID, options, name="broken", registry_url=registry, keep=True, target=target
        ) as info,
    ):
        run_smoke_test(info.url, fake.api_key, info.served_model_name)
    assert fake.leftovers() == EMPTY
    with Registry(registry) as reg:
        assert reg.get_deployment("broken").status == "failed"  # type: ignore[union-attr]


def test_pod_falls_back_on_capacity_waits_for_runtime_and_stops(
    fake: FakeRunPod, tiny_model_dir: Path, tmp_path: Path
) -> None:
    options = runpod_options("runpod-pod")
    plan = tiny_plan(tiny_model_dir, options)
    fake.capacity.add(plan.gpu_ids[0])
    fake.pod_boot_polls = 3
    registry = f"sqlite:///{tmp_path / 'registry.db'}"
    target = RunPodPodTarget(client_for(fake), plan=plan, hf_token="", poll_interval_s=0.2)
    with managed_deployment(
        MODEL_ID, options, name="pod1", registry_url=registry, keep=True, target=target
    ) as info:
        assert isinstance(info, RunPodDeploymentInfo)
        assert info.gpu_ids == [plan.gpu_ids[1]]
        assert info.url == f"{fake.url}/proxy/{info.pod_id}-8000/v1"
        pod = fake.pods[str(info.pod_id)]
        assert pod["imageName"] == "vllm/vllm-openai:v0.27.1" and pod["ports"] == "8000/http"
        assert "--tensor-parallel-size 1" in pod["dockerArgs"]
        assert "--max-model-len 512" in pod["dockerArgs"]
        assert info.api_key not in pod["dockerArgs"]
        assert pod["env_map"]["VLLM_API_KEY"] == info.api_key
        assert Path(str(info.api_key_file)).stat().st_mode & 0o077 == 0
        smoke = run_smoke_test(info.url, info.api_key, info.served_model_name)
        assert smoke.answer.strip()
        with pytest.raises(SmokeTestError, match="401"):
            run_smoke_test(info.url, "wrong-key", info.served_model_name)
    assert fake.leftovers()["pods"] == ["tuneship-pod1"]
    _cli_stop("pod1", registry)
    assert fake.leftovers() == EMPTY


def test_deploy_model_flow_end_to_end(
    fake: FakeRunPod,
    fake_hub: FakeHub,  # noqa: F811
    tiny_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    prefect_harness: None,
) -> None:
    import huggingface_hub.hf_api

    from tuneship.flows.deploy import deploy_model

    # get_safetensors_metadata uses huggingface_hub's module-level HfApi, whose endpoint
    # was fixed at import time.
    monkeypatch.setattr(huggingface_hub.hf_api.api, "endpoint", fake_hub.endpoint)
    fake_hub.add_folder(MODEL_ID, tiny_model_dir)
    registry = f"sqlite:///{tmp_path / 'registry.db'}"
    options = runpod_options(budget_usd_per_day=100.0)
    result = deploy_model(MODEL_ID, serve=options, name="e2e", registry_url=registry)
    assert result.answer.strip() and result.kept_running
    assert fake.leftovers()["endpoints"] == ["tuneship-e2e"]
    (template,) = fake.templates.values()
    env = {e["key"]: e["value"] for e in template["env"]}
    assert env["MODEL_NAME"] == MODEL_ID and "HF_TOKEN" not in env  # a public repo
    with Registry(registry) as reg:
        entry = reg.get_deployment("e2e")
        assert reg.get_model(MODEL_ID, "main") is not None
    assert entry is not None and entry.status == "running"
    assert entry.details["budget_usd_per_day"] == 100.0
    _cli_stop("e2e", registry)
    assert fake.leftovers() == EMPTY

    # Over budget: the flow fails before creating anything.
    with pytest.raises(Exception, match="budget"):
        deploy_model(
            MODEL_ID,
            serve=runpod_options(budget_usd_per_day=1.0),
            name="poor",
            registry_url=registry,
        )
    assert not fake.calls("saveTemplate")[1:]


def test_crash_hook_deletes_the_runs_resources_by_name(
    fake_runpod: FakeRunPod,  # noqa: F811
    prefect_harness: None,
) -> None:
    from prefect.client.schemas.objects import FlowRun

    from tuneship.flows.deploy import deploy_model
    from tuneship.tasks.deploy import cleanup_runpod_run

    client = client_for(fake_runpod)
    template = client.save_template(
        name="tuneship-crimson-frog",
        image_name="runpod/worker-v1-vllm:v2.25.2",
        env={"MODEL_NAME": MODEL_ID},
        container_disk_in_gb=20,
        is_serverless=True,
    )
    client.create_endpoint(
        name="tuneship-crimson-frog",
        template_id=template["id"],
        gpu_ids="AMPERE_24",
        gpu_count=1,
        workers_min=0,
        workers_max=1,
        idle_timeout=5,
        scaler_type="QUEUE_DELAY",
        scaler_value=4,
        flashboot=True,
        allowed_cuda_versions="13.0",
        network_volume_id=None,
    )
    run = FlowRun(
        flow_id=uuid.uuid4(),
        name="crimson-frog",
        parameters={"model": MODEL_ID, "serve": runpod_options().model_dump()},
    )
    cleanup_runpod_run(deploy_model, run, type("S", (), {"name": "Crashed"})())
    assert fake_runpod.leftovers() == EMPTY


def test_pipeline_trains_publishes_and_serves_on_runpod_serverless(
    fake: FakeRunPod,
    fake_hub: FakeHub,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    prefect_harness: None,
) -> None:
    """finetune_and_deploy with serve.target=runpod-serverless: the pushed commit is served."""
    import huggingface_hub.hf_api

    from tuneship.config import load_config
    from tuneship.demo import demo_config_path
    from tuneship.flows.finetune import finetune_and_deploy

    monkeypatch.setattr(huggingface_hub.hf_api.api, "endpoint", fake_hub.endpoint)
    token = fake_hub.add_token("alice", orgs={"acme": "write"})
    monkeypatch.setenv("HF_TOKEN", token)
    registry = f"sqlite:///{tmp_path / 'registry.db'}"
    cfg = load_config(
        demo_config_path(),
        [
            "name=pipe",
            "training.max_steps=10",
            "training.eval_steps=5",
            "training.require_improvement=false",
            "publish.target=hub",
            f"publish.repo_id={MODEL_ID}",
            "publish.vllm_load_check=off",
            "serve.target=runpod-serverless",
            "serve.dtype=float32",
            "serve.max_model_len=512",
            "serve.smoke_temperature=0.7",
            "serve.keep_serving=false",
            "serve.runpod.queue_timeout_s=30",
            f"workdir={tmp_path / 'run'}",
            f"registry.url={registry}",
        ],
    )
    summary = finetune_and_deploy(cfg)

    assert summary.published.target == "hub"
    dep = summary.deployment
    assert dep is not None and dep.answer.strip() and not dep.kept_running
    # The worker was pointed at the exact pushed commit, then everything was torn down.
    saved = fake.calls("saveTemplate")
    assert saved
    assert summary.published.revision in json.dumps(saved[-1])
    assert fake.leftovers() == EMPTY
    with Registry(registry) as reg:
        entry = reg.get_deployment("pipe")
    assert entry is not None and entry.status == "stopped"
    assert entry.model_version == summary.model_version
