"""The ``deploy_model`` flow: deploy any Hub model to RunPod, test it, register it.

plan (GPUs, prices, budget; nothing created) -> deploy (template + endpoint, or a pod,
named ``tuneship-<run>``) -> smoke test (chat and streamed chat through the OpenAI route)
-> register (the deployment, with ids, URL, pools, prices and budget, in the registry).

Money safety is layered (docs/runpod.md): the target deletes what it created when its own
deploy fails; ``managed_deployment`` stops the deployment on any later exception,
Ctrl-C or SIGTERM; and the flow's ``on_crashed``/``on_cancellation`` hooks delete every
resource named ``tuneship-<run>`` even when the flow process is gone.
"""

from __future__ import annotations

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from pydantic import BaseModel

from tuneship.config import ServeConfig
from tuneship.tasks._common import artifact_key, get_logger
from tuneship.tasks.deploy import (
    cleanup_runpod_run,
    make_runpod_target,
    plan_runpod_deployment,
    smoke_test_runpod,
)


class DeployResult(BaseModel):
    """What ``deploy_model`` produced (small, JSON-friendly; no secret)."""

    name: str
    target: str
    url: str
    served_model_name: str
    resource_name: str
    endpoint_id: str | None = None
    pod_id: str | None = None
    gpu_ids: list[str]
    gpu_count: int
    usd_per_hour: float | None = None
    kept_running: bool
    answer: str = ""
    latency_s: float = 0.0


@task(name="register-hub-model", cache_policy=NO_CACHE)
def register_hub_model(model: str, version: str, registry_url: str) -> None:
    """Record the served Hub model in the registry (once per version)."""
    import contextlib

    from tuneship.registry import ModelEntry, Registry

    with contextlib.closing(Registry(registry_url)) as registry:
        if registry.get_model(model, version) is None:
            registry.upsert_model(
                ModelEntry(
                    name=model,
                    version=version,
                    artifact_target="hub",
                    artifact_location=model,
                    artifact_revision=None if version == "main" else version,
                    flow_run_id=str(flow_run.get_id() or "") or None,
                )
            )


def deploy_to_runpod(
    model: str,
    serve: ServeConfig,
    *,
    run_name: str,
    revision: str | None,
    registry_url: str,
    keep_serving: bool,
    model_name: str | None = None,
    model_version: str | None = None,
    register_model: bool = True,
) -> DeployResult:
    """Plan, deploy, smoke-test (and register) a Hub model on RunPod; call inside a flow.

    Shared by ``deploy_model`` and the fine-tuning pipeline's deploy step. Anything that
    fails after a resource exists tears it down before the error propagates.

    Args:
        model: Hub repo id.
        serve: The ``serve`` section (a RunPod target).
        run_name: Deployment name; resources are named ``tuneship-<run_name>``.
        revision: Hub revision to serve (the pushed commit).
        registry_url: Registry URL.
        keep_serving: Leave the deployment running after success.
        model_name: Registered model name (default: the repo id).
        model_version: Registered model version (default: the revision or "main").
        register_model: Register the Hub model itself (the pipeline has done so already).

    Returns:
        The endpoint, its price and the smoke test's answer.
    """
    from tuneship.serving.lifecycle import managed_deployment
    from tuneship.serving.runpod_base import RunPodDeploymentInfo

    registry = registry_url
    version = model_version or revision or "main"
    keep_serving_flag = keep_serving
    plan = plan_runpod_deployment(model, serve, run_name, revision)
    target = make_runpod_target(serve, plan=plan, revision=revision)
    with managed_deployment(
        model,
        serve,
        name=run_name,
        model_name=model_name or model,
        model_version=version,
        registry_url=registry,
        keep=keep_serving_flag,
        target=target,
    ) as info:
        assert isinstance(info, RunPodDeploymentInfo)
        get_logger().info("deployed %s at %s", info.resource_name, info.url)
        smoke = None
        if serve.smoke_test:
            smoke = smoke_test_runpod(
                info.url,
                info.served_model_name,
                run_name,
                credentials_block=serve.runpod.credentials_block,
                api_key_file=info.api_key_file,
                endpoint_id=info.endpoint_id,
            )
        if register_model:
            register_hub_model(model, version, registry)
        price = f"${info.usd_per_hour:.2f}/h per worker" if info.usd_per_hour else "unpriced"
        create_markdown_artifact(
            markdown="\n".join(
                [
                    f"`{info.served_model_name}` at [{info.url}]({info.url})",
                    "",
                    f"* target: {info.target}, resources named `{info.resource_name}`",
                    f"* GPUs: {info.gpu_count} x {', '.join(info.gpu_ids)} ({price})",
                    f"* stop it: `tuneship deployments stop {info.name}`",
                ]
            ),
            key=artifact_key(run_name, "runpod-endpoint"),
            description="RunPod deployment",
        )
        return DeployResult(
            name=info.name,
            target=info.target,
            url=info.url,
            served_model_name=info.served_model_name,
            resource_name=info.resource_name,
            endpoint_id=info.endpoint_id,
            pod_id=info.pod_id,
            gpu_ids=info.gpu_ids,
            gpu_count=info.gpu_count,
            usd_per_hour=info.usd_per_hour,
            kept_running=keep_serving_flag,
            answer=smoke.answer if smoke else "",
            latency_s=smoke.latency_s if smoke else 0.0,
        )


@flow(
    name="deploy-model",
    log_prints=True,
    on_crashed=[cleanup_runpod_run],
    on_cancellation=[cleanup_runpod_run],
)
def deploy_model(
    model: str,
    serve: ServeConfig | None = None,
    revision: str | None = None,
    name: str | None = None,
    registry_url: str | None = None,
    keep_serving: bool = True,
) -> DeployResult:
    """Deploy a Hugging Face Hub model to RunPod, smoke-test it and register it.

    Args:
        model: Hub repo id (public, private or gated; the token is sent only when needed).
        serve: The ``serve`` section; ``target`` is ``runpod-serverless`` (default) or
            ``runpod-pod``, RunPod settings under ``serve.runpod``.
        revision: Hub revision (branch, tag or commit) to serve.
        name: Deployment name (default: the flow run's name); resources are named
            ``tuneship-<name>``.
        registry_url: Registry URL (default: $TUNESHIP_HOME/registry.db).
        keep_serving: Leave the deployment running after success (default); when false it
            is deleted at the end (a test deployment).

    Returns:
        The endpoint, its price and the smoke test's answer.
    """
    from tuneship.registry import default_registry_url
    from tuneship.secrets import install_secret_filter

    install_secret_filter()
    serve = serve or ServeConfig(target="runpod-serverless")
    if serve.target not in ("runpod-serverless", "runpod-pod"):
        serve = serve.model_copy(update={"target": "runpod-serverless"})
    run_name = name or str(flow_run.get_name() or "deploy")
    registry = registry_url or default_registry_url()
    return deploy_to_runpod(
        model,
        serve,
        run_name=run_name,
        revision=revision,
        registry_url=registry,
        keep_serving=keep_serving,
    )
