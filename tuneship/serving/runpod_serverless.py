"""The ``runpod-serverless`` target: a RunPod Serverless endpoint on the official vLLM worker.

``deploy`` plans (GPU pools, TP, context, prices), checks the budget, then creates or
updates the template and the endpoint named ``tuneship-<run>`` (a re-deploy of the same
name changes them in place), and returns once a worker answered a job. Anything that
fails after the first creation deletes what was created before the error is raised.

Readiness is a real job (``GET /v1/models`` through the worker): with ``workers_min`` 0
no worker starts until a job arrives. A job that waits with no worker for
``serve.runpod.queue_timeout_s``, or past ``serve.startup_timeout_s``, is reported with
the endpoint's health and the likely causes instead of being waited on forever.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tuneship.config import ServeConfig
from tuneship.errors import ServingError, TuneshipError
from tuneship.runpod.client import EndpointSpec, RunPodClient, endpoint_fields
from tuneship.runpod.errors import QueueStuckError
from tuneship.runpod.specs import (
    RunPodPlan,
    check_budget,
    plan_serverless,
    worker_cuda_versions,
)
from tuneship.serving.base import DeploymentInfo
from tuneship.serving.runpod_base import (
    SERVERLESS_TARGET,
    RunPodDeploymentInfo,
    RunPodTargetBase,
    cleanup_quietly,
    delete_endpoint_and_template,
    require_hub_id,
    runpod_vllm_options,
)

log = logging.getLogger(__name__)

READY_PROBE = {"route": "/v1/models", "method": "GET"}
"""worker-vllm (v2.24+) forwards ``{"route", "method", "body"}`` jobs to its local vLLM."""
_WORKER_STATES = ("idle", "initializing", "ready", "running")


def worker_env(
    plan: RunPodPlan, options: ServeConfig, *, hf_token: str | None = None
) -> dict[str, str]:
    """The serverless template's environment for ``runpod/worker-v1-vllm`` (v2.24+).

    The vLLM flags are :func:`~tuneship.serving.runpod_base.runpod_vllm_options` (the
    same builder a local server and a pod use), rendered as the worker's variables.

    Args:
        plan: The serverless plan.
        options: The ``serve`` section.
        hf_token: Only for private or gated repos: the worker logs its command line, which
            then holds the token.
    """
    env = runpod_vllm_options(plan, options).as_worker_env()
    env["VLLM_STARTUP_TIMEOUT"] = str(int(options.startup_timeout_s))
    if options.runpod.network_volume_id:
        env["BASE_PATH"] = "/runpod-volume"
    if hf_token:
        env["HF_TOKEN"] = hf_token
    return env


def describe_health(health: dict[str, Any]) -> str:
    """``workers idle 0, running 1 ...; jobs inQueue 1 ...`` from an endpoint's health."""
    workers = health.get("workers") or {}
    jobs = health.get("jobs") or {}
    w = ", ".join(f"{k} {v}" for k, v in workers.items()) or "none reported"
    j = ", ".join(f"{k} {v}" for k, v in jobs.items()) or "none reported"
    return f"workers: {w}; jobs: {j}"


def output_error(output: Any) -> str | None:
    """The worker's ``{"error": ...}`` item (worker-vllm returns errors inside output)."""
    items = output if isinstance(output, list) else [output]
    for item in items:
        if isinstance(item, dict) and item.get("error"):
            err = item["error"]
            return str(err.get("message") if isinstance(err, dict) else err)
    return None


