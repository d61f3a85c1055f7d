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
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tuneship.config import ServeConfig, default_home
from tuneship.errors import ServingError, TuneshipError
from tuneship.runpod.client import RunPodClient
from tuneship.runpod.deployment import (
    POD_TARGET,
    RunPodDeploymentInfo,
    RunPodTargetBase,
    cleanup_quietly,
    hf_token_if_needed,
    runpod_client_for,
    terminate_pods,
)
from tuneship.runpod.errors import RunPodCapacityError
from tuneship.runpod.specs import (
    POD_PORT,
    RunPodPlan,
    check_budget,
    check_pod_image,
    plan_pod,
    pod_docker_args,
    resource_name,
)
from tuneship.serving.api_keys import choose_api_key, write_api_key_file
from tuneship.serving.base import DeploymentInfo
from tuneship.serving.runpod_serverless import require_hub_id

log = logging.getLogger(__name__)


def _http_get(url: str, api_key: str | None, timeout_s: float = 10.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def http_port_ready(pod: dict[str, Any] | None, port: int = POD_PORT) -> bool:
    """Whether the pod runs and RunPod maps its HTTP ``port`` (``runtime.ports``)."""
    if not pod or pod.get("desiredStatus") != "RUNNING":
        return False
    ports = (pod.get("runtime") or {}).get("ports") or []
    return any(p.get("privatePort") == port and p.get("type") == "http" for p in ports)


class RunPodPodTarget(RunPodTargetBase):
    """Serve with vLLM in a RunPod GPU pod.

    Args:
        client: RunPod client (default: from ``serve.runpod.credentials_block`` or
            ``RUNPOD_API_KEY``).
        plan: A plan from :meth:`plan` (computed in ``deploy`` when None).
        revision: Hub revision to serve.
        hf_token: Token for a private or gated repo; None looks it up (only if needed).
        deployments_dir: Where the key file goes (default ``$TUNESHIP_HOME/deployments``).
        poll_interval_s: Longest pause between readiness checks.
    """

    name = POD_TARGET

    def __init__(
        self,
        client: RunPodClient | None = None,
        *,
        plan: RunPodPlan | None = None,
        revision: str | None = None,
        hf_token: str | None = None,
        deployments_dir: Path | None = None,
        poll_interval_s: float = 5.0,
    ) -> None:
        super().__init__(
            client, plan=plan, revision=revision, hf_token=hf_token, poll_interval_s=poll_interval_s
        )
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
    ) -> RunPodDeploymentInfo:
        """Rent the pod, wait until vLLM answers through the proxy, return the endpoint.

        Raises:
            PlanningError, ConfigError, RunPodBudgetError: Before anything is created.
            RunPodCapacityError: No planned GPU type had capacity (nothing created).
            ServingError: The pod did not become ready (it is terminated).
        """
        rp = options.runpod
        check_pod_image(rp.pod_image)
        model_id = require_hub_id(model)
        plan = self._plan or self.plan(model_id, options, name=name)
        check_budget(plan, options)
        token = self.hf_token
        if token is None:
            token = hf_token_if_needed(model_id, plan.revision, rp.hf_credentials_block)
        client = self._client(options)
        rname = resource_name(name)
        api_key = choose_api_key(options)
        key_file = self._key_file(name, api_key)
        env = {"VLLM_API_KEY": api_key, "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
        if token:
            env["HF_TOKEN"] = token
        if rp.network_volume_id:
            env["HF_HOME"] = "/workspace/huggingface"
        docker_args = pod_docker_args(plan, options)
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
            parts = urlsplit(url)
            price = plan.usd_per_hour.get(gpu_id)
            info = RunPodDeploymentInfo(
                name=name,
                target=self.name,
                url=url,
                served_model_name=plan.served_model_name,
                api_key=api_key,
                api_key_file=str(key_file),
                model=model_id,
                model_name=model_name,
                model_version=model_version,
                host=parts.hostname or "",
                port=parts.port or (443 if parts.scheme == "https" else 80),
                backend="cuda",
                tensor_parallel_size=plan.gpu_count,
                max_model_len=plan.max_model_len,
                gpu_memory_utilization=plan.gpu_memory_utilization,
                resource_name=rname,
                pod_id=pod_id,
                image=rp.pod_image,
                gpu_ids=[gpu_id],
                gpu_count=plan.gpu_count,
                usd_per_hour=price,
                budget_usd_per_hour=rp.budget_usd_per_hour,
                credentials_block=rp.credentials_block,
            )
            log.info(
                "pod %s (%s) on %d x %s; waiting for vLLM", rname, pod_id, plan.gpu_count, gpu_id
            )
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
        refused: list[str] = []
        for gpu_id in plan.gpu_ids:
            try:
                pod = client.create_pod(
                    name=rname,
                    image_name=rp.pod_image,
                    gpu_type_id=gpu_id,
                    gpu_count=plan.gpu_count,
                    cloud_type=rp.cloud_type,
                    container_disk_in_gb=plan.container_disk_gb,
                    docker_args=docker_args,
                    ports=f"{POD_PORT}/http",
                    env=env,
                    network_volume_id=rp.network_volume_id,
                )
                return pod, gpu_id
            except RunPodCapacityError as exc:
                log.warning("no %s capacity: %s", gpu_id, exc)
                refused.append(gpu_id)
        raise RunPodCapacityError(
            f"RunPod has no capacity for {plan.gpu_count} x any of {refused} "
            f"({rp.cloud_type} cloud) right now. Nothing was created. Try serve.runpod."
            "cloud_type ALL, more GPU types (serve.runpod.gpu_types), or later"
        )

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
        while True:
            if stage.startswith("the container"):
                pod = client.get_pod(str(info.pod_id))
                if pod is None or pod.get("desiredStatus") in ("EXITED", "TERMINATED"):
                    status = pod.get("desiredStatus") if pod else "gone"
                    raise ServingError(
                        f"pod {info.resource_name} ({info.pod_id}) is {status} before vLLM "
                        "answered; read its logs in the RunPod console (Pods > Logs)"
                    )
                if http_port_ready(pod):
                    stage = "vLLM to answer /health through the proxy"
            if stage.startswith("vLLM"):
                try:
                    status_code, _ = _http_get(f"{base}/health", None)
                    if status_code == 200:
                        status_code, body = _http_get(f"{base}/v1/models", info.api_key)
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

    def stop(self, deployment: DeploymentInfo, timeout_s: float = 30.0) -> None:
        """Terminate the pod (idempotent).

        Raises:
            ServingError: RunPod refused.
        """
        assert isinstance(deployment, RunPodDeploymentInfo)
        try:
            client = self.client or runpod_client_for(deployment.credentials_block)
            terminate_pods(client, deployment.resource_name, pod_id=deployment.pod_id)
        except TuneshipError as exc:
            raise ServingError(
                f"deployment {deployment.name!r}: could not terminate pod "
                f"{deployment.pod_id}: {exc}"
            ) from None
