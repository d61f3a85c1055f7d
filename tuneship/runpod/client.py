"""The one module that talks to RunPod: the official ``runpod`` SDK plus what it lacks.

Everything tuneship asks of RunPod goes through :class:`RunPodClient`, so a change of
RunPod's API (GraphQL is to be retired in 2027) touches this file only.

* The SDK (runpod 1.12) is used where it does the job: GPU lookups, ``create_pod``,
  ``get_pod(s)``, ``terminate_pod``, ``create_endpoint``, ``get_endpoints`` and
  ``Endpoint.health``. The SDK keeps its configuration in globals (``runpod.api_key``,
  ``runpod.endpoint_url_base``, the ``RUNPOD_API_BASE_URL`` variable read on every call),
  so each SDK call runs under a lock with this client's settings and restores them after.
  The SDK embeds values in its GraphQL text without escaping them (a ``"`` breaks the
  query), so every string handed to it is escaped here first.
* Direct calls (GraphQL with escaped literals, and the endpoint REST API) cover what the
  SDK lacks: listing, updating and deleting templates, updating and deleting endpoints,
  spot pods and bid prices, ``/runsync``/``/run``/``/status``/``/cancel`` with the job's
  error kept (the SDK drops it).

Rate limits (429), server errors (5xx) and network errors are retried with backoff;
RunPod's errors become :mod:`tuneship.runpod.errors` exceptions with a message a user can
act on. The API key never appears in a message: everything raised is passed through
:func:`tuneship.secrets.mask_secrets` with the key.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import requests
from pydantic import SecretStr

from tuneship.runpod.errors import (
    RunPodApiError,
    RunPodAuthError,
    RunPodCapacityError,
    RunPodTransientError,
)
from tuneship.secrets import mask_secrets, register_secret

T = TypeVar("T")
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

# The SDK's settings are process globals; one SDK call at a time sees this client's.
_SDK_LOCK = threading.RLock()


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


def sdk_escape(value: str) -> str:
    """Escape a string the SDK will put between double quotes unescaped."""
    return json.dumps(value)[1:-1]


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
    """A RunPod API client configured from credentials (never from SDK globals).

    Args:
        api_key: The RunPod API key.
        api_base_url: Management API base (GraphQL at ``<base>/graphql``).
        endpoint_base_url: Serverless API base (``<base>/<endpoint_id>/...``).
        pod_proxy_url: Pod proxy URL template with ``{pod_id}`` and ``{port}``.
        max_attempts: Tries per call for 429/5xx/network errors.
        backoff_s: First retry pause (doubles each time; ``Retry-After`` wins when longer).
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
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self._session = requests.Session()

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

    @contextlib.contextmanager
    def _sdk(self) -> Iterator[Any]:
        """Run an SDK call with this client's key and URLs in the SDK's globals."""
        import runpod

        with _SDK_LOCK:
            saved = (runpod.api_key, os.environ.get(API_BASE_URL_ENV), runpod.endpoint_url_base)
            runpod.api_key = self._key.get_secret_value()
            os.environ[API_BASE_URL_ENV] = self.api_base_url
            runpod.endpoint_url_base = self.endpoint_base_url
            try:
                yield runpod
            finally:
                runpod.api_key = saved[0]
                if saved[1] is None:
                    os.environ.pop(API_BASE_URL_ENV, None)
                else:
                    os.environ[API_BASE_URL_ENV] = saved[1]
                runpod.endpoint_url_base = saved[2]

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

    def _pause(self, attempt: int, retry_after: str | None = None) -> None:
        delay = self.backoff_s * (2**attempt)
        if retry_after:
            with contextlib.suppress(ValueError):
                delay = max(delay, min(float(retry_after), 60.0))
        time.sleep(delay)

    def _retrying(self, what: str, call: Callable[[], T]) -> T:
        """Run ``call``; retry transient failures, translate the rest."""
        from runpod import error as sdk_error

        last = ""
        for attempt in range(self.max_attempts):
            retry_after: str | None = None
            try:
                return call()
            except sdk_error.AuthenticationError as exc:
                raise self._translate(what, str(exc), 401) from None
            except sdk_error.QueryError as exc:
                message = str(exc)
                if "too many requests" in message.lower() or "rate limit" in message.lower():
                    last = message
                else:
                    raise self._translate(what, message) from None
            except _HttpStatusError as exc:
                if exc.status not in RETRY_STATUSES:
                    raise self._translate(what, exc.message, exc.status) from None
                last, retry_after = f"HTTP {exc.status}: {exc.message}", exc.retry_after
            except requests.HTTPError as exc:
                status = exc.response.status_code if exc.response is not None else None
                body = exc.response.text[:500] if exc.response is not None else str(exc)
                if status not in RETRY_STATUSES:
                    raise self._translate(what, body, status) from None
                last = f"HTTP {status}: {body}"
            except RuntimeError as exc:  # the SDK's endpoint client: 401 or no key
                text = str(exc)
                unauthorized = "key" in text.lower() or "unauthorized" in text.lower()
                raise self._translate(what, text, 401 if unauthorized else None) from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                last = f"network error: {exc}"
            except (ValueError, KeyError, TypeError) as exc:
                # A 429/5xx answer that is not GraphQL makes the SDK fail to parse or index
                # it; the SDK hides the status, so treat it as a server hiccup and retry.
                if isinstance(exc, ValueError) and "gpu" in str(exc).lower():
                    raise RunPodApiError(self._mask(f"RunPod: {exc} ({what})")) from None
                last = f"unexpected answer ({type(exc).__name__}: {exc})"
            if attempt + 1 < self.max_attempts:
                log.warning("RunPod %s failed (%s); retrying", what, self._mask(last)[:300])
                self._pause(attempt, retry_after)
        raise RunPodTransientError(
            self._mask(f"RunPod kept failing while {what} after {self.max_attempts} tries: {last}")
        )

    def _post_graphql(self, query: str) -> dict[str, Any]:
        response = self._session.post(
            f"{self.api_base_url}/graphql",
            json={"query": query},
            headers={"Authorization": f"Bearer {self._key.get_secret_value()}"},
            timeout=self.timeout_s,
        )
        if response.status_code != 200:
            raise _HttpStatusError(
                response.status_code, response.text[:500], response.headers.get("Retry-After")
            )
        try:
            data = response.json()
        except ValueError:
            raise _HttpStatusError(502, "answer is not JSON", None) from None
        if data.get("errors"):
            from runpod import error as sdk_error

            raise sdk_error.QueryError(str(data["errors"][0].get("message", "")), query)
        result: dict[str, Any] = data.get("data") or {}
        return result

    def graphql(self, what: str, query: str) -> dict[str, Any]:
        """Run a GraphQL query or mutation directly (values already escaped).

        Args:
            what: What the call does, for messages ("creating template X").
            query: The GraphQL text; build literals with :func:`gql_value`.

        Returns:
            The ``data`` object.
        """
        return self._retrying(what, lambda: self._post_graphql(query))

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

        def call() -> Any:
            response = self._session.request(
                method,
                url,
                json=body,
                headers={"Authorization": f"Bearer {self._key.get_secret_value()}"},
                timeout=timeout_s,
            )
            if response.status_code >= 400:
                raise _HttpStatusError(
                    response.status_code, response.text[:500], response.headers.get("Retry-After")
                )
            return response.json()

        return self._retrying(what, call)

    # ------------------------------------------------------------------ GPUs
    def get_gpu_types(self) -> list[dict[str, Any]]:
        """Every GPU type with its pod prices (the planner's live catalog source)."""
        query = (
            "query GpuTypes { gpuTypes { id displayName memoryInGb maxGpuCount "
            "securePrice communityPrice secureSpotPrice communitySpotPrice } }"
        )
        rows = self.graphql("listing GPU types", query).get("gpuTypes") or []
        return [dict(r) for r in rows]

    def get_gpu(self, gpu_id: str, gpu_count: int = 1) -> dict[str, Any]:
        """One GPU type with prices and ``lowestPrice`` (SDK ``get_gpu``)."""

        def call() -> dict[str, Any]:
            with self._sdk() as sdk:
                result: dict[str, Any] = sdk.get_gpu(sdk_escape(gpu_id), gpu_count)
                return result

        return self._retrying(f"looking up GPU {gpu_id!r}", call)

    def get_spot_bid(self, gpu_id: str, gpu_count: int = 1) -> float | None:
        """The minimum spot bid per GPU-hour for ``gpu_id``, or None when none is offered."""
        query = (
            "query SpotPrice { gpuTypes(input: "
            + gql_value({"id": gpu_id})
            + ") { id lowestPrice(input: "
            + gql_value({"gpuCount": gpu_count})
            + ") { minimumBidPrice uninterruptablePrice } } }"
        )
        rows = self.graphql(f"reading spot prices of {gpu_id!r}", query).get("gpuTypes") or []
        for row in rows:
            price = (row.get("lowestPrice") or {}).get("minimumBidPrice")
            if price:
                return float(price)
        return None

    # ------------------------------------------------------------------ templates
    def list_templates(self) -> list[dict[str, Any]]:
        """The account's templates (the SDK has no call for this)."""
        query = (
            "query Templates { myself { podTemplates { id name imageName isServerless "
            "containerDiskInGb volumeInGb dockerArgs ports env { key value } } } }"
        )
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
        """
        fields: dict[str, Any] = {
            "name": name,
            "imageName": image_name,
            "dockerArgs": docker_args,
            "containerDiskInGb": container_disk_in_gb,
            "volumeInGb": volume_in_gb,
            "ports": ports,
            "env": env_list(env),
            "isServerless": is_serverless,
            "startSsh": False,
            "readme": "Created by tuneship; deleted when its deployment stops.",
        }
        if template_id:
            fields = {"id": template_id, **fields}
        query = (
            "mutation { saveTemplate(input: "
            + gql_value(fields)
            + ") { id name imageName isServerless env { key value } } }"
        )
        action = "updating" if template_id else "creating"
        data = self.graphql(f"{action} template {name!r}", query)
        return dict(data["saveTemplate"])

    def delete_template(self, name: str) -> None:
        """Delete the template called ``name`` (it must be unused)."""
        query = f"mutation {{ deleteTemplate(templateName: {gql_value(name)}) }}"
        self.graphql(f"deleting template {name!r}", query)

    # ------------------------------------------------------------------ endpoints
    def list_endpoints(self) -> list[dict[str, Any]]:
        """The account's serverless endpoints (SDK ``get_endpoints``)."""

        def call() -> list[dict[str, Any]]:
            with self._sdk() as sdk:
                return list(sdk.get_endpoints() or [])

        return self._retrying("listing endpoints", call)

    def find_endpoint(self, name: str) -> dict[str, Any] | None:
        """The endpoint called ``name``, or None.

        RunPod may show a suffix such as ``-fb`` (FlashBoot) after the name.
        """
        for endpoint in self.list_endpoints():
            shown = str(endpoint.get("name") or "")
            if shown == name or shown.removesuffix(" -fb").removesuffix("-fb") == name:
                return endpoint
        return None

    def create_endpoint(
        self,
        *,
        name: str,
        template_id: str,
        gpu_ids: str,
        gpu_count: int,
        workers_min: int,
        workers_max: int,
        idle_timeout: int,
        scaler_type: str,
        scaler_value: int,
        flashboot: bool,
        allowed_cuda_versions: str | None,
        network_volume_id: str | None,
    ) -> dict[str, Any]:
        """Create a serverless endpoint (SDK ``create_endpoint``, values escaped)."""

        def call() -> dict[str, Any]:
            with self._sdk() as sdk:
                result: dict[str, Any] = sdk.create_endpoint(
                    name=sdk_escape(name),
                    template_id=sdk_escape(template_id),
                    gpu_ids=sdk_escape(gpu_ids),
                    network_volume_id=sdk_escape(network_volume_id) if network_volume_id else None,
                    idle_timeout=int(idle_timeout),
                    scaler_type=sdk_escape(scaler_type),
                    scaler_value=int(scaler_value),
                    workers_min=int(workers_min),
                    workers_max=int(workers_max),
                    flashboot=bool(flashboot),
                    allowed_cuda_versions=(
                        sdk_escape(allowed_cuda_versions) if allowed_cuda_versions else None
                    ),
                    gpu_count=int(gpu_count),
                )
                return result

        return self._retrying(f"creating endpoint {name!r}", call)

    def update_endpoint(self, endpoint_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Change an endpoint in place (``saveEndpoint`` with its id; the SDK cannot).

        Args:
            endpoint_id: The endpoint.
            fields: ``saveEndpoint`` input fields; RunPod requires ``name``, ``templateId``
                and ``gpuIds`` on every save.
        """
        values = {"id": endpoint_id, **fields}
        if values.get("flashBootType"):
            values["flashBootType"] = Enum(str(values["flashBootType"]))
        query = (
            "mutation { saveEndpoint(input: "
            + gql_value(values)
            + ") { id name templateId gpuIds gpuCount workersMin workersMax idleTimeout "
            "scalerType scalerValue allowedCudaVersions networkVolumeId flashBootType } }"
        )
        data = self.graphql(f"updating endpoint {endpoint_id!r}", query)
        return dict(data["saveEndpoint"])

    def scale_endpoint_to_zero(self, endpoint: dict[str, Any]) -> None:
        """Set an endpoint's min and max workers to 0 (needed before deleting it)."""
        self.update_endpoint(
            str(endpoint["id"]),
            {
                "name": endpoint.get("name"),
                "templateId": endpoint.get("templateId"),
                "gpuIds": endpoint.get("gpuIds"),
                "workersMin": 0,
                "workersMax": 0,
            },
        )

    def delete_endpoint(self, endpoint_id: str) -> None:
        """Delete an endpoint (its workers must be scaled to 0 first)."""
        query = f"mutation {{ deleteEndpoint(id: {gql_value(endpoint_id)}) }}"
        self.graphql(f"deleting endpoint {endpoint_id!r}", query)

    def endpoint_health(self, endpoint_id: str) -> dict[str, Any]:
        """Workers and queue of an endpoint (SDK ``Endpoint.health``)."""

        def call() -> dict[str, Any]:
            with self._sdk() as sdk:
                endpoint = sdk.Endpoint(endpoint_id)
            result: dict[str, Any] = endpoint.health(timeout=10)
            return result

        return self._retrying(f"reading health of endpoint {endpoint_id!r}", call)

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
        self,
        *,
        name: str,
        image_name: str,
        gpu_type_id: str,
        gpu_count: int,
        cloud_type: str,
        container_disk_in_gb: int,
        docker_args: str,
        ports: str,
        env: dict[str, str],
        volume_in_gb: int = 0,
        network_volume_id: str | None = None,
        volume_mount_path: str = "/workspace",
    ) -> dict[str, Any]:
        """Rent an on-demand GPU pod (SDK ``create_pod``, every string escaped)."""

        def call() -> dict[str, Any]:
            with self._sdk() as sdk:
                result: dict[str, Any] = sdk.create_pod(
                    name=sdk_escape(name),
                    image_name=sdk_escape(image_name),
                    gpu_type_id=sdk_escape(gpu_type_id),
                    cloud_type=cloud_type,
                    gpu_count=int(gpu_count),
                    container_disk_in_gb=int(container_disk_in_gb),
                    volume_in_gb=int(volume_in_gb),
                    docker_args=sdk_escape(docker_args),
                    ports=sdk_escape(ports),
                    env={sdk_escape(k): sdk_escape(str(v)) for k, v in env.items()},
                    network_volume_id=sdk_escape(network_volume_id) if network_volume_id else None,
                    volume_mount_path=sdk_escape(volume_mount_path),
                    start_ssh=False,
                    support_public_ip=True,
                )
                return result

        return self._retrying(f"renting a {gpu_count} x {gpu_type_id} pod {name!r}", call)

    def create_spot_pod(
        self,
        *,
        name: str,
        image_name: str,
        gpu_type_id: str,
        gpu_count: int,
        bid_per_gpu: float,
        cloud_type: str,
        container_disk_in_gb: int,
        docker_args: str,
        ports: str,
        env: dict[str, str],
        volume_in_gb: int = 0,
        volume_mount_path: str = "/workspace",
    ) -> dict[str, Any]:
        """Rent an interruptible (spot) pod (``podRentInterruptable``; not in the SDK).

        Spot pods are stopped without notice when outbid; use them only for work that
        can restart.
        """
        fields = {
            "bidPerGpu": float(bid_per_gpu),
            "cloudType": Enum(cloud_type),
            "gpuCount": int(gpu_count),
            "volumeInGb": int(volume_in_gb),
            "containerDiskInGb": int(container_disk_in_gb),
            "minVcpuCount": 1,
            "minMemoryInGb": 1,
            "gpuTypeId": gpu_type_id,
            "name": name,
            "imageName": image_name,
            "dockerArgs": docker_args,
            "ports": ports,
            "volumeMountPath": volume_mount_path,
            "env": env_list(env),
        }
        query = (
            "mutation { podRentInterruptable(input: "
            + gql_value(fields)
            + ") { id imageName env machineId machine { podHostId } } }"
        )
        data = self.graphql(f"renting a spot {gpu_count} x {gpu_type_id} pod {name!r}", query)
        return dict(data["podRentInterruptable"])

    def get_pod(self, pod_id: str) -> dict[str, Any] | None:
        """A pod with its runtime (None once it is gone)."""

        def call() -> dict[str, Any] | None:
            with self._sdk() as sdk:
                pod = sdk.get_pod(sdk_escape(pod_id))
                return dict(pod) if pod else None

        return self._retrying(f"reading pod {pod_id!r}", call)

    def list_pods(self) -> list[dict[str, Any]]:
        """The account's pods (SDK ``get_pods``)."""

        def call() -> list[dict[str, Any]]:
            with self._sdk() as sdk:
                return list(sdk.get_pods() or [])

        return self._retrying("listing pods", call)

    def terminate_pod(self, pod_id: str) -> None:
        """Terminate a pod (SDK ``terminate_pod``); its disk is deleted with it."""

        def call() -> None:
            with self._sdk() as sdk:
                sdk.terminate_pod(sdk_escape(pod_id))

        self._retrying(f"terminating pod {pod_id!r}", call)


class _HttpStatusError(Exception):
    """An HTTP error status from a direct call (internal: translated by ``_retrying``)."""

    def __init__(self, status: int, message: str, retry_after: str | None) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message
        self.retry_after = retry_after
