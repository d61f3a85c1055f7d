"""What every serving target provides: deploy a model folder or repo, and stop it again."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from tuneship.config import ServeConfig

Backend = Literal["cuda", "cpu"]


class DeploymentInfo(BaseModel):
    """A started endpoint: where it answers and how to stop it.

    ``api_key`` is a secret: it is left out of ``repr`` and of ``model_dump`` (so it never
    reaches a log, a Prefect result or the registry); read the attribute, or the key file.
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
    host: str
    port: int
    pid: int | None = None
    pgid: int | None = Field(default=None, description="Process group; stopping kills all of it.")
    pid_start_time: int | None = Field(
        None, description="Kernel start time of pid (guards against pid reuse)."
    )
    log_path: str | None = None
    backend: Backend = "cpu"
    gpu_indices: list[int] = Field(default_factory=list)
    tensor_parallel_size: int = 1
    max_model_len: int | None = None
    gpu_memory_utilization: float | None = None
    started_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    ready_after_s: float | None = Field(default=None, description="Seconds from start to ready.")

    def registry_details(self) -> dict[str, Any]:
        """Return the JSON-safe details the registry stores (no secret)."""
        return self.model_dump(
            mode="json",
            include={
                "model",
                "host",
                "port",
                "pid",
                "pgid",
                "pid_start_time",
                "log_path",
                "api_key_file",
                "backend",
                "gpu_indices",
                "tensor_parallel_size",
                "max_model_len",
                "gpu_memory_utilization",
                "started_at",
                "ready_after_s",
            },
        )


@runtime_checkable
class ServingTarget(Protocol):
    """A place a model can be served from (a local vLLM process, a rented endpoint...)."""

    name: str

    def deploy(
        self,
        model: str | Path,
        options: ServeConfig,
        *,
        name: str,
        model_name: str | None = None,
        model_version: str | None = None,
    ) -> DeploymentInfo:
        """Start serving ``model`` and return once it answers.

        Args:
            model: A model folder or a Hub repo id.
            options: The ``serve`` section of the config.
            name: Deployment name (also the default served model name).
            model_name: Registered model name, recorded with the deployment.
            model_version: Registered model version, recorded with the deployment.

        Raises:
            ServingError: The server did not become ready; nothing is left running.
        """
        ...

    def stop(self, deployment: DeploymentInfo, timeout_s: float = 30.0) -> None:
        """Stop the deployment (idempotent)."""
        ...
