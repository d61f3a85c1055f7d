"""RunPod deployments: the recorded details, client resolution, and cleanup by name.

Cleanup works from any process: every resource of a run is named ``tuneship-<run>``
(:func:`tuneship.runpod.specs.resource_name`), so a Prefect crash hook or
``tuneship deployments stop NAME`` finds the endpoints, templates and pods by name alone.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from pydantic import Field

from tuneship.config import ServeConfig
from tuneship.errors import ServingError, TuneshipError
from tuneship.runpod.client import RunPodClient
from tuneship.runpod.errors import RunPodApiError
from tuneship.runpod.specs import RunPodPlan
from tuneship.serving.base import DeploymentInfo

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


def runpod_client_for(credentials_block: str | None) -> RunPodClient:
    """A client from the named ``RunPodCredentials`` block, else from ``RUNPOD_API_KEY``.

    Raises:
        ConfigError: The block does not exist, or no key is set.
    """
    if credentials_block:
        from tuneship.blocks.credentials import RunPodCredentials, _load_block

        block = _load_block(RunPodCredentials, credentials_block, "serve.runpod.credentials_block")
        assert isinstance(block, RunPodCredentials)
        return block.get_client()
    return RunPodClient.from_environment()


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


def stop_runpod_deployment(name: str, registry_url: str | None = None) -> Any:
    """Stop a recorded RunPod deployment and mark it stopped; None if it is not RunPod's.

    Args:
        name: Deployment name.
        registry_url: Registry URL (None: the default registry).

    Returns:
        The updated ``DeploymentEntry``, or None when the deployment is not on RunPod.

    Raises:
        RegistryError: No deployment has that name.
        ServingError: RunPod refused a deletion.
    """
    from tuneship.errors import RegistryError
    from tuneship.registry import Registry

    with contextlib.closing(Registry(registry_url)) as registry:
        entry = registry.get_deployment(name)
        if entry is None:
            known = ", ".join(d.name for d in registry.list_deployments()) or "none"
            raise RegistryError(f"no deployment named {name!r} (known: {known})")
        if entry.target not in RUNPOD_TARGETS:
            return None
        details = entry.details or {}
        client = runpod_client_for(details.get("credentials_block"))
        resource = str(details.get("resource_name") or name)
        try:
            if entry.target == POD_TARGET:
                terminate_pods(client, resource, pod_id=details.get("pod_id"))
            else:
                delete_endpoint_and_template(
                    client, resource, endpoint_id=details.get("endpoint_id")
                )
        except TuneshipError as exc:
            raise ServingError(f"deployment {name!r}: {exc}") from None
        return registry.set_deployment_status(name, "stopped")


def hf_token_if_needed(
    model: str, revision: str | None, hf_credentials_block: str | None
) -> str | None:
    """The Hugging Face token, only when the repo is private or gated (else None).

    The serverless worker logs its whole command line (``--hf-token`` included), so the
    token is not sent for public models.

    Raises:
        ConfigError: The repo needs a token and none is configured.
    """
    import os

    from tuneship.errors import ConfigError
    from tuneship.runpod.specs import model_needs_token
    from tuneship.secrets import register_secret

    token: str | None
    if hf_credentials_block:
        from tuneship.blocks.credentials import resolve_hf_token

        secret = resolve_hf_token(hf_credentials_block, field="serve.runpod.hf_credentials_block")
        token = secret.get_secret_value() if secret else None
    else:
        token = os.environ.get("HF_TOKEN", "").strip() or None
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


def cleanup_quietly(what: str, cleanup: Any) -> None:
    """Run a cleanup after a failure; log its own failure instead of hiding the first one."""
    try:
        done = cleanup()
        if done:
            log.info("cleaned up after the failure of %s: %s", what, ", ".join(done))
    except TuneshipError as exc:
        log.error("cleanup after the failure of %s failed: %s", what, exc)


class RunPodTargetBase:
    """What the RunPod serving targets share: the client, a precomputed plan, the revision.

    Args:
        client: RunPod client (default: from ``serve.runpod.credentials_block`` or
            ``RUNPOD_API_KEY``, made on first use).
        plan: A plan from the target's ``plan`` (computed in ``deploy`` when None).
        revision: Hub revision to serve, e.g. the pushed commit.
        hf_token: Token for a private or gated repo; None looks it up (only if needed).
        poll_interval_s: Longest pause between readiness checks.
    """

    def __init__(
        self,
        client: RunPodClient | None = None,
        *,
        plan: RunPodPlan | None = None,
        revision: str | None = None,
        hf_token: str | None = None,
        poll_interval_s: float = 5.0,
    ) -> None:
        self.client = client
        self._plan = plan
        self.revision = revision
        self.hf_token = hf_token
        self.poll_interval_s = poll_interval_s

    def _client(self, options: ServeConfig) -> RunPodClient:
        if self.client is None:
            self.client = runpod_client_for(options.runpod.credentials_block)
        return self.client
