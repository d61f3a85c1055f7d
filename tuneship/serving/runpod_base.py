"""RunPod deployments: the recorded details, client resolution, and cleanup by name.

Cleanup works from any process: every resource of a run is named ``tuneship-<run>``
(:func:`tuneship.runpod.specs.resource_name`), so a Prefect crash hook or
``tuneship deployments stop NAME`` finds the endpoints, templates and pods by name alone.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import Field, SecretStr

from tuneship.config import ServeConfig
from tuneship.errors import ConfigError, ServingError, TuneshipError
from tuneship.runpod.client import RunPodClient
from tuneship.runpod.errors import RunPodApiError
from tuneship.runpod.specs import RunPodPlan, check_budget, resource_name
from tuneship.serving.base import DeploymentInfo
from tuneship.serving.vllm_options import VllmOptions, build_vllm_options

log = logging.getLogger(__name__)

SERVERLESS_TARGET = "runpod-serverless"
POD_TARGET = "runpod-pod"
RUNPOD_TARGETS = (SERVERLESS_TARGET, POD_TARGET)


class RunPodDeploymentInfo(DeploymentInfo):
    """A RunPod deployment: the endpoint or pod, its price and its budget."""

    resource_name: str = Field(description="Name of every RunPod resource (tuneship-<run>).")
    endpoint_id: str | None = None
    template_id: str | None = None
    pod_id: str | None = None
    image: str = ""
    gpu_ids: list[str] = Field(default_factory=list, description="Pools or GPU type ids.")
    gpu_count: int = 1
    workers_min: int | None = None
    workers_max: int | None = None
    usd_per_second: dict[str, float | None] = Field(default_factory=dict)
    usd_per_hour: float | None = Field(None, description="Dearest hourly price (one worker/pod).")
    budget_usd_per_hour: float | None = None
    budget_usd_per_day: float | None = None
    credentials_block: str | None = Field(
        None, description="RunPodCredentials block that stops it (None: RUNPOD_API_KEY)."
    )

    def registry_details(self) -> dict[str, Any]:
        """The local details plus the RunPod ids, pools, prices and budget (no secret)."""
        details = super().registry_details()
        details.update(
            self.model_dump(
                mode="json",
                include={
                    "resource_name",
                    "endpoint_id",
                    "template_id",
                    "pod_id",
                    "image",
                    "gpu_ids",
                    "gpu_count",
                    "workers_min",
                    "workers_max",
                    "usd_per_second",
                    "usd_per_hour",
                    "budget_usd_per_hour",
                    "budget_usd_per_day",
                    "credentials_block",
                },
            )
        )
        return details


def delete_endpoint_and_template(
    client: RunPodClient,
    name: str,
    *,
    endpoint_id: str | None = None,
    template_wait_s: float = 150.0,
) -> list[str]:
    """Scale the endpoint to 0 workers, delete it, then delete its template (idempotent).

    RunPod refuses to delete a template for up to about 2 minutes after an endpoint last
    used it, so that deletion is retried for ``template_wait_s``.

    Returns:
        What was deleted, e.g. ``["endpoint ab12", "template tuneship-x"]``.

    Raises:
        ServingError: Something could not be deleted; the message says what to delete.
    """
    deleted: list[str] = []
    endpoints = [e for e in client.list_endpoints() if _same_name(e.get("name"), name)]
    if endpoint_id and not any(e.get("id") == endpoint_id for e in endpoints):
        endpoints += [e for e in client.list_endpoints() if e.get("id") == endpoint_id]
    for endpoint in endpoints:
        if endpoint.get("workersMax") or endpoint.get("workersMin"):
            client.scale_endpoint_to_zero(endpoint)
        client.delete_endpoint(str(endpoint["id"]))
        deleted.append(f"endpoint {endpoint['id']}")
    deadline = time.monotonic() + template_wait_s
    pause = 2.0
    while True:
        template = client.find_template(name)
        if template is None:
            break
        try:
            client.delete_template(name)
            deleted.append(f"template {name}")
            break
        except RunPodApiError as exc:
            if time.monotonic() >= deadline:
                raise ServingError(
                    f"template {name!r} could not be deleted ({exc}); it costs nothing, but "
                    f"delete it later with `tuneship deployments stop {name}` or in the "
                    "RunPod console (Templates)"
                ) from None
            time.sleep(pause)
            pause = min(pause * 2, 15.0)
    return deleted


def terminate_pods(client: RunPodClient, name: str, *, pod_id: str | None = None) -> list[str]:
    """Terminate the pod ``pod_id`` and every pod called ``name`` (idempotent)."""
    ids = {str(p["id"]) for p in client.list_pods() if p.get("name") == name}
    if pod_id:
        ids.add(pod_id)
    deleted = []
    for pid in sorted(ids):
        if client.get_pod(pid) is None:
            continue
        client.terminate_pod(pid)
        deleted.append(f"pod {pid}")
    return deleted


def delete_resources_named(client: RunPodClient, name: str) -> list[str]:
    """Delete every endpoint, template and pod called ``name`` (crash and cancel hooks).

    Returns:
        What was deleted.
    """
    deleted = terminate_pods(client, name)
    deleted += delete_endpoint_and_template(client, name)
    return deleted


def _same_name(shown: Any, name: str) -> bool:
    text = str(shown or "")
    return text == name or text.removesuffix(" -fb").removesuffix("-fb") == name


def hf_token_if_needed(model: str, revision: str | None, hub_token: SecretStr | None) -> str | None:
    """The Hugging Face token, only when the repo is private or gated (else None).

    The serverless worker logs its whole command line (``--hf-token`` included), so the
    token is not sent for public models.

    Args:
        model: Hub repo id.
        revision: Hub revision.
        hub_token: The run's token, resolved by the caller (the Prefect layer loads
            ``serve.runpod.hf_credentials_block``); None falls back to ``HF_TOKEN``.

    Raises:
        ConfigError: The repo needs a token and none is configured.
    """
    import os

    from tuneship.errors import ConfigError
    from tuneship.runpod.specs import model_needs_token
    from tuneship.secrets import register_secret

    token = hub_token.get_secret_value() if hub_token else None
    token = token or os.environ.get("HF_TOKEN", "").strip() or None
    register_secret(token)
    if not model_needs_token(model, revision, token):
        return None
    if not token:
        raise ConfigError(
            f"{model} is private or gated: set serve.runpod.hf_credentials_block or HF_TOKEN "
            "(a read-only token whose account accepted the model's licence)"
        )
    log.warning(
        "%s is private or gated: RunPod gets HF_TOKEN, and the worker prints it in its log "
        "(use a read-only, fine-grained token)",
        model,
    )
    return token


def runpod_vllm_options(plan: RunPodPlan, options: ServeConfig) -> VllmOptions:
    """The flag set a RunPod worker or pod serves ``plan`` with (one builder for all)."""
    return build_vllm_options(
        plan.model,
        plan.served_model_name,
        plan,
        options,
        revision=plan.revision,
        max_num_seqs=options.runpod.max_num_seqs,
    )


def require_hub_id(model: str | Path) -> str:
    """RunPod downloads the model from the Hub: a local folder cannot be served there.

    Raises:
        ConfigError: ``model`` is a local path.
    """
    text = str(model)
    if Path(text).expanduser().exists() or text.startswith(("/", "./", "../", "~")):
        raise ConfigError(
            f"{text} is a local folder; RunPod workers download models from the Hub. Publish "
            "it first (publish.target: hub) and deploy the repo id"
        )
    return text


def cleanup_quietly(what: str, cleanup: Any) -> None:
    """Run a cleanup after a failure; log its own failure instead of hiding the first one."""
    try:
        done = cleanup()
        if done:
            log.info("cleaned up after the failure of %s: %s", what, ", ".join(done))
    except TuneshipError as exc:
        log.error("cleanup after the failure of %s failed: %s", what, exc)


class DeployStart(NamedTuple):
    """The checked inputs of a RunPod deploy (see ``RunPodTargetBase._start_deploy``)."""

    model_id: str
    plan: RunPodPlan
    hf_token: str | None
    client: RunPodClient
    resource_name: str


class RunPodTargetBase:
    """What the RunPod serving targets share: the client, a precomputed plan, the revision.

    Args:
        client: RunPod client, made from the resolved credentials by the caller (the
            Prefect layer loads ``serve.runpod.credentials_block``); default: from
            ``RUNPOD_API_KEY``, made on first use.
        plan: A plan from the target's ``plan`` (computed in ``deploy`` when None).
        revision: Hub revision to serve, e.g. the pushed commit.
        hf_token: Token to send for a private or gated repo; None decides from
            ``hub_token`` whether one is needed.
        hub_token: The run's Hugging Face token (resolved by the caller); None:
            ``HF_TOKEN``.
        poll_interval_s: Longest pause between readiness checks.
    """

    def __init__(
        self,
        client: RunPodClient | None = None,
        *,
        plan: RunPodPlan | None = None,
        revision: str | None = None,
        hf_token: str | None = None,
        hub_token: SecretStr | None = None,
        poll_interval_s: float = 5.0,
    ) -> None:
        self.client = client
        self.hub_token = hub_token
        self._plan = plan
        self.revision = revision
        self.hf_token = hf_token
        self.poll_interval_s = poll_interval_s

    name: str
    record_type: type[DeploymentInfo] = RunPodDeploymentInfo

    def describe(self, deployment: DeploymentInfo) -> str:
        """``tuneship-run on 2 x NVIDIA A100 ..., up to $3.10/h``."""
        assert isinstance(deployment, RunPodDeploymentInfo)
        price = f", up to ${deployment.usd_per_hour}/h" if deployment.usd_per_hour else ""
        gpus = ", ".join(deployment.gpu_ids) or "-"
        return f"{deployment.resource_name} on {deployment.gpu_count} x {gpus}{price}"

    def plan(self, model: str | Path, options: ServeConfig, *, name: str) -> RunPodPlan:
        """Plan the deployment (each RunPod target plans its own way)."""
        raise NotImplementedError

    def _client(self, options: ServeConfig) -> RunPodClient:
        if self.client is None:
            self.client = RunPodClient.from_environment()
        return self.client

    def _new_record(
        self,
        start: DeployStart,
        options: ServeConfig,
        *,
        name: str,
        url: str,
        api_key: str,
        model_name: str | None,
        model_version: str | None,
        **fields: Any,
    ) -> RunPodDeploymentInfo:
        """The deployment record with what every RunPod target fills the same way.

        Args:
            fields: The target's own fields (ids, image, GPUs, prices, budget).
        """
        plan = start.plan
        return RunPodDeploymentInfo(
            name=name,
            target=self.name,
            url=url,
            served_model_name=plan.served_model_name,
            api_key=api_key,
            model=start.model_id,
            model_name=model_name,
            model_version=model_version,
            backend="cuda",
            tensor_parallel_size=plan.gpu_count,
            max_model_len=plan.max_model_len,
            gpu_memory_utilization=plan.gpu_memory_utilization,
            resource_name=start.resource_name,
            gpu_count=plan.gpu_count,
            credentials_block=options.runpod.credentials_block,
            **fields,
        )

    def _start_deploy(
        self, model: str | Path, options: ServeConfig, name: str, plan: RunPodPlan | None
    ) -> DeployStart:
        """What every RunPod deploy does before it creates anything.

        Raises:
            ConfigError: ``model`` is a local folder.
            PlanningError, RunPodBudgetError: Nothing fits, or over budget.
        """
        model_id = require_hub_id(model)
        plan = plan or self._plan or self.plan(model_id, options, name=name)
        check_budget(plan, options)
        token = self.hf_token
        if token is None:
            token = hf_token_if_needed(model_id, plan.revision, self.hub_token)
        return DeployStart(model_id, plan, token, self._client(options), resource_name(name))
