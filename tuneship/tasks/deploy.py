"""Tasks for deploying to RunPod: plan with prices and budget, smoke-test, crash cleanup.

The pipeline's deploy step and the standalone ``deploy_model`` flow use the same tasks.
Secrets never become task parameters (Prefect stores parameters): the RunPod key comes
from the credentials block named in the config, a pod's key from its 0600 file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from tuneship.config import ServeConfig
from tuneship.runpod.specs import RunPodPlan
from tuneship.serving.base import DeploymentInfo, ServingTarget
from tuneship.serving.smoke import SmokeResult
from tuneship.tasks._common import artifact_key, get_logger, retry_on_transient


def make_runpod_target(
    serve: ServeConfig, plan: RunPodPlan | None = None, revision: str | None = None
) -> ServingTarget:
    """The serving target for ``serve.target`` (``runpod-serverless`` or ``runpod-pod``),
    with the RunPod client and Hub token loaded from the config's blocks.

    Raises:
        ConfigError: ``serve.target`` is not a RunPod target.
    """
    from tuneship.errors import ConfigError
    from tuneship.tasks.credentials import RUNPOD_TARGETS, load_target

    if serve.target not in RUNPOD_TARGETS:
        raise ConfigError(
            f"serve.target={serve.target!r}: deploy_model deploys to 'runpod-serverless' or "
            "'runpod-pod'"
        )
    return load_target(
        serve.target,
        serve.runpod.credentials_block,
        serve.runpod.hf_credentials_block,
        plan=plan,
        revision=revision,
    )


@task(
    name="plan-runpod-deployment",
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=retry_on_transient,
    cache_policy=NO_CACHE,
)
def plan_runpod_deployment(
    model: str, serve: ServeConfig, run_name: str, revision: str | None = None
) -> RunPodPlan:
    """Plan GPUs, TP, context and prices, and check the budget; creates nothing.

    Args:
        model: Hub repo id.
        serve: The ``serve`` section (``target`` is a RunPod target).
        run_name: Deployment name (resources are named ``tuneship-<run>``).
        revision: Hub revision to serve.

    Returns:
        The plan the target deploys.
    """
    target = make_runpod_target(serve, revision=revision)
    plan: RunPodPlan = target.plan(model, serve, name=run_name)
    rows: list[dict[str, Any]] = [
        {
            "gpu": gpu_id,
            "name": plan.gpu_names[i] if i < len(plan.gpu_names) else "",
            "gpus per worker/pod (TP)": plan.gpu_count,
            "usd per hour": plan.usd_per_hour.get(gpu_id),
            "usd per second": plan.usd_per_second.get(gpu_id, "-"),
        }
        for i, gpu_id in enumerate(plan.gpu_ids)
    ]
    create_table_artifact(
        table=rows,
        key=artifact_key(run_name, "runpod-plan"),
        description=(
            f"{serve.target} plan for {model}: max_model_len {plan.max_model_len}, worst case "
            f"${plan.worst_usd_per_hour}/h per worker"
            + (
                f", ${plan.usd_per_day_at_max_workers}/day at {plan.workers_max} workers"
                if plan.kind == "serverless"
                else ""
            )
        ),
    )
    get_logger().info(
        "RunPod plan: %d GPU(s) on %s, max_model_len %s",
        plan.gpu_count,
        ",".join(plan.gpu_ids),
        plan.max_model_len,
    )
    return plan


@task(name="smoke-test-runpod", cache_policy=NO_CACHE)
def smoke_test_runpod(
    url: str,
    served_model_name: str,
    run_name: str,
    credentials_block: str | None = None,
    api_key_file: str | None = None,
    endpoint_id: str | None = None,
) -> SmokeResult:
    """Smoke-test a RunPod deployment through its OpenAI route (chat and streamed chat).

    A serverless endpoint takes the RunPod key (from the block or ``RUNPOD_API_KEY``); a pod
    takes its own key from ``api_key_file``. When a serverless smoke test fails, one job is
    sent through ``/runsync`` and its answer and the endpoint's health join the error.

    Raises:
        SmokeTestError: The endpoint failed; the message has the diagnosis.
    """
    from tuneship.serving.smoke import SmokeTestError, run_smoke_test
    from tuneship.tasks.credentials import load_runpod_client

    client = None
    if api_key_file:
        api_key = Path(api_key_file).read_text(encoding="utf-8").strip()
    else:
        client = load_runpod_client(credentials_block)
        api_key = client.api_key.get_secret_value()
    try:
        result = run_smoke_test(url, api_key, served_model_name)
    except SmokeTestError as exc:
        if client is None or endpoint_id is None:
            raise
        from tuneship.serving.runpod_base import RunPodDeploymentInfo
        from tuneship.serving.runpod_serverless import RunPodServerlessTarget

        info = RunPodDeploymentInfo(
            name=run_name,
            target="runpod-serverless",
            url=url,
            served_model_name=served_model_name,
            model=served_model_name,
            resource_name=run_name,
            endpoint_id=endpoint_id,
        )
        diagnosis = RunPodServerlessTarget(client).diagnose(info)
        raise SmokeTestError(f"{exc}\nDiagnosis through /runsync: {diagnosis}") from None
    get_logger().info(
        "smoke test of %s: %.2fs, answer %r", url, result.latency_s, result.answer[:80]
    )
    return result


def delete_run_resources(
    logger: Any, target: str, credentials_block: str | None, run_name: str, why: str
) -> None:
    """Delete the RunPod resources named ``tuneship-<run_name>``; log, never raise.

    The one crash and cancellation cleanup, shared by the pipeline's hook and
    ``deploy_model``'s: hooks may run in another process (the runner), so nothing comes
    from memory; the name is deterministic and the credentials come from the block.

    Args:
        logger: The flow run's logger.
        target: ``serve.target``; anything but a RunPod target has nothing to delete.
        credentials_block: ``serve.runpod.credentials_block``.
        run_name: The run (deployment) name.
        why: The final state's name, for the log.
    """
    from tuneship.errors import TuneshipError
    from tuneship.runpod.specs import resource_name
    from tuneship.serving.runpod_base import delete_resources_named
    from tuneship.tasks.credentials import RUNPOD_TARGETS, load_runpod_client

    if target not in RUNPOD_TARGETS:
        return
    name = resource_name(run_name)
    try:
        deleted = delete_resources_named(load_runpod_client(credentials_block), name)
    except TuneshipError as exc:
        logger.error(
            "could not delete RunPod resources named %s: %s; delete them in the RunPod console",
            name,
            exc,
        )
        return
    logger.warning(
        "run %s: deleted RunPod resources named %s: %s",
        why,
        name,
        ", ".join(deleted) or "none were left",
    )


def cleanup_runpod_run(flow: Any, flow_run: Any, state: Any) -> None:
    """``deploy_model``'s hook (``on_crashed``, ``on_cancellation``): delete its resources.

    The name is ``tuneship-<name or flow run name>``; the block is named in the ``serve``
    parameter.
    """
    from prefect.logging.loggers import flow_run_logger

    params = dict(getattr(flow_run, "parameters", None) or {})
    serve = params.get("serve") or {}
    if isinstance(serve, ServeConfig):
        serve = serve.model_dump()
    delete_run_resources(
        flow_run_logger(flow_run, flow),
        serve.get("target", "runpod-serverless"),
        (serve.get("runpod") or {}).get("credentials_block"),
        str(params.get("name") or flow_run.name),
        state.name,
    )


def deployment_summary(info: DeploymentInfo, smoke: SmokeResult | None) -> dict[str, Any]:
    """A small dict for the flow's result and artifact (no secret)."""
    return {
        "name": info.name,
        "url": info.url,
        "served_model_name": info.served_model_name,
        "answer": smoke.answer if smoke else "",
        "latency_s": smoke.latency_s if smoke else 0.0,
    }
