"""The ``docker`` target: vLLM's OpenAI server in a container on a Docker engine.

The container runs ``vllm/vllm-openai`` at the pinned tag the RunPod pod target uses
(``serve.docker.image`` overrides it: a CPU build of vLLM, a registry mirror) through the
Docker SDK, never a shell:

* GPUs are the planner's NVML choice, requested by index through a device request. The
  NVIDIA runtime numbers NVML's indices like ``nvidia-smi`` (PCI bus order) and shows the
  container only those GPUs, renumbered from 0, so ``CUDA_VISIBLE_DEVICES`` is left unset
  inside (host indices there would name GPUs the container does not have);
* a model folder is mounted read-only at ``/model``; a Hub repo is downloaded inside the
  container into the mounted Hugging Face cache, with ``HF_TOKEN`` in the container's
  environment only when the repo is private or gated, never in its command;
* the port is published on ``serve.host`` (127.0.0.1 by default) and the API key reaches
  vLLM as ``VLLM_API_KEY``; TP > 1 gets ``serve.docker.shm_size`` of shared memory (NCCL)
  or the host's IPC namespace;
* the container is named ``tuneship-<run>`` and labelled with the run and model, runs
  under an init (so ``stop`` reaches vLLM at once instead of waiting out its timeout) and
  has a health check whose start period is ``serve.startup_timeout_s``.

It is ready when Docker reports it healthy and ``/v1/models`` lists the served name. On
any failure, timeout or interruption the container's log is saved beside the API key and
the container is removed; the error quotes vLLM's own lines.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from pydantic import Field, SecretStr

from tuneship.config import VLLM_OPENAI_IMAGE, DockerServeConfig, ServeConfig, default_home
from tuneship.errors import ServingError
from tuneship.serving.api_keys import choose_api_key, write_api_key_file
from tuneship.serving.base import Backend, DeploymentInfo, describe_devices
from tuneship.serving.http import http_get, vllm_healthy
from tuneship.serving.local_vllm import (
    start_failure,
    url_host,
)
from tuneship.serving.placement import LocalPlan, plan_local_server
from tuneship.serving.runpod_base import hf_token_if_needed
from tuneship.serving.vllm_options import EngineLimits, build_vllm_options

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.containers import Container

    from tuneship.planning.inventory import LocalGpu

log = logging.getLogger(__name__)

TARGET_NAME = "docker"
CONTAINER_PORT = 8000
MODEL_MOUNT = "/model"
HF_CACHE_MOUNT = "/root/.cache/huggingface"
LABEL_RUN = "io.tuneship.run"
LABEL_MODEL = "io.tuneship.model"
LABEL_MODEL_VERSION = "io.tuneship.model-version"
_NS = 1_000_000_000
# bash, not sh: /dev/tcp is a bash feature (dash is /bin/sh on Debian and Ubuntu). Needs no
# curl or Python in the image, only bash, which vllm/vllm-openai (Ubuntu) has.
HEALTH_PROBE = (
    f"exec 3<>/dev/tcp/127.0.0.1/{CONTAINER_PORT} && "
    "printf 'GET /health HTTP/1.0\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"
)


class DockerEngineError(ServingError):
    """The Docker engine cannot be reached, lacks the image, or lacks the NVIDIA runtime."""


class DockerDeploymentInfo(DeploymentInfo):
    """A deployment in a container: which engine runs it, which container, which GPUs."""

    container_id: str = Field(description="Docker container id.")
    container_name: str = Field(description="Container name, tuneship-<run>.")
    docker_host: str | None = Field(default=None, description="Engine URL; None: the default.")
    image: str | None = Field(default=None, description="Image the container runs.")
    host: str | None = Field(default=None, description="Address the port is published on.")
    port: int | None = Field(default=None, description="Published host port.")
    log_path: str | None = Field(default=None, description="The container's saved log.")
    backend: Backend = "cpu"
    gpu_indices: list[int] = Field(default_factory=list, description="NVML indices on the host.")

    _details: ClassVar[tuple[str, ...]] = (
        *DeploymentInfo._details,
        "container_id",
        "container_name",
        "docker_host",
        "image",
        "host",
        "port",
        "log_path",
        "backend",
        "gpu_indices",
    )


def container_name(run: str) -> str:
    """The container name of a run: ``tuneship-<run>`` (the RunPod resources' rule)."""
    from tuneship.runpod.specs import resource_name

    return resource_name(run)


def engine_url(options: DockerServeConfig) -> str | None:
    """The Docker engine URL: ``serve.docker.host``, else ``$DOCKER_HOST``, else None."""
    return options.host or os.environ.get("DOCKER_HOST") or None


def docker_client(host: str | None) -> DockerClient:
    """Connect to the Docker engine at ``host`` (None: ``$DOCKER_HOST`` or the local one).

    Raises:
        DockerEngineError: No engine answers there.
    """
    import docker
    from docker.errors import DockerException

    where = host or "the default socket (unix:///var/run/docker.sock)"
    try:
        client = docker.DockerClient(base_url=host) if host else docker.from_env()
        client.ping()
    except DockerException as exc:
        raise DockerEngineError(
            f"no Docker engine answers at {where}: {exc}. Start it (`sudo systemctl start "
            "docker`) or point serve.docker.host / DOCKER_HOST at a running engine"
        ) from None
    return client


def _unpullable(image: str, exc: Exception) -> DockerEngineError:
    return DockerEngineError(
        f"image {image!r} is not on the Docker engine and could not be pulled: "
        f"{getattr(exc, 'explanation', None) or exc}. Pull or load it there "
        f"(`docker pull {image}`), or set serve.docker.image to an image the engine has"
    )


def check_docker_serving(options: ServeConfig) -> str:
    """Check before a run starts that the engine answers and has (or can pull) the image.

    Nothing is pulled: a missing image is looked up in its registry only.

    Returns:
        What was found, for the pre-flight report.

    Raises:
        DockerEngineError: No engine, or the image is absent and not in its registry.
    """
    from docker.errors import DockerException, ImageNotFound

    host = engine_url(options.docker)
    image = options.docker.image
    with contextlib.closing(docker_client(host)) as client:
        try:
            client.images.get(image)
            found = "present"
        except ImageNotFound:
            try:
                client.images.get_registry_data(image)
            except DockerException as exc:
                raise _unpullable(image, exc) from None
            found = "will be pulled"
    return f"Docker engine {host or 'default'}, image {image} ({found})"


def ensure_image(client: DockerClient, image: str) -> None:
    """Make sure the engine has ``image``, pulling it when absent.

    Raises:
        DockerEngineError: The image is absent and cannot be pulled.
    """
    from docker.errors import DockerException, ImageNotFound

    try:
        client.images.get(image)
        return
    except ImageNotFound:
        pass
    log.info("pulling %s (vLLM images are several GB; the first pull takes minutes)", image)
    repo, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:
        repo, tag = image, "latest"
    try:
        client.images.pull(repo, tag=tag)
    except DockerException as exc:
        raise _unpullable(image, exc) from None


def check_gpu_runtime(client: DockerClient) -> None:
    """Require the NVIDIA runtime on the engine before GPUs are requested.

    Raises:
        DockerEngineError: The engine has no ``nvidia`` runtime.
    """
    info = client.info()
    runtimes = set(info.get("Runtimes") or {}) | {info.get("DefaultRuntime") or ""}
    if "nvidia" not in runtimes:
        raise DockerEngineError(
            "GPUs were requested but the Docker engine has no NVIDIA runtime (runtimes: "
            f"{', '.join(sorted(r for r in runtimes if r)) or 'none'}). Install the NVIDIA "
            "Container Toolkit, run `sudo nvidia-ctk runtime configure --runtime=docker` and "
            "restart Docker"
        )


def container_command(
    model_arg: str, options: ServeConfig, plan: EngineLimits, *, served_model_name: str
) -> list[str]:
    """The vLLM arguments the container starts with (after the image's entrypoint).

    The flag set every target shares (:func:`build_vllm_options`), rendered for a
    container. No secret is in it: the key is an environment variable.
    """
    options_ = build_vllm_options(model_arg, served_model_name, plan, options)
    return options_.as_container_args(CONTAINER_PORT)


def container_environment(
    plan: LocalPlan,
    options: ServeConfig,
    *,
    model_is_local: bool,
    api_key: str,
    hf_token: str | None = None,
) -> dict[str, str]:
    """The container's environment: the key, offline mode or token, the CPU KV space."""
    env = {
        "VLLM_API_KEY": api_key,
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        "PYTHONUNBUFFERED": "1",
    }
    if model_is_local:
        env["HF_HUB_OFFLINE"] = "1"  # the mounted folder needs no Hub
    elif hf_token:
        env["HF_TOKEN"] = hf_token
    if plan.backend == "cpu" and plan.cpu_kvcache_space_gib is not None:
        env["VLLM_CPU_KVCACHE_SPACE"] = str(plan.cpu_kvcache_space_gib)
    env.update(options.docker.environment)
    return env


def container_mounts(
    model: str | Path, options: DockerServeConfig
) -> tuple[str, dict[str, dict[str, str]]]:
    """The model argument inside the container and the bind mounts that provide it.

    A model folder is mounted read-only at ``/model``; for a Hub repo the host's Hugging
    Face cache is mounted (read-write: vLLM downloads into it). ``serve.docker.mounts``
    are added read-only.
    """
    local = Path(model).expanduser()
    volumes: dict[str, dict[str, str]] = {}
    if local.is_dir():
        volumes[str(local.resolve())] = {"bind": MODEL_MOUNT, "mode": "ro"}
        model_arg = MODEL_MOUNT
    else:
        cache = options.hf_cache or os.environ.get("HF_HOME") or "~/.cache/huggingface"
        cache_dir = Path(cache).expanduser()
        cache_dir.mkdir(parents=True, exist_ok=True)
        volumes[str(cache_dir.resolve())] = {"bind": HF_CACHE_MOUNT, "mode": "rw"}
        model_arg = str(model)
    for source, target in options.mounts.items():
        volumes[str(Path(source).expanduser())] = {"bind": target, "mode": "ro"}
    return model_arg, volumes


def host_options(plan: LocalPlan, options: DockerServeConfig) -> dict[str, Any]:
    """The container's GPUs, shared memory and entrypoint, as Docker SDK arguments.

    GPUs are requested by NVML index; the NVIDIA runtime exposes only those, numbered
    from 0, so nothing else needs to name them.
    """
    from docker.types import DeviceRequest

    kwargs: dict[str, Any] = {}
    if plan.backend == "cuda":
        kwargs["device_requests"] = [
            DeviceRequest(device_ids=[str(i) for i in plan.gpu_indices], capabilities=[["gpu"]])
        ]
    if options.ipc_host:
        kwargs["ipc_mode"] = "host"
    else:
        kwargs["shm_size"] = options.shm_size  # NCCL's buffers at TP > 1; Docker gives 64 MB
    if options.entrypoint:
        kwargs["entrypoint"] = list(options.entrypoint)
    return kwargs


def endpoint_host(docker_host: str | None, bind: str) -> str:
    """The host clients use: the engine's machine for a remote engine, else ``bind``'s."""
    parts = urlsplit(docker_host or "")
    remote = parts.scheme in ("tcp", "ssh", "http", "https") and parts.hostname
    if remote and parts.hostname and bind in ("0.0.0.0", "::", ""):
        return f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return url_host(bind)


def _find_container(client: DockerClient, ref: str) -> Container | None:
    from docker.errors import NotFound

    try:
        return client.containers.get(ref)
    except NotFound:
        return None


def save_container_log(container: Container, log_path: Path | None) -> str:
    """Append the container's whole log to ``log_path``; return the log text."""
    from docker.errors import DockerException

    try:
        text = container.logs(stdout=True, stderr=True).decode("utf-8", errors="replace")
    except DockerException as exc:
        text = f"# tuneship: could not read the container's log: {exc}\n"
    if log_path is not None:
        with log_path.open("a", encoding="utf-8") as handle:
            handle.write(text)
    return text


def remove_container(
    client: DockerClient, ref: str, log_path: Path | None = None, timeout_s: float = 30.0
) -> bool:
    """Stop (SIGTERM through the init, SIGKILL after ``timeout_s``) and remove a container.

    Its log is saved to ``log_path`` first. Idempotent.

    Returns:
        True when the container existed.

    Raises:
        ServingError: The engine refused to remove it.
    """
    from docker.errors import DockerException, NotFound

    container = _find_container(client, ref)
    if container is None:
        return False
    try:
        if container.status in ("running", "restarting", "paused"):
            container.stop(timeout=max(1, round(timeout_s)))
        save_container_log(container, log_path)
        container.remove(force=True)
    except NotFound:
        return True  # removed meanwhile (by hand, or by another stop)
    except DockerException as exc:
        raise ServingError(f"could not remove container {ref}: {exc}") from None
    return True


def container_alive(details: dict[str, Any]) -> bool | None:
    """Whether a recorded container still runs; None when the engine cannot be asked."""
    ref = details.get("container_id") or details.get("container_name")
    if not isinstance(ref, str):
        return None
    try:
        client = docker_client(details.get("docker_host"))
    except DockerEngineError:
        return None
    with contextlib.closing(client):
        container = _find_container(client, ref)
        return container is not None and container.status == "running"


class DockerTarget:
    """Serve with vLLM's container on a Docker engine (``serve.docker``).

    Args:
        deployments_dir: Where each deployment's logs and key file go
            (default: ``$TUNESHIP_HOME/deployments``).
        gpus: GPU readings to plan with; None reads NVML on this machine.
        poll_interval_s: Longest pause between readiness probes.
        on_start: Called with the container right after it starts (for callers that
            must see it before ``deploy`` returns).
        hub_token: Token for a private or gated Hub repo, loaded by the Prefect layer
            (``tuneship.tasks.credentials.load_target``); it reaches the container's
            environment only when the repo needs it.
    """

    name = TARGET_NAME
    record_type: type[DeploymentInfo] = DockerDeploymentInfo

    def __init__(
        self,
        deployments_dir: Path | None = None,
        gpus: list[LocalGpu] | None = None,
        poll_interval_s: float = 2.0,
        on_start: Callable[[Container], None] | None = None,
        hub_token: SecretStr | None = None,
    ) -> None:
        self.deployments_dir = deployments_dir
        self.gpus = gpus
        self.poll_interval_s = poll_interval_s
        self.on_start = on_start
        self.hub_token = hub_token

    def _deployment_dir(self, name: str) -> Path:
        folder = (self.deployments_dir or default_home() / "deployments") / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def plan(self, model: str | Path, options: ServeConfig, *, name: str = "") -> LocalPlan:
        """Return the GPUs, TP and limits the container gets (nothing is started).

        The engine runs on this machine's GPUs (a remote engine's GPUs are planned with
        ``gpus=`` readings), so the local planner's adapter decides.
        """
        return plan_local_server(model, options, gpus=self.gpus)

    def deploy(
        self,
        model: str | Path,
        options: ServeConfig,
        *,
        name: str,
        model_name: str | None = None,
        model_version: str | None = None,
        plan: LocalPlan | None = None,
        on_created: Callable[[DeploymentInfo], None] | None = None,
    ) -> DockerDeploymentInfo:
        """Start the container on ``model`` and return once it serves.

        A container of the same run (same name and tuneship label) is replaced.

        Args:
            model: A model folder (mounted read-only) or a Hub repo id.
            options: The ``serve`` section (``serve.docker`` for the engine and image).
            name: Deployment name; also the served model name unless the config sets one.
            model_name: Registered model name, recorded with the deployment.
            model_version: Registered model version, recorded with the deployment.
            plan: A plan from :meth:`plan`; computed when None.

        Raises:
            DockerEngineError: No engine, no image, or GPUs without the NVIDIA runtime;
                raised before anything starts.
            ServerStartError: The container did not become ready; it is removed and its
                log kept.
        """
        from docker.errors import DockerException
        from docker.types import Healthcheck

        dopts = options.docker
        local = Path(model).expanduser()
        model_is_local = local.is_dir()
        plan = plan or self.plan(str(local.resolve()) if model_is_local else str(model), options)
        if plan.backend == "cpu" and dopts.image == VLLM_OPENAI_IMAGE:
            raise DockerEngineError(
                f"no GPU found on this machine and {VLLM_OPENAI_IMAGE} needs one: set "
                "serve.docker.image to a CPU build of vLLM (see docs/serving.md)"
            )
        host = engine_url(dopts)
        client = docker_client(host)
        ensure_image(client, dopts.image)
        if plan.backend == "cuda":
            check_gpu_runtime(client)
        # HF_TOKEN, only for a private or gated repo.
        hf_token = None if model_is_local else hf_token_if_needed(str(model), None, self.hub_token)
        model_arg, volumes = container_mounts(model, dopts)
        served = options.served_model_name or name
        api_key = choose_api_key(options)
        folder = self._deployment_dir(name)
        key_file = write_api_key_file(folder, api_key)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        log_path = folder / f"container-{stamp}-{os.getpid()}.log"
        command = container_command(model_arg, options, plan, served_model_name=served)
        cname = container_name(name)
        log_path.write_text(
            f"# tuneship: docker container {cname} image {dopts.image} "
            f"entrypoint {json.dumps(dopts.entrypoint)} command {json.dumps(command)}\n"
            f"# plan: {'; '.join(plan.notes)}\n",
            encoding="utf-8",
        )
        self._replace_previous(client, cname, name, folder)

        labels = {LABEL_RUN: name, LABEL_MODEL: model_name or str(model)}
        if model_version:
            labels[LABEL_MODEL_VERSION] = model_version
        try:
            container = client.containers.create(
                dopts.image,
                command=command,
                name=cname,
                detach=True,
                init=True,
                environment=container_environment(
                    plan, options, model_is_local=model_is_local, api_key=api_key, hf_token=hf_token
                ),
                volumes=volumes,
                ports={f"{CONTAINER_PORT}/tcp": (options.host, options.port)},
                labels=labels,
                healthcheck=Healthcheck(
                    test=["CMD", "bash", "-c", HEALTH_PROBE],
                    interval=int(dopts.health_interval_s * _NS),
                    timeout=5 * _NS,
                    retries=3,
                    start_period=int(options.startup_timeout_s * _NS),
                ),
                **host_options(plan, dopts),
            )
        except DockerException as exc:
            raise ServingError(f"Docker could not create container {cname}: {exc}") from None
        started = time.monotonic()
        try:
            container.start()
            container.reload()
            port = self._published_port(container, options)
            info = DockerDeploymentInfo(
                name=name,
                target=self.name,
                url=f"http://{endpoint_host(host, options.host)}:{port}/v1",
                served_model_name=served,
                api_key=api_key,
                api_key_file=str(key_file),
                model=str(local.resolve()) if model_is_local else str(model),
                model_name=model_name,
                model_version=model_version,
                host=options.host,
                port=port,
                log_path=str(log_path),
                backend=plan.backend,
                gpu_indices=plan.gpu_indices,
                tensor_parallel_size=plan.tensor_parallel_size,
                max_model_len=plan.max_model_len,
                gpu_memory_utilization=plan.gpu_memory_utilization,
                container_id=str(container.id),
                container_name=cname,
                docker_host=host,
                image=dopts.image,
            )
            if self.on_start is not None:
                self.on_start(container)
            if on_created is not None:
                on_created(info)
            self._wait_until_ready(client, container, info, options, plan)
        except BaseException:
            # Any failure or interruption while starting (SIGTERM, Ctrl-C) removes it.
            with contextlib.suppress(ServingError):
                remove_container(client, str(container.id), log_path, timeout_s=10.0)
            raise
        info.ready_after_s = round(time.monotonic() - started, 2)
        return info

    def _replace_previous(self, client: DockerClient, cname: str, run: str, folder: Path) -> None:
        """Remove an earlier container of this run, so re-deploying does not fail on the name.

        Raises:
            DockerEngineError: A container of that name was not started by tuneship.
        """
        previous = _find_container(client, cname)
        if previous is None:
            return
        if previous.labels.get(LABEL_RUN) != run:
            raise DockerEngineError(
                f"a container named {cname} exists that tuneship did not start for run "
                f"{run!r}; remove or rename it (`docker rm -f {cname}`)"
            )
        log.warning("replacing container %s of an earlier deployment of %r", cname, run)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        remove_container(client, cname, folder / f"replaced-{stamp}.log", timeout_s=10.0)

    @staticmethod
    def _published_port(container: Container, options: ServeConfig) -> int:
        bindings = (container.attrs.get("NetworkSettings", {}).get("Ports") or {}).get(
            f"{CONTAINER_PORT}/tcp"
        ) or []
        for binding in bindings:
            if binding.get("HostPort"):
                return int(binding["HostPort"])
        if options.port:
            return options.port
        raise ServingError(f"Docker published no port for container {container.name}")

    def _wait_until_ready(
        self,
        client: DockerClient,
        container: Container,
        info: DockerDeploymentInfo,
        options: ServeConfig,
        plan: LocalPlan,
    ) -> None:
        base = info.url.removesuffix("/v1")
        deadline = time.monotonic() + options.startup_timeout_s
        pause = 0.5
        from docker.errors import DockerException

        while True:
            try:
                container.reload()
            except DockerException as exc:  # removed by hand, or the engine went away
                self._fail(client, info, options, plan, f"Docker lost the container ({exc})")
            state = container.attrs.get("State") or {}
            if state.get("Status") in ("exited", "dead"):
                self._fail(
                    client,
                    info,
                    options,
                    plan,
                    f"the container exited with code {state.get('ExitCode')} while starting",
                )
            health = (state.get("Health") or {}).get("Status")
            if health == "unhealthy":
                self._fail(client, info, options, plan, "Docker reports the container unhealthy")
            if health == "healthy":
                try:
                    status, body = http_get(f"{base}/v1/models", info.api_key, 10.0)
                except (OSError, ValueError):
                    status, body = 0, b""  # the port map is not forwarding yet
                if status in (401, 403):
                    self._fail(
                        client, info, options, plan, f"vLLM refused the API key (HTTP {status})"
                    )
                if status == 200:
                    served = [m.get("id") for m in json.loads(body).get("data", [])]
                    if info.served_model_name in served:
                        return
                    self._fail(
                        client,
                        info,
                        options,
                        plan,
                        f"vLLM serves {served}, not {info.served_model_name!r}",
                    )
            if time.monotonic() >= deadline:
                self._fail(
                    client,
                    info,
                    options,
                    plan,
                    f"the container was not ready after serve.startup_timeout_s="
                    f"{options.startup_timeout_s:g} s (raise it for large models)",
                )
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 1.5, self.poll_interval_s)

    def _fail(
        self,
        client: DockerClient,
        info: DockerDeploymentInfo,
        options: ServeConfig,
        plan: LocalPlan,
        reason: str,
    ) -> None:
        log_path = Path(info.log_path) if info.log_path else None
        remove_container(client, info.container_id, log_path, timeout_s=10.0)
        text = log_path.read_text(encoding="utf-8", errors="replace") if log_path else ""
        head = (
            f"deployment {info.name!r} (container {info.container_name}) of {info.model} "
            f"failed: {reason}; the container was removed."
        )
        # The container's log tail is quoted as Docker returns it.
        raise start_failure(head, text, log_path, plan, strip_ansi=False)

    def stop(self, deployment: DeploymentInfo, timeout_s: float = 30.0) -> None:
        """Stop and remove the deployment's container, saving its log; idempotent.

        Raises:
            DockerEngineError: The engine cannot be reached.
            ServingError: The engine refused to remove the container.
        """
        assert isinstance(deployment, DockerDeploymentInfo)
        ref = deployment.container_id or deployment.container_name
        with contextlib.closing(docker_client(deployment.docker_host)) as client:
            log_path = Path(deployment.log_path) if deployment.log_path else None
            remove_container(client, ref, log_path, timeout_s)

    def health(self, deployment: DeploymentInfo) -> bool:
        """Whether the container runs and vLLM's ``/health`` answers 200."""
        if container_alive(deployment.registry_details()) is False:
            return False
        return vllm_healthy(deployment.url)

    def describe(self, deployment: DeploymentInfo) -> str:
        """``container tuneship-x (image) on GPUs 0,1, log /path`` (or ``on the CPU``)."""
        assert isinstance(deployment, DockerDeploymentInfo)
        where = describe_devices(deployment.backend, deployment.gpu_indices)
        engine = deployment.docker_host or "the default engine"
        return (
            f"container {deployment.container_name} ({deployment.image}) on {where} of "
            f"{engine}, log {deployment.log_path}"
        )


def remove_run_containers(options: DockerServeConfig, run: str) -> bool:
    """Remove the container of ``run`` (for crash hooks in another process).

    Returns:
        True when there was one.
    """
    with contextlib.closing(docker_client(engine_url(options))) as client:
        container = _find_container(client, container_name(run))
        if container is None or container.labels.get(LABEL_RUN) != run:
            return False
        return remove_container(client, str(container.id), None, timeout_s=10.0)
