"""The one module that talks to RunPod: one HTTP session, one retry policy.

Everything tuneship asks of RunPod goes through :class:`RunPodClient`, so a change of
RunPod's API (GraphQL is to be retired in 2027) touches this file only.

* Management calls are GraphQL (``<api base>/graphql``) with literals built by
  :func:`gql_value`, which escapes every string; the shapes are those the official
  ``runpod`` SDK (1.12) sends. The SDK itself is not called: it keeps its key and URLs in
  process globals (``runpod.api_key``, ``RUNPOD_API_BASE_URL``) and embeds values without
  escaping them, so two clients (or a key rotation) in one process would race.
* Serverless calls use the endpoint REST API (``/run``, ``/runsync``, ``/status``,
  ``/cancel``, ``/health``), keeping a failed job's ``error`` (the SDK drops it).

Retries live in one place: the session's ``urllib3`` :class:`~urllib3.util.Retry`
(:func:`retry_policy`). ``GET`` calls are retried on 408/429/5xx and network errors;
``POST`` calls (GraphQL, ``/run``) may already have acted, so they are retried only when
RunPod refused them with ``Retry-After`` (429/503) or the connection failed before the
request was sent. ``Retry-After`` is honoured. RunPod's errors become
:mod:`tuneship.runpod.errors` exceptions with a message a user can act on; the API key
never appears in one (everything raised goes through :func:`tuneship.secrets.mask_secrets`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, NotRequired, TypedDict, Unpack

import requests
from pydantic import SecretStr
from requests.adapters import HTTPAdapter
from urllib3.util import Retry

from tuneship.runpod.errors import (
    RunPodApiError,
    RunPodAuthError,
    RunPodCapacityError,
    RunPodTransientError,
)
from tuneship.secrets import mask_secrets, register_secret

log = logging.getLogger(__name__)

DEFAULT_API_BASE_URL = "https://api.runpod.io"
DEFAULT_ENDPOINT_BASE_URL = "https://api.runpod.ai/v2"
DEFAULT_POD_PROXY_URL = "https://{pod_id}-{port}.proxy.runpod.net"
"""RunPod's HTTP proxy for a pod's port (the SDK's CLI prints the same form)."""
API_KEY_ENV = "RUNPOD_API_KEY"
API_BASE_URL_ENV = "RUNPOD_API_BASE_URL"
ENDPOINT_BASE_URL_ENV = "RUNPOD_ENDPOINT_BASE_URL"
POD_PROXY_URL_ENV = "TUNESHIP_RUNPOD_POD_PROXY_URL"
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
KEY_HELP = (
    "check the RunPodCredentials block (serve.runpod.credentials_block) or the "
    "RUNPOD_API_KEY variable; keys are made at https://www.runpod.io/console/user/settings"
)
CAPACITY_MARKERS = ("no longer any instances available", "no instances available")
FINAL_JOB_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"})
CREATED_AT_ENV = "TUNESHIP_CREATED_AT"
"""Env variable stamped on every ``tuneship-`` pod: its creation time (epoch seconds),
which RunPod's GraphQL does not return and the janitor needs (templates keep it in their
readme)."""
POD_FIELDS = (
    "id name desiredStatus imageName costPerHr gpuCount machineId dockerArgs env "
    "runtime { uptimeInSeconds ports { ip isIpPublic privatePort publicPort type } } "
    "machine { gpuDisplayName }"
)
ENDPOINT_FIELDS = (
    "id name templateId gpuIds gpuCount networkVolumeId locations idleTimeout scalerType "
    "scalerValue workersMin workersMax allowedCudaVersions flashBootType"
)
TEMPLATE_FIELDS = (
    "id name imageName isServerless containerDiskInGb volumeInGb dockerArgs ports readme "
    "env { key value }"
)
README_PREFIX = "Created by tuneship at "


class RunPodRetry(Retry):
    """urllib3's ``Retry``, except that a ``POST`` is retried only when RunPod refused it.

    A ``POST`` answered 429/503 with ``Retry-After`` was not acted on, so sending it again
    cannot create a second pod or job; any other failed ``POST`` may have acted.
    """

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        """Whether an answer with ``status_code`` to ``method`` is retried."""
        if method.upper() == "POST":
            return bool(
                self.total and has_retry_after and status_code in self.RETRY_AFTER_STATUS_CODES
            )
        return super().is_retry(method, status_code, has_retry_after)


def retry_policy(attempts: int = 4, backoff_s: float = 1.0) -> Retry:
    """The one retry policy for RunPod calls (mounted on the client's session).

    ``GET`` is retried on 408/429/5xx; ``POST`` (which may have acted) only when RunPod
    answered 429/503 with ``Retry-After`` (see :class:`RunPodRetry`) or the connection
    failed before the request went out. ``Retry-After`` wins over the backoff.

    Args:
        attempts: Tries in all (the first plus retries).
        backoff_s: First pause; it doubles per retry (capped at 60 s).
    """
    retries = max(0, attempts - 1)
    return RunPodRetry(
        total=retries,
        connect=retries,
        read=0,
        status=retries,
        other=0,
        allowed_methods=frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"}),
        status_forcelist=RETRY_STATUSES,
        backoff_factor=backoff_s,
        backoff_max=60.0,
        respect_retry_after_header=True,
        raise_on_status=False,
    )


class Enum(str):
    """A GraphQL enum value: written bare (``SECURE``), not as a string."""


def gql_value(value: Any) -> str:
    """Render a Python value as a GraphQL literal, escaping strings.

    JSON string escapes are valid GraphQL string escapes, so ``json.dumps`` escapes quotes,
    backslashes and newlines. :class:`Enum` values are written bare.

    Raises:
        TypeError: A value that has no GraphQL literal.
    """
    if isinstance(value, Enum):
        if not value.replace("_", "").isalnum():
            raise TypeError(f"not a GraphQL enum value: {value!r}")
        return str(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(gql_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {gql_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no GraphQL literal for {type(value).__name__}")


def env_list(env: dict[str, str]) -> list[dict[str, str]]:
    """``{"A": "1"}`` -> ``[{"key": "A", "value": "1"}]`` (RunPod's env shape)."""
    return [{"key": k, "value": str(v)} for k, v in env.items()]


def env_dict(env: Any) -> dict[str, str]:
    """RunPod's env (a list of key/value objects, or ``KEY=value`` strings) as a dict."""
    out: dict[str, str] = {}
    for item in env or []:
        if isinstance(item, dict) and "key" in item:
            out[str(item["key"])] = str(item.get("value", ""))
        elif isinstance(item, str) and "=" in item:
            key, _, value = item.partition("=")
            out[key] = value
    return out


class RunPodClient:
    """A RunPod API client configured from credentials (no process globals).

    Args:
        api_key: The RunPod API key.
        api_base_url: Management API base (GraphQL at ``<base>/graphql``).
        endpoint_base_url: Serverless API base (``<base>/<endpoint_id>/...``).
        pod_proxy_url: Pod proxy URL template with ``{pod_id}`` and ``{port}``.
        max_attempts: Tries per call for the failures :func:`retry_policy` retries.
        backoff_s: First retry pause (doubles each time; ``Retry-After`` wins).
        timeout_s: HTTP timeout of a management call.
    """

    def __init__(
        self,
        api_key: SecretStr | str,
        *,
        api_base_url: str | None = None,
        endpoint_base_url: str | None = None,
        pod_proxy_url: str | None = None,
        max_attempts: int = 4,
        backoff_s: float = 1.0,
        timeout_s: float = 30.0,
    ) -> None:
        self._key = api_key if isinstance(api_key, SecretStr) else SecretStr(api_key)
        if not self._key.get_secret_value().strip():
            raise RunPodAuthError(f"the RunPod API key is empty; {KEY_HELP}")
        register_secret(self._key)
        self.api_base_url = (api_base_url or DEFAULT_API_BASE_URL).rstrip("/")
        self.endpoint_base_url = (endpoint_base_url or DEFAULT_ENDPOINT_BASE_URL).rstrip("/")
        self.pod_proxy_url = pod_proxy_url or DEFAULT_POD_PROXY_URL
        self.max_attempts = max(1, max_attempts)
        self.timeout_s = timeout_s
        self._session = requests.Session()
        adapter = HTTPAdapter(max_retries=retry_policy(self.max_attempts, backoff_s))
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers["Authorization"] = f"Bearer {self._key.get_secret_value()}"

    def __repr__(self) -> str:
        return f"RunPodClient(api_base_url={self.api_base_url!r})"

    @property
    def api_key(self) -> SecretStr:
        """The API key (a ``SecretStr``; the OpenAI route takes it as the bearer token)."""
        return self._key

    @classmethod
    def from_environment(cls, api_key: SecretStr | str | None = None) -> RunPodClient:
        """Build a client from ``RUNPOD_API_KEY`` and the URL variables (or a given key).

        Raises:
            RunPodAuthError: No key is set.
        """
        key = api_key or os.environ.get(API_KEY_ENV, "").strip()
        if not key:
            raise RunPodAuthError(
                "no RunPod API key: set serve.runpod.credentials_block to a RunPodCredentials "
                "block (`tuneship blocks create`) or the RUNPOD_API_KEY variable"
            )
        return cls(
            key,
            api_base_url=os.environ.get(API_BASE_URL_ENV) or None,
            endpoint_base_url=os.environ.get(ENDPOINT_BASE_URL_ENV) or None,
            pod_proxy_url=os.environ.get(POD_PROXY_URL_ENV) or None,
        )

    # ------------------------------------------------------------------ plumbing
    def _mask(self, text: str) -> str:
        return mask_secrets(text, self._key)

    def proxy_url(self, pod_id: str, port: int) -> str:
        """The HTTPS proxy URL of a pod's HTTP port."""
        return self.pod_proxy_url.format(pod_id=pod_id, port=port).rstrip("/")

    def openai_base_url(self, endpoint_id: str) -> str:
        """The OpenAI-compatible base URL of a serverless endpoint."""
        return f"{self.endpoint_base_url}/{endpoint_id}/openai/v1"

    def _translate(self, what: str, message: str, status: int | None = None) -> Exception:
        """Turn RunPod's answer into an exception a user can act on (no key in it)."""
        text = self._mask(message.strip() or f"HTTP {status}").rstrip(".")
        lower = text.lower()
        if status in (401, 403) or "unauthorized" in lower or "api key" in lower:
            return RunPodAuthError(f"RunPod rejected the API key while {what} ({text}); {KEY_HELP}")
        if any(marker in lower for marker in CAPACITY_MARKERS):
            return RunPodCapacityError(
                f"RunPod has no capacity for {what}: {text}. Try other GPU types "
                "(serve.runpod.gpu_types / gpu_pools), serve.runpod.cloud_type ALL, fewer GPUs "
                "or a smaller container disk, or try again later"
            )
        return RunPodApiError(f"RunPod refused {what}: {text}")

    def _request(
        self, what: str, method: str, url: str, body: Any = None, timeout_s: float | None = None
    ) -> Any:
        """One HTTP call through the retrying session; its JSON answer, or an exception."""
        try:
            response = self._session.request(
                method, url, json=body, timeout=timeout_s or self.timeout_s
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise RunPodTransientError(
                self._mask(f"RunPod could not be reached while {what}: {exc}")
            ) from None
        if response.status_code >= 400:
            text = response.text[:500]
            if response.status_code in RETRY_STATUSES:
                history = getattr(getattr(response.raw, "retries", None), "history", ())
                raise RunPodTransientError(
                    self._mask(
                        f"RunPod kept failing while {what} after {len(history) + 1} tries: "
                        f"HTTP {response.status_code}: {text}"
                    )
                )
            raise self._translate(what, _error_message(text), response.status_code)
        try:
            return response.json()
        except ValueError:
            raise RunPodApiError(
                self._mask(f"RunPod answered {what} with something that is not JSON")
            ) from None

    def graphql(self, what: str, query: str) -> dict[str, Any]:
        """Run a GraphQL query or mutation (values already rendered by :func:`gql_value`).

        Args:
            what: What the call does, for messages ("creating template X").
            query: The GraphQL text.

        Returns:
            The ``data`` object.
        """
        data = self._request(what, "POST", f"{self.api_base_url}/graphql", {"query": query})
        errors = data.get("errors") if isinstance(data, dict) else None
        if errors:
            raise self._translate(what, str(errors[0].get("message", "")))
        result: dict[str, Any] = (data or {}).get("data") or {}
        return result

    def _endpoint_http(
        self,
        what: str,
        method: str,
        endpoint_id: str,
        path: str,
        body: dict[str, Any] | None = None,
        timeout_s: float = 30.0,
    ) -> Any:
        url = f"{self.endpoint_base_url}/{endpoint_id}/{path.lstrip('/')}"
        return self._request(what, method, url, body, timeout_s)

    def _mutation(self, what: str, field: str, fields: dict[str, Any], selection: str) -> Any:
        query = f"mutation {{ {field}(input: {gql_value(fields)}) {{ {selection} }} }}"
        return self.graphql(what, query).get(field)

    # ------------------------------------------------------------------ GPUs
    def get_gpu_types(self) -> list[dict[str, Any]]:
        """Every GPU type with its pod prices, unfiltered (AMD parts and MIG slices too).

        Filter with :func:`tuneship.runpod.gpu_choice.is_rentable_gpu` before renting.
        """
        query = (
            "query GpuTypes { gpuTypes { id displayName manufacturer memoryInGb maxGpuCount "
            "securePrice communityPrice secureSpotPrice communitySpotPrice } }"
        )
        rows = self.graphql("listing GPU types", query).get("gpuTypes") or []
        return [dict(r) for r in rows]

    def get_gpu(self, gpu_id: str, gpu_count: int = 1) -> dict[str, Any]:
        """One GPU type with prices and ``lowestPrice`` for ``gpu_count`` GPUs.

        Raises:
            RunPodApiError: RunPod has no GPU type ``gpu_id``.
        """
        query = (
            "query GpuType { gpuTypes(input: "
            + gql_value({"id": gpu_id})
            + ") { id displayName manufacturer memoryInGb maxGpuCount securePrice "
            "communityPrice secureSpotPrice communitySpotPrice lowestPrice(input: "
            + gql_value({"gpuCount": int(gpu_count)})
            + ") { minimumBidPrice uninterruptablePrice } } }"
        )
        rows = self.graphql(f"looking up GPU {gpu_id!r}", query).get("gpuTypes") or []
        if not rows:
            raise RunPodApiError(f"RunPod has no GPU type {gpu_id!r}")
        return dict(rows[0])

    def get_spot_bid(self, gpu_id: str, gpu_count: int = 1) -> float | None:
        """The minimum spot bid per GPU-hour for ``gpu_id``, or None when none is offered."""
        price = (self.get_gpu(gpu_id, gpu_count).get("lowestPrice") or {}).get("minimumBidPrice")
        return float(price) if price else None

    # ------------------------------------------------------------------ templates
    def list_templates(self) -> list[dict[str, Any]]:
        """The account's templates."""
        query = f"query Templates {{ myself {{ podTemplates {{ {TEMPLATE_FIELDS} }} }} }}"
        data = self.graphql("listing templates", query)
        return list((data.get("myself") or {}).get("podTemplates") or [])

    def find_template(self, name: str) -> dict[str, Any] | None:
        """The template called ``name``, or None."""
        return next((t for t in self.list_templates() if t.get("name") == name), None)

    def save_template(
        self,
        *,
        name: str,
        image_name: str,
        env: dict[str, str],
        container_disk_in_gb: int,
        is_serverless: bool,
        docker_args: str = "",
        ports: str = "",
        volume_in_gb: int = 0,
        template_id: str | None = None,
    ) -> dict[str, Any]:
        """Create a template, or update ``template_id`` in place (``saveTemplate``).

        Every value is escaped, so JSON values in env (``SPECULATIVE_CONFIG``) survive.
        The template's readme records its creation time (see :func:`created_at`).
        """
        fields: dict[str, Any] = {
            "name": name,
            "imageName": image_name,
            "dockerArgs": docker_args,
            "containerDiskInGb": int(container_disk_in_gb),
            "volumeInGb": int(volume_in_gb),
            "ports": ports,
            "env": env_list(env),
            "isServerless": bool(is_serverless),
            "startSsh": False,
            # A template has no creation time in the API; the janitor reads this one.
            "readme": f"{README_PREFIX}{int(time.time())}; deleted when its deployment stops.",
        }
        if template_id:
            fields = {"id": template_id, **fields}
        action = "updating" if template_id else "creating"
        saved = self._mutation(
            f"{action} template {name!r}", "saveTemplate", fields, TEMPLATE_FIELDS
        )
        return dict(saved)

    def delete_template(self, name: str) -> None:
        """Delete the template called ``name`` (it must be unused for about 2 minutes)."""
        query = f"mutation {{ deleteTemplate(templateName: {gql_value(name)}) }}"
        self.graphql(f"deleting template {name!r}", query)

    # ------------------------------------------------------------------ endpoints
    def list_endpoints(self) -> list[dict[str, Any]]:
        """The account's serverless endpoints."""
        query = f"query Endpoints {{ myself {{ endpoints {{ {ENDPOINT_FIELDS} }} }} }}"
        data = self.graphql("listing endpoints", query)
        return list((data.get("myself") or {}).get("endpoints") or [])

    def find_endpoint(self, name: str) -> dict[str, Any] | None:
        """The endpoint called ``name``, or None.

        RunPod may show a suffix such as ``-fb`` (FlashBoot) after the name.
        """
        for endpoint in self.list_endpoints():
            shown = str(endpoint.get("name") or "")
            if shown == name or shown.removesuffix(" -fb").removesuffix("-fb") == name:
                return endpoint
        return None

    def create_endpoint(self, **spec: Unpack[EndpointSpec]) -> dict[str, Any]:
        """Create a serverless endpoint (``saveEndpoint`` without an id).

        Args:
            **spec: The endpoint's settings (see ``EndpointSpec``); ``gpu_ids`` are
                comma-separated GPU pool ids (``AMPERE_24,ADA_24``), never GPU type names.
        """
        fields = endpoint_fields(**spec)
        name = spec["name"]
        saved = self._mutation(
            f"creating endpoint {name!r}", "saveEndpoint", fields, ENDPOINT_FIELDS
        )
        return dict(saved)

    def update_endpoint(self, endpoint_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Change an endpoint (``saveEndpoint`` with its id).

        RunPod replaces the whole endpoint on a save: fields left out go back to their
        defaults. So the current endpoint is read first and ``fields`` are laid over it.

        Args:
            endpoint_id: The endpoint.
            fields: ``saveEndpoint`` input fields to change.

        Raises:
            RunPodApiError: No such endpoint.
        """
        current = next((e for e in self.list_endpoints() if e.get("id") == endpoint_id), None)
        if current is None:
            raise RunPodApiError(f"RunPod has no endpoint {endpoint_id!r} to update")
        values = {k: current.get(k) for k in ENDPOINT_FIELDS.split() if k in current}
        values.update(fields)
        values["id"] = endpoint_id
        if values.get("flashBootType"):
            values["flashBootType"] = Enum(str(values["flashBootType"]))
        values = {k: v for k, v in values.items() if v is not None}
        saved = self._mutation(
            f"updating endpoint {endpoint_id!r}", "saveEndpoint", values, ENDPOINT_FIELDS
        )
        return dict(saved)

    def scale_endpoint_to_zero(self, endpoint: dict[str, Any]) -> None:
        """Set an endpoint's min and max workers to 0 (needed before deleting it)."""
        self.update_endpoint(str(endpoint["id"]), {"workersMin": 0, "workersMax": 0})

    def delete_endpoint(self, endpoint_id: str) -> None:
        """Delete an endpoint (its workers must be scaled to 0 first)."""
        query = f"mutation {{ deleteEndpoint(id: {gql_value(endpoint_id)}) }}"
        self.graphql(f"deleting endpoint {endpoint_id!r}", query)

    def endpoint_health(self, endpoint_id: str) -> dict[str, Any]:
        """Workers and queue of an endpoint (``GET /health``)."""
        result: dict[str, Any] = self._endpoint_http(
            f"reading health of endpoint {endpoint_id!r}", "GET", endpoint_id, "health", None, 10
        )
        return result

    def submit_job(self, endpoint_id: str, job_input: dict[str, Any]) -> str:
        """Queue a job (``POST /run``) and return its id."""
        data = self._endpoint_http(
            f"queueing a job on endpoint {endpoint_id!r}",
            "POST",
            endpoint_id,
            "run",
            {"input": job_input},
        )
        return str(data["id"])

    def job_status(self, endpoint_id: str, job_id: str) -> dict[str, Any]:
        """A job's status, output and error (``GET /status/<job>``)."""
        result: dict[str, Any] = self._endpoint_http(
            f"reading job {job_id!r}", "GET", endpoint_id, f"status/{job_id}"
        )
        return result

    def cancel_job(self, endpoint_id: str, job_id: str) -> None:
        """Cancel a job (``POST /cancel/<job>``); errors are logged, not raised."""
        try:
            self._endpoint_http(
                f"cancelling job {job_id!r}", "POST", endpoint_id, f"cancel/{job_id}"
            )
        except (RunPodApiError, RunPodTransientError) as exc:
            log.warning("could not cancel job %s: %s", job_id, exc)

    def run_sync(
        self, endpoint_id: str, job_input: dict[str, Any], wait_s: float = 60.0
    ) -> dict[str, Any]:
        """Run a job with ``/runsync`` and poll ``/status`` until it ends or ``wait_s`` passes.

        Unlike the SDK's ``run_sync``, the whole answer comes back, with a FAILED job's
        ``error``; a job still queued at the end is cancelled and returned as it stood.
        """
        wait_ms = int(min(max(wait_s, 1.0), 300.0) * 1000)
        data: dict[str, Any] = self._endpoint_http(
            f"running a job on endpoint {endpoint_id!r}",
            "POST",
            endpoint_id,
            f"runsync?wait={wait_ms}",
            {"input": job_input},
            timeout_s=wait_s + 30.0,
        )
        deadline = time.monotonic() + wait_s
        while data.get("status") not in FINAL_JOB_STATES and time.monotonic() < deadline:
            time.sleep(1.0)
            data = self.job_status(endpoint_id, str(data["id"]))
        if data.get("status") not in FINAL_JOB_STATES and data.get("id"):
            self.cancel_job(endpoint_id, str(data["id"]))
        return data

    # ------------------------------------------------------------------ pods
    def create_pod(
        self, *, network_volume_id: str | None = None, **spec: Unpack[PodSpec]
    ) -> dict[str, Any]:
        """Rent an on-demand GPU pod (``podFindAndDeployOnDemand``).

        Args:
            allowed_cuda_versions: Host CUDA versions the image runs on (e.g. ``["13.0"]``);
                None lets RunPod pick any host.

        Raises:
            RunPodCapacityError: No instance of ``gpu_type_id`` is free (nothing created).
        """
        fields = _pod_fields(spec)
        fields["startSsh"] = False
        fields["supportPublicIp"] = True
        if network_volume_id:
            fields["networkVolumeId"] = network_volume_id
        pod = self._mutation(
            f"renting a {spec['gpu_count']} x {spec['gpu_type_id']} pod {spec['name']!r}",
            "podFindAndDeployOnDemand",
            fields,
            "id imageName env machineId machine { podHostId }",
        )
        return dict(pod)

    def create_spot_pod(self, *, bid_per_gpu: float, **spec: Unpack[PodSpec]) -> dict[str, Any]:
        """Rent an interruptible (spot) pod (``podRentInterruptable``).

        Spot pods are stopped without notice when outbid; use them only for work that
        can restart.
        """
        fields = _pod_fields(spec)
        fields = {"bidPerGpu": float(bid_per_gpu), **fields}
        pod = self._mutation(
            f"renting a spot {spec['gpu_count']} x {spec['gpu_type_id']} pod {spec['name']!r}",
            "podRentInterruptable",
            fields,
            "id imageName env machineId machine { podHostId }",
        )
        return dict(pod)

    def get_pod(self, pod_id: str) -> dict[str, Any] | None:
        """A pod with its runtime (None once it is gone)."""
        query = f"query Pod {{ pod(input: {gql_value({'podId': pod_id})}) {{ {POD_FIELDS} }} }}"
        pod = self.graphql(f"reading pod {pod_id!r}", query).get("pod")
        return dict(pod) if pod else None

    def list_pods(self) -> list[dict[str, Any]]:
        """The account's pods."""
        query = f"query Pods {{ myself {{ pods {{ {POD_FIELDS} }} }} }}"
        data = self.graphql("listing pods", query)
        return list((data.get("myself") or {}).get("pods") or [])

    def terminate_pod(self, pod_id: str) -> None:
        """Terminate a pod (``podTerminate``); its disk is deleted with it."""
        query = f"mutation {{ podTerminate(input: {gql_value({'podId': pod_id})}) }}"
        self.graphql(f"terminating pod {pod_id!r}", query)


def stamp_created(name: str, env: dict[str, str]) -> dict[str, str]:
    """``env`` plus ``TUNESHIP_CREATED_AT`` (now) for a ``tuneship-`` resource.

    RunPod's GraphQL does not say when a pod or template was created; the janitor reads
    this stamp to find old ones.
    """
    if not name.startswith("tuneship-") or CREATED_AT_ENV in env:
        return dict(env)
    return {**env, CREATED_AT_ENV: str(int(time.time()))}


def created_at(resource: dict[str, Any]) -> float | None:
    """When tuneship created a pod or template (epoch seconds), or None if unknown.

    Read from the pod's ``TUNESHIP_CREATED_AT`` env stamp or the template's readme.
    """
    stamp = env_dict(resource.get("env")).get(CREATED_AT_ENV)
    readme = str(resource.get("readme") or "")
    if stamp is None and readme.startswith(README_PREFIX):
        stamp = readme.removeprefix(README_PREFIX).split(";", 1)[0]
    try:
        return float(stamp) if stamp is not None else None
    except ValueError:
        return None


class EndpointSpec(TypedDict):
    """A serverless endpoint's settings, as ``create_endpoint`` and ``endpoint_fields`` take them.

    ``gpu_ids`` are comma-separated GPU pool ids (``AMPERE_24,ADA_24``), never GPU type names.
    """

    name: str
    template_id: str
    gpu_ids: str
    gpu_count: int
    workers_min: int
    workers_max: int
    idle_timeout: int
    scaler_type: str
    scaler_value: int
    flashboot: bool
    allowed_cuda_versions: str | None
    network_volume_id: str | None


def endpoint_fields(**spec: Unpack[EndpointSpec]) -> dict[str, Any]:
    """The full ``saveEndpoint`` input (RunPod replaces the whole endpoint on every save)."""
    fields: dict[str, Any] = {
        "name": spec["name"],
        "templateId": spec["template_id"],
        "gpuIds": spec["gpu_ids"],
        "gpuCount": int(spec["gpu_count"]),
        "workersMin": int(spec["workers_min"]),
        "workersMax": int(spec["workers_max"]),
        "idleTimeout": int(spec["idle_timeout"]),
        "scalerType": spec["scaler_type"],
        "scalerValue": int(spec["scaler_value"]),
        "networkVolumeId": spec["network_volume_id"] or "",
        "locations": "",
        "flashBootType": Enum("FLASHBOOT" if spec["flashboot"] else "OFF"),
    }
    if spec["allowed_cuda_versions"]:
        fields["allowedCudaVersions"] = spec["allowed_cuda_versions"]
    return fields


class PodSpec(TypedDict):
    """A pod's settings, as ``create_pod`` and ``create_spot_pod`` take them.

    ``allowed_cuda_versions`` are the host CUDA versions the image runs on (e.g.
    ``["13.0"]``); left out or None lets RunPod pick any host.
    """

    name: str
    image_name: str
    gpu_type_id: str
    gpu_count: int
    cloud_type: str
    container_disk_in_gb: int
    docker_args: str
    ports: str
    env: dict[str, str]
    volume_in_gb: NotRequired[int]
    volume_mount_path: NotRequired[str]
    allowed_cuda_versions: NotRequired[list[str] | None]


def _pod_fields(spec: PodSpec) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "name": spec["name"],
        "imageName": spec["image_name"],
        "gpuTypeId": spec["gpu_type_id"],
        "gpuCount": int(spec["gpu_count"]),
        "cloudType": Enum(spec["cloud_type"]),
        "containerDiskInGb": int(spec["container_disk_in_gb"]),
        "volumeInGb": int(spec.get("volume_in_gb", 0)),
        "minVcpuCount": 1,
        "minMemoryInGb": 1,
        "dockerArgs": spec["docker_args"],
        "ports": spec["ports"],
        "volumeMountPath": spec.get("volume_mount_path", "/workspace"),
        "env": env_list(stamp_created(spec["name"], spec["env"])),
    }
    cuda = spec.get("allowed_cuda_versions")
    if cuda:
        fields["allowedCudaVersions"] = list(cuda)
    return fields


def _error_message(text: str) -> str:
    """RunPod's error text from an error body (GraphQL ``errors`` or ``{"error": ...}``)."""
    try:
        data = json.loads(text)
    except ValueError:
        return text
    if isinstance(data, dict):
        if data.get("errors"):
            return str(data["errors"][0].get("message", text))
        if data.get("error"):
            return str(data["error"])
    return text
