"""The ``runpod-pod`` target: vLLM's OpenAI server in a RunPod GPU pod.

The pod runs ``vllm/vllm-openai`` at a pinned tag with the same vLLM options as the
serverless worker, on port 8000 over RunPod's HTTPS proxy. An API key is always required:
it is generated per deployment (or ``serve.api_key_block``), passed as ``VLLM_API_KEY`` and
kept in a 0600 file beside the deployment's records.

``deploy`` tries the planner's GPU types in order (cheapest first, within the budget); a
type without capacity moves on to the next. It waits for the container's runtime and
port mapping (``desiredStatus`` RUNNING alone means nothing has started), then for
``/health`` and ``/v1/models`` through the proxy. Any failure terminates the pod.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tuneship.config import ServeConfig, default_home
from tuneship.errors import ServingError, TuneshipError
from tuneship.runpod.client import RunPodClient
from tuneship.runpod.gpu_choice import GpuChoice, rent_first_available
from tuneship.runpod.specs import (
    POD_PORT,
    RunPodPlan,
    check_budget,
    check_pod_image,
    plan_pod,
    pod_cuda_versions,
)
from tuneship.serving.api_keys import choose_api_key, write_api_key_file
from tuneship.serving.base import DeploymentInfo
from tuneship.serving.http import http_get, vllm_healthy
from tuneship.serving.runpod_base import (
    POD_TARGET,
    RunPodDeploymentInfo,
    RunPodTargetBase,
    cleanup_quietly,
    require_hub_id,
    runpod_vllm_options,
    terminate_pods,
)

log = logging.getLogger(__name__)


class RestartWatch:
    """Counts container restarts from a pod's ``runtime.uptimeInSeconds`` going back.

    RunPod keeps a pod whose container crashes at start-up RUNNING and restarts the
    container; only its uptime shows it (it falls back to 0 at each restart).

    Args:
        limit: Restarts after which the container counts as crash-looping.
    """

    def __init__(self, limit: int = 2) -> None:
        self.limit = limit
        self.count = 0
        self._last: float | None = None

    def crash_looping(self, pod: dict[str, Any] | None) -> bool:
        """Record one reading of the pod; True once ``limit`` restarts were seen."""
        runtime = (pod or {}).get("runtime") or {}
        uptime = runtime.get("uptimeInSeconds")
        if uptime is None:
            return False
        if self._last is not None and float(uptime) < self._last:
            self.count += 1
        self._last = float(uptime)
        return self.count >= self.limit


def http_port_ready(pod: dict[str, Any] | None, port: int = POD_PORT) -> bool:
    """Whether the pod runs and RunPod maps its HTTP ``port`` (``runtime.ports``)."""
    if not pod or pod.get("desiredStatus") != "RUNNING":
        return False
    ports = (pod.get("runtime") or {}).get("ports") or []
    return any(p.get("privatePort") == port and p.get("type") == "http" for p in ports)


class RunPodPodTarget(RunPodTargetBase):
    """Serve with vLLM in a RunPod GPU pod.

    Args:
        client: RunPod client, made by the caller from the resolved credentials
            (``tuneship.tasks.credentials.load_target``); default: ``RUNPOD_API_KEY``.
        plan: A plan from :meth:`plan` (computed in ``deploy`` when None).
        revision: Hub revision to serve.
        hf_token: Token to send for a private or gated repo; None decides from
            ``hub_token`` whether one is needed.
        hub_token: The run's Hugging Face token (resolved by the caller); None: ``HF_TOKEN``.
        deployments_dir: Where the key file goes (default ``$TUNESHIP_HOME/deployments``).
        poll_interval_s: Longest pause between readiness checks.
    """

    name = POD_TARGET

    def __init__(
        self,
        client: RunPodClient | None = None,
        *,
        deployments_dir: Path | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(client, **kwargs)  # the arguments RunPodTargetBase documents
        self.deployments_dir = deployments_dir

    def plan(
        self, model: str | Path, options: ServeConfig, *, name: str, live_prices: bool = True
    ) -> RunPodPlan:
        """Plan the pod with live RunPod prices when reachable, and check the budget.

        Raises:
            PlanningError: Nothing fits.
            RunPodBudgetError: No GPU type fits the budget.
            ConfigError: Bad image, GPU types or a local model folder.
        """
        from tuneship.planning import load_runpod_catalog

        check_pod_image(options.runpod.pod_image)
        gpus = load_runpod_catalog(self._client(options) if live_prices else None)
        plan = plan_pod(
            require_hub_id(model), options, name=name, revision=self.revision, gpus=gpus
        )
        check_budget(plan, options)
        return plan

    def _key_file(self, name: str, api_key: str) -> Path:
        folder = (self.deployments_dir or default_home() / "deployments") / name
        return write_api_key_file(folder, api_key)

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
        """Rent the pod, wait until vLLM answers through the proxy, return the endpoint.

        Raises:
            PlanningError, ConfigError, RunPodBudgetError: Before anything is created.
            RunPodCapacityError: No planned GPU type had capacity (nothing created).
            ServingError: The pod did not become ready (it is terminated).
        """
        rp = options.runpod
        check_pod_image(rp.pod_image)
        start = self._start_deploy(model, options, name, plan)
        _, plan, token, client, rname = start
        api_key = choose_api_key(options)
        key_file = self._key_file(name, api_key)
        env = {"VLLM_API_KEY": api_key, "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
        if token:
            env["HF_TOKEN"] = token
        if rp.network_volume_id:
            env["HF_HOME"] = "/workspace/huggingface"
        # The API key is no flag: it goes in VLLM_API_KEY (vLLM reads it like --api-key),
        # so it does not show in the pod's command line.
        docker_args = runpod_vllm_options(plan, options).as_pod_args(POD_PORT)
        pod_id: str | None = None
        started = time.monotonic()
        try:
            pod, gpu_id = self._rent(client, rname, plan, options, docker_args, env)
            pod_id = str(pod["id"])
            # A create retried after a lost answer can leave a twin with the same name.
            for other in client.list_pods():
                if other.get("name") == rname and str(other.get("id")) != pod_id:
                    client.terminate_pod(str(other["id"]))
            url = client.proxy_url(pod_id, POD_PORT) + "/v1"
            price = plan.usd_per_hour.get(gpu_id)
            info = self._new_record(
                start,
                options,
                name=name,
                url=url,
                api_key=api_key,
                model_name=model_name,
                model_version=model_version,
                api_key_file=str(key_file),
                pod_id=pod_id,
                image=rp.pod_image,
                gpu_ids=[gpu_id],
                usd_per_hour=price,
                budget_usd_per_hour=rp.budget_usd_per_hour,
            )
            log.info(
                "pod %s (%s) on %d x %s; waiting for vLLM", rname, pod_id, plan.gpu_count, gpu_id
            )
            if on_created is not None:
                on_created(info)
            self.wait_until_ready(client, info, options)
        except BaseException:
            cleanup_quietly(
                f"deployment {name!r}", lambda: terminate_pods(client, rname, pod_id=pod_id)
            )
            raise
        info.ready_after_s = round(time.monotonic() - started, 2)
        return info

    def _rent(
        self,
        client: RunPodClient,
        rname: str,
        plan: RunPodPlan,
        options: ServeConfig,
        docker_args: str,
        env: dict[str, str],
    ) -> tuple[dict[str, Any], str]:
        rp = options.runpod
        choices = [GpuChoice(g, rp.cloud_type, plan.usd_per_hour.get(g)) for g in plan.gpu_ids]

        def create(choice: GpuChoice) -> dict[str, Any]:
            return client.create_pod(
                name=rname,
                image_name=rp.pod_image,
                gpu_type_id=choice.gpu_type_id,
                gpu_count=plan.gpu_count,
                cloud_type=choice.cloud_type,
                container_disk_in_gb=plan.container_disk_gb,
                docker_args=docker_args,
                ports=f"{POD_PORT}/http",
                env=env,
                network_volume_id=rp.network_volume_id,
                allowed_cuda_versions=pod_cuda_versions(rp.pod_image),
            )

        pod, choice = rent_first_available(
            choices, create, what=f"{plan.gpu_count} GPU(s) for pod {rname} ({rp.cloud_type} cloud)"
        )
        return pod, choice.gpu_type_id

    def wait_until_ready(
        self, client: RunPodClient, info: RunPodDeploymentInfo, options: ServeConfig
    ) -> None:
        """Wait for the runtime and port, then ``/health`` and ``/v1/models`` via the proxy.

        Raises:
            ServingError: The pod stopped, or was not ready in ``serve.startup_timeout_s``.
        """
        deadline = time.monotonic() + options.startup_timeout_s
        base = info.url.removesuffix("/v1")
        pause = min(1.0, self.poll_interval_s)
        stage = "the container to start (runtime and port 8000)"
        restarts = RestartWatch()
        while True:
            # The pod is read on every round, also while waiting for vLLM: a container
            # that crashes after its port came up restarts, and only its uptime shows it.
            pod = client.get_pod(str(info.pod_id))
            if pod is None or pod.get("desiredStatus") in ("EXITED", "TERMINATED"):
                status = pod.get("desiredStatus") if pod else "gone"
                raise ServingError(
                    f"pod {info.resource_name} ({info.pod_id}) is {status} before vLLM "
                    "answered; read its logs in the RunPod console (Pods > Logs)"
                )
            if restarts.crash_looping(pod):
                raise ServingError(
                    f"pod {info.resource_name} ({info.pod_id}): its container keeps "
                    f"restarting ({restarts.count} restarts seen in the pod's uptime): vLLM "
                    "crashes at start-up. Usual causes: the GPU does not suit the image "
                    "(CUDA driver, AMD or MIG), too little memory for the model "
                    "(serve.max_model_len, gpu_memory_utilization) or a bad vLLM flag; "
                    "read the pod's logs in the RunPod console (Pods > Logs). The pod was "
                    "terminated."
                )
            if stage.startswith("the container") and http_port_ready(pod):
                stage = "vLLM to answer /health through the proxy"
            if stage.startswith("vLLM"):
                try:
                    status_code, _ = http_get(f"{base}/health", None)
                    if status_code == 200:
                        status_code, body = http_get(f"{base}/v1/models", info.api_key)
                        if status_code in (401, 403):
                            raise ServingError(
                                f"pod {info.resource_name}: vLLM refused the API key (HTTP "
                                f"{status_code})"
                            )
                        if status_code == 200:
                            served = [m.get("id") for m in json.loads(body).get("data", [])]
                            if info.served_model_name in served:
                                return
                            raise ServingError(
                                f"pod {info.resource_name}: vLLM serves {served}, not "
                                f"{info.served_model_name!r}"
                            )
                except (OSError, ValueError):
                    pass  # the proxy answers before vLLM listens; keep polling
            now = time.monotonic()
            if now >= deadline:
                raise ServingError(
                    f"pod {info.resource_name} ({info.pod_id}) was not ready after "
                    f"serve.startup_timeout_s={options.startup_timeout_s:g} s (still waiting "
                    f"for {stage}). Large models need longer; read the pod's logs in the "
                    "RunPod console. The pod was terminated."
                )
            time.sleep(min(pause, max(0.0, deadline - now)))
            pause = min(pause * 1.5, self.poll_interval_s)

    def health(self, deployment: DeploymentInfo) -> bool:
        """Whether vLLM's ``/health`` answers 200 through RunPod's proxy."""
        return vllm_healthy(deployment.url, 10.0)

    def stop(self, deployment: DeploymentInfo, timeout_s: float = 30.0) -> None:
        """Terminate the pod (idempotent).

        Raises:
            ServingError: RunPod refused.
        """
        assert isinstance(deployment, RunPodDeploymentInfo)
        try:
            client = self.client or RunPodClient.from_environment()
            terminate_pods(client, deployment.resource_name, pod_id=deployment.pod_id)
        except TuneshipError as exc:
            raise ServingError(
                f"deployment {deployment.name!r}: could not terminate pod "
                f"{deployment.pod_id}: {exc}"
            ) from None