class RunPodServerlessTarget(RunPodTargetBase):
    """Serve on a RunPod Serverless endpoint (``runpod/worker-v1-vllm``).

    Args:
        client: RunPod client, made by the caller from the resolved credentials
            (``tuneship.tasks.credentials.load_target``); default: ``RUNPOD_API_KEY``.
        plan: A plan from :meth:`plan` (computed in ``deploy`` when None).
        revision: Hub revision to serve (``MODEL_REVISION``), e.g. the pushed commit.
        hf_token: Token to send for a private or gated repo; None decides from
            ``hub_token`` whether one is needed.
        hub_token: The run's Hugging Face token (resolved by the caller); None: ``HF_TOKEN``.
        poll_interval_s: Longest pause between readiness checks.
        template_wait_s: How long teardown retries a template RunPod still holds.
    """

    name = SERVERLESS_TARGET

    def __init__(
        self, client: RunPodClient | None = None, *, template_wait_s: float = 150.0, **kwargs: Any
    ) -> None:
        super().__init__(client, **kwargs)  # the arguments RunPodTargetBase documents
        self.template_wait_s = template_wait_s

    def plan(self, model: str | Path, options: ServeConfig, *, name: str) -> RunPodPlan:
        """Plan the endpoint and check the budget; creates nothing.

        Raises:
            PlanningError: Nothing fits.
            RunPodBudgetError: Over budget.
            ConfigError: Bad image, pools or a local model folder.
        """
        worker_cuda_versions(options.runpod.worker_image)
        plan = plan_serverless(require_hub_id(model), options, name=name, revision=self.revision)
        check_budget(plan, options)
        return plan

    def deploy(
        self,
        model: str | Path,
        options: ServeConfig,
        *,
        name: str,
        model_name: str | None = None,
        model_version: str | None = None,
        plan: RunPodPlan | None = None,
        on_created: Callable[[DeploymentInfo], None] | None = None,
    ) -> RunPodDeploymentInfo:
        """Create or update the template and endpoint, and wait for a worker to answer.

        Raises:
            PlanningError, ConfigError, RunPodBudgetError: Before anything is created.
            QueueStuckError: No worker took the readiness job in time (all deleted).
            ServingError: Any other failure after creation (all deleted).
        """
        rp = options.runpod
        cuda = worker_cuda_versions(rp.worker_image)
        start = self._start_deploy(model, options, name, plan)
        _, plan, token, client, rname = start
        env = worker_env(plan, options, hf_token=token)
        endpoint_id: str | None = None
        started = time.monotonic()
        try:
            existing = client.find_template(rname)
            template = client.save_template(
                name=rname,
                image_name=rp.worker_image,
                env=env,
                container_disk_in_gb=plan.container_disk_gb,
                is_serverless=True,
                template_id=str(existing["id"]) if existing else None,
            )
            template_id = str(template["id"])
            endpoint_id = self._save_endpoint(client, rname, template_id, plan, options, cuda)
            url = client.openai_base_url(endpoint_id)
            info = self._new_record(
                start,
                options,
                name=name,
                url=url,
                api_key=client.api_key.get_secret_value(),
                model_name=model_name,
                model_version=model_version,
                endpoint_id=endpoint_id,
                template_id=template_id,
                image=rp.worker_image,
                gpu_ids=plan.gpu_ids,
                workers_min=rp.workers_min,
                workers_max=rp.workers_max,
                usd_per_second=plan.usd_per_second,
                usd_per_hour=plan.worst_usd_per_hour,
                budget_usd_per_day=rp.budget_usd_per_day,
            )
            log.info(
                "endpoint %s (%s) created on %s; waiting for a worker",
                rname,
                endpoint_id,
                ",".join(plan.gpu_ids),
            )
            if on_created is not None:
                on_created(info)
            self.wait_until_ready(client, info, options)
        except BaseException:
            # Any failure or interruption after the first call deletes what exists by now.
            cleanup_quietly(
                f"deployment {name!r}",
                lambda: delete_endpoint_and_template(
                    client, rname, endpoint_id=endpoint_id, template_wait_s=self.template_wait_s
                ),
            )
            raise
        info.ready_after_s = round(time.monotonic() - started, 2)
        return info

    def _save_endpoint(
        self,
        client: RunPodClient,
        rname: str,
        template_id: str,
        plan: RunPodPlan,
        options: ServeConfig,
        cuda: list[str],
    ) -> str:
        rp = options.runpod
        spec = EndpointSpec(
            name=rname,
            template_id=template_id,
            gpu_ids=",".join(plan.gpu_ids),
            gpu_count=plan.gpu_count,
            workers_min=rp.workers_min,
            workers_max=rp.workers_max,
            idle_timeout=rp.idle_timeout_s,
            scaler_type=rp.scaler_type,
            scaler_value=rp.scaler_value,
            flashboot=rp.flashboot,
            allowed_cuda_versions=",".join(cuda),
            network_volume_id=rp.network_volume_id,
        )
        existing = client.find_endpoint(rname)
        if existing is None:
            created = client.create_endpoint(**spec)
            return str(created["id"])
        # RunPod replaces the whole endpoint on a save: send every field.
        fields = endpoint_fields(**spec)
        client.update_endpoint(str(existing["id"]), fields)
        return str(existing["id"])

    def wait_until_ready(
        self, client: RunPodClient, info: RunPodDeploymentInfo, options: ServeConfig
    ) -> None:
        """Send a ``/v1/models`` job and wait until a worker answers it with the model.

        Raises:
            QueueStuckError: No worker for ``queue_timeout_s``, or still queued at
                ``startup_timeout_s``; the job is cancelled.
            ServingError: The job failed or the worker serves another model.
        """
        endpoint_id = str(info.endpoint_id)
        now = time.monotonic()
        deadline = now + options.startup_timeout_s
        no_worker_since: float | None = now
        job_id = client.submit_job(endpoint_id, dict(READY_PROBE))
        pause = min(1.0, self.poll_interval_s)
        while True:
            state = client.job_status(endpoint_id, job_id)
            status = str(state.get("status"))
            if status == "COMPLETED":
                self._check_models(info, state.get("output"))
                return
            if status in ("FAILED", "CANCELLED", "TIMED_OUT"):
                health = client.endpoint_health(endpoint_id)
                raise ServingError(
                    f"endpoint {info.resource_name} ({endpoint_id}): the readiness job ended "
                    f"{status}: {state.get('error') or output_error(state.get('output'))}. "
                    f"Health: {describe_health(health)}. See the worker logs in the RunPod "
                    "console (Serverless > endpoint > Workers)"
                )
            health = client.endpoint_health(endpoint_id)
            workers = health.get("workers") or {}
            active = sum(int(workers.get(k) or 0) for k in _WORKER_STATES)
            now = time.monotonic()
            if active or status == "IN_PROGRESS":
                no_worker_since = None
            elif no_worker_since is None:
                no_worker_since = now
            if (
                no_worker_since is not None
                and now - no_worker_since >= options.runpod.queue_timeout_s
            ):
                client.cancel_job(endpoint_id, job_id)
                raise QueueStuckError(self._no_worker_message(info, health, options), health)
            if now >= deadline:
                client.cancel_job(endpoint_id, job_id)
                raise QueueStuckError(self._slow_start_message(info, health, options), health)
            time.sleep(min(pause, max(0.0, deadline - now)))
            pause = min(pause * 1.5, self.poll_interval_s)

    def _check_models(self, info: RunPodDeploymentInfo, output: Any) -> None:
        error = output_error(output)
        if error:
            raise ServingError(
                f"endpoint {info.resource_name}: the worker answered with an error: {error}"
            )
        items = output if isinstance(output, list) else [output]
        served = [
            m.get("id")
            for item in items
            if isinstance(item, dict)
            for m in item.get("data", [])
            if isinstance(m, dict)
        ]
        if info.served_model_name not in served:
            raise ServingError(
                f"endpoint {info.resource_name}: the worker serves {served}, not "
                f"{info.served_model_name!r} (check OPENAI_SERVED_MODEL_NAME_OVERRIDE)"
            )

    def _no_worker_message(
        self, info: RunPodDeploymentInfo, health: dict[str, Any], options: ServeConfig
    ) -> str:
        rp = options.runpod
        throttled = int((health.get("workers") or {}).get("throttled") or 0)
        causes = [
            f"no GPU is free in pools {','.join(info.gpu_ids)} on hosts with CUDA "
            f"{','.join(worker_cuda_versions(info.image))}: add pools (serve.runpod.gpu_pools) "
            "or try later",
            f"serve.runpod.workers_max={rp.workers_max} workers are all busy with other jobs",
            "the account's spend limit or worker quota is reached (RunPod console > Billing)",
        ]
        if throttled:
            causes.insert(0, f"{throttled} worker(s) are throttled: the pools are busy")
        return (
            f"endpoint {info.resource_name} ({info.endpoint_id}): the job waited "
            f"{rp.queue_timeout_s:g} s in the queue and no worker started. Health: "
            f"{describe_health(health)}. Likely causes:\n"
            + "\n".join(f"  - {c}" for c in causes)
            + "\nThe endpoint was deleted; nothing is left running."
        )

    def _slow_start_message(
        self, info: RunPodDeploymentInfo, health: dict[str, Any], options: ServeConfig
    ) -> str:
        causes = [
            "the model is still downloading or loading: raise serve.startup_timeout_s, or "
            "cache it on a network volume (serve.runpod.network_volume_id)",
            "vLLM fails to start in the worker (out of memory, a gated model without a token, "
            "an unknown option): read the worker logs in the RunPod console",
            "the image is not a serverless worker (it must run runpod.serverless.start)",
        ]
        return (
            f"endpoint {info.resource_name} ({info.endpoint_id}): no worker answered within "
            f"serve.startup_timeout_s={options.startup_timeout_s:g} s. Health: "
            f"{describe_health(health)}. Likely causes:\n"
            + "\n".join(f"  - {c}" for c in causes)
            + "\nThe endpoint was deleted; nothing is left running."
        )

    def diagnose(self, info: DeploymentInfo, wait_s: float = 60.0) -> str:
        """Send one chat job through ``/runsync`` and describe what came back, with health.

        For a failed OpenAI-route smoke test: the platform's own job API shows whether the
        worker runs at all and what it answered. Never raises.
        """
        assert isinstance(info, RunPodDeploymentInfo)
        client = self.client or RunPodClient.from_environment()
        endpoint_id = str(info.endpoint_id)
        job = {
            "messages": [{"role": "user", "content": "Say hello."}],
            "sampling_params": {"max_tokens": 16},
            "model": info.served_model_name,
        }
        try:
            state = client.run_sync(endpoint_id, job, wait_s=wait_s)
            health = client.endpoint_health(endpoint_id)
        except TuneshipError as exc:
            return f"/runsync diagnosis failed: {exc}"
        error = state.get("error") or output_error(state.get("output"))
        detail = f"error: {error}" if error else f"output: {str(state.get('output'))[:300]}"
        return f"/runsync job {state.get('status')} ({detail}); {describe_health(health)}"

    def health(self, deployment: DeploymentInfo) -> bool:
        """Whether the endpoint has a worker that is ready or running."""
        assert isinstance(deployment, RunPodDeploymentInfo)
        if not deployment.endpoint_id:
            return False
        client = self.client or RunPodClient.from_environment()
        workers = client.endpoint_health(deployment.endpoint_id).get("workers") or {}
        return any(workers.get(k) for k in ("ready", "idle", "running"))

    def stop(self, deployment: DeploymentInfo, timeout_s: float = 30.0) -> None:
        """Scale to 0 workers, delete the endpoint and its template (idempotent).

        Raises:
            ServingError: RunPod refused a deletion (the message names what is left).
        """
        assert isinstance(deployment, RunPodDeploymentInfo)
        try:
            client = self.client or RunPodClient.from_environment()
            delete_endpoint_and_template(
                client,
                deployment.resource_name,
                endpoint_id=deployment.endpoint_id,
                template_wait_s=max(timeout_s, self.template_wait_s),
            )
        except ServingError:
            raise
        except TuneshipError as exc:
            raise ServingError(
                f"deployment {deployment.name!r}: could not delete endpoint "
                f"{deployment.endpoint_id} / template {deployment.resource_name}: {exc}"
            ) from None
