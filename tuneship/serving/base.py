"""What every serving target provides (plan, deploy, health, stop, describe) and the
deployment records they return."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, Self, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from tuneship.config import ServeConfig

Backend = Literal["cuda", "cpu"]


class DeploymentInfo(BaseModel):
    """A started endpoint, on any target: where it answers and what it serves.

    ``api_key`` is a secret: it is left out of ``repr`` and of ``model_dump`` (so it never
    reaches a log, a Prefect result or the registry); read the attribute, or the key file.
    Each target extends this record with what only it has (a local process's pid, a
    RunPod endpoint's id).
    """

    model_config = ConfigDict(protected_namespaces=())

    name: str = Field(description="Deployment name (unique in the registry).")
    target: str = Field(description="Serving target, e.g. 'local-vllm'.")
    url: str = Field(description="OpenAI-compatible base URL, ending in /v1.")
    served_model_name: str = Field(description="The 'model' field clients send.")
    api_key: str = Field(default="", repr=False, exclude=True, description="Bearer token (secret).")
    api_key_file: str | None = Field(default=None, description="0600 file that holds the API key.")
    model: str = Field(description="Model folder or Hub repo id that is served.")
    model_name: str | None = Field(default=None, description="Registered model name.")
    model_version: str | None = Field(default=None, description="Registered model version.")
    tensor_parallel_size: int = 1
    max_model_len: int | None = None
    gpu_memory_utilization: float | None = None
    started_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    ready_after_s: float | None = Field(default=None, description="Seconds from start to ready.")

    _details: ClassVar[tuple[str, ...]] = (
        "model",
        "api_key_file",
        "tensor_parallel_size",
        "max_model_len",
        "gpu_memory_utilization",
        "started_at",
        "ready_after_s",
    )

    def registry_details(self) -> dict[str, Any]:
        """Return the JSON-safe details the registry stores (no secret)."""
        return self.model_dump(mode="json", include=set(self._details))

    @classmethod
    def from_entry(cls, entry: Any) -> Self:
        """Rebuild the record from a registry entry (``DeploymentEntry``), e.g. to stop it.

        The API key is not in the registry; it stays empty.
        """
        details = {k: v for k, v in (entry.details or {}).items() if k in cls.model_fields}
        details.update(
            name=entry.name,
            target=entry.target,
            url=entry.url or "",
            served_model_name=entry.served_model_name or entry.name,
            model=details.get("model") or entry.model_name,
            model_name=entry.model_name,
            model_version=entry.model_version,
        )
        return cls.model_validate(details)


class LocalDeploymentInfo(DeploymentInfo):
    """A server process on this machine: its address, process group and log."""

    host: str | None = None
    port: int | None = None
    pid: int | None = None
    pgid: int | None = Field(default=None, description="Process group; stopping kills all of it.")
    pid_start_time: float | None = Field(
        None, description="Start time of pid, seconds since the epoch (guards against pid reuse)."
    )
    log_path: str | None = None
    backend: Backend = "cpu"
    gpu_indices: list[int] = Field(default_factory=list)

    _details: ClassVar[tuple[str, ...]] = (
        *DeploymentInfo._details,
        "host",
        "port",
        "pid",
        "pgid",
        "pid_start_time",
        "log_path",
        "backend",
        "gpu_indices",
    )


def describe_devices(backend: Backend, gpu_indices: list[int]) -> str:
    """``GPUs 0,1`` on the CUDA backend, ``the CPU`` otherwise (for a target's ``describe``)."""
    return f"GPUs {','.join(map(str, gpu_indices))}" if backend == "cuda" else "the CPU"


@runtime_checkable
class ServingTarget(Protocol):
    """A place a model can be served from (a local vLLM process, a rented endpoint...).

    Callers plan first and hand the plan to ``deploy``, so what was shown (and checked
    against the budget) is what starts; ``deploy`` plans itself only when given no plan.
    Targets are found by name through :mod:`tuneship.serving.targets`.
    """

    name: str
    record_type: type[DeploymentInfo]
    """The deployment record this target returns and stores in the registry."""

    def plan(self, model: str | Path, options: ServeConfig, *, name: str) -> Any:
        """Work out where and how ``model`` would be served; nothing is started."""
        ...

    def deploy(
        self,
        model: str | Path,
        options: ServeConfig,
        *,
        name: str,
        model_name: str | None = None,
        model_version: str | None = None,
        plan: Any = None,
        on_created: Callable[[DeploymentInfo], None] | None = None,
    ) -> DeploymentInfo:
        """Start serving ``model`` and return once it answers.

        Args:
            model: A model folder or a Hub repo id.
            options: The ``serve`` section of the config.
            name: Deployment name (also the default served model name).
            model_name: Registered model name, recorded with the deployment.
            model_version: Registered model version, recorded with the deployment.
            plan: The plan from :meth:`plan`; made here when None.
            on_created: Called with the record as soon as the server exists, before the
                wait for readiness, so that a caller killed while it starts (SIGKILL, a
                lost machine) has recorded what to stop. If it raises, the server is
                stopped.

        Raises:
            ServingError: The server did not become ready; nothing is left running.
        """
        ...

    def health(self, deployment: DeploymentInfo) -> bool:
        """Whether the deployment answers now (no secret needed)."""
        ...

    def stop(self, deployment: DeploymentInfo, timeout_s: float = 30.0) -> None:
        """Stop the deployment (idempotent)."""
        ...

    def describe(self, deployment: DeploymentInfo) -> str:
        """One line for people: where it runs and on what."""
        ...
