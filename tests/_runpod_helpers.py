"""Helpers for the RunPod tests: serve options, plans for the tiny model, a client, real pods."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fake_hub import FakeHub
from fake_runpod import FakeRunPod

from tuneship.config import PipelineConfig, ServeConfig, build_config
from tuneship.runpod.client import RunPodClient
from tuneship.runpod.specs import RunPodPlan, plan_pod, plan_serverless

MODEL_ID = "acme/tiny-chat"


def training_config(tmp_path: Path, *extra: str, name: str = "rp-run") -> PipelineConfig:
    """A config that trains on RunPod and pushes to ``alice/tiny-ft`` (``--set`` overrides)."""
    return build_config(
        {},
        [
            f"name={name}",
            "compute.provider=runpod",
            "publish.target=hub",
            "publish.repo_id=alice/tiny-ft",
            "serve.target=none",
            f"workdir={tmp_path / 'run'}",
            f"registry.url=sqlite:///{tmp_path / 'registry.db'}",
            *extra,
        ],
    )


def runpod_options(target: str = "runpod-serverless", **runpod: Any) -> ServeConfig:
    """Serve options for the tiny model on RunPod (short timeouts for tests)."""
    settings: dict[str, Any] = {"queue_timeout_s": 30}
    settings.update(runpod)
    return ServeConfig.model_validate(
        {
            "target": target,
            "dtype": "float32",
            "max_model_len": 512,
            "startup_timeout_s": 60,
            "runpod": settings,
        }
    )


def client_for(fake: FakeRunPod) -> RunPodClient:
    """A client for the fake with fast retries."""
    return RunPodClient(
        fake.api_key,
        api_base_url=fake.url,
        endpoint_base_url=fake.endpoint_base,
        pod_proxy_url=fake.proxy_template,
        backoff_s=0.01,
    )


def tiny_plan(model_dir: Path, options: ServeConfig, name: str = "run1") -> RunPodPlan:
    """The real planner's plan for the tiny model (facts read from its folder)."""
    from tuneship.planning import load_gpu_catalog, load_model_facts

    facts = load_model_facts(model_dir)
    if options.target == "runpod-pod":
        return plan_pod(
            MODEL_ID, options, name=name, facts=facts, gpus=load_gpu_catalog().rentable()
        )
    return plan_serverless(MODEL_ID, options, name=name, facts=facts)


def run_pods_for_real(fake: FakeRunPod, hub: FakeHub, tmp_path: Path) -> None:
    """Pods run their command as local processes on the CPU, the fake Hub as HF_ENDPOINT.

    The status endpoint's port (8765 on a real pod) is a free local port per pod, which the
    fake's proxy URL maps to.
    """
    fake.run_pod_commands = True
    fake.pod_root = tmp_path / "pods"
    fake.pod_port_env = {8765: "TUNESHIP_STATUS_PORT"}
    fake.pod_env = {
        "HF_ENDPOINT": hub.endpoint,
        "HF_HUB_OFFLINE": "0",
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_CACHE": str(tmp_path / "pod-hf-cache"),
        "TUNESHIP_POD_ALLOW_CPU": "1",
        "PYTHONNOUSERSITE": "1",
    }
