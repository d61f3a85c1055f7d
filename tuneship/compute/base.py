"""The compute-provider interface: where a GPU stage runs."""

from __future__ import annotations

from typing import Literal, Protocol

from pydantic import BaseModel, Field


class ComputeHandle(BaseModel):
    """What a provider hands to the training task: a device and the slots that guard it."""

    provider: str = Field(description="Provider kind, e.g. 'local'.")
    device: Literal["cpu", "cuda"] = Field(description="Device the job runs on.")
    gpu_indices: list[int] = Field(default_factory=list, description="CUDA device indices.")
    gpu_names: list[str] = Field(default_factory=list, description="GPU model names.")
    slot_names: list[str] = Field(
        default_factory=list,
        description="Concurrency-limit names, one per GPU, held while the job trains.",
    )
    host: str = Field(description="Machine the job runs on.")
    note: str = Field("", description="Why this device was chosen.")


class ComputeProvider(Protocol):
    """Finds and reserves the devices a job runs on."""

    kind: str

    def provision(self, *, device: str, gpu_count: int) -> ComputeHandle:
        """Choose devices for a job and return the handle it runs on."""
        ...

    def release(self, handle: ComputeHandle) -> None:
        """Give back whatever :meth:`provision` reserved (nothing, for local devices)."""
        ...
