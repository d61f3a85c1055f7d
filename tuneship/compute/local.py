"""The local compute provider: this machine's GPUs (via NVML) or its CPU."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Sequence
from typing import Any

from tuneship.compute.base import ComputeHandle
from tuneship.errors import ComputeError


def _default_gpu_lister() -> list[Any]:
    from tuneship.planning.inventory import list_local_gpus

    return list(list_local_gpus())


def _default_picker(gpus: Sequence[Any], count: int) -> list[Any]:
    from tuneship.planning.inventory import pick_least_loaded

    return list(pick_least_loaded(list(gpus), count))


def slot_name_for(host: str, gpu: Any) -> str:
    """Return the concurrency-limit name that guards one GPU.

    The GPU's UUID is used when NVML reports one, so the name stays the same when
    CUDA_VISIBLE_DEVICES renumbers devices; Prefect limit names allow only a few
    characters, hence the clean-up.
    """
    ident = getattr(gpu, "uuid", None) or f"{host}-{gpu.index}"
    return "tuneship-gpu-" + re.sub(r"[^a-z0-9-]+", "-", str(ident).lower()).strip("-")


class LocalProvider:
    """Runs jobs on this machine: the least-loaded GPUs when there are any, else the CPU."""

    kind = "local"

    def __init__(
        self,
        list_gpus: Callable[[], list[Any]] | None = None,
        pick_gpus: Callable[[Sequence[Any], int], list[Any]] | None = None,
    ) -> None:
        """Create the provider.

        Args:
            list_gpus: Returns this machine's GPUs (NVML readings); injectable for tests.
            pick_gpus: Chooses ``count`` GPUs from a list; injectable for tests.
        """
        self._list_gpus = list_gpus or _default_gpu_lister
        self._pick_gpus = pick_gpus or _default_picker

    def provision(self, *, device: str = "auto", gpu_count: int = 1) -> ComputeHandle:
        """Choose devices for a job.

        Args:
            device: ``auto`` (GPUs when present, else CPU), ``cpu`` or ``cuda``.
            gpu_count: GPUs the job needs.

        Returns:
            The handle the training task runs on.

        Raises:
            ComputeError: ``cuda`` was asked for and there are not enough GPUs.
        """
        host = socket.gethostname()
        if device == "cpu":
            return ComputeHandle(provider=self.kind, device="cpu", host=host, note="CPU requested")
        gpus = self._list_gpus()
        if not gpus:
            if device == "cuda":
                raise ComputeError(
                    "compute.device=cuda but no NVIDIA GPU is visible on this machine "
                    "(NVML found none); use compute.device=auto or cpu"
                )
            return ComputeHandle(
                provider=self.kind, device="cpu", host=host, note="no GPU found; using the CPU"
            )
        if len(gpus) < gpu_count:
            raise ComputeError(
                f"compute.gpu_count={gpu_count} but this machine has {len(gpus)} GPU(s)"
            )
        chosen = self._pick_gpus(gpus, gpu_count)
        return ComputeHandle(
            provider=self.kind,
            device="cuda",
            gpu_indices=[int(g.index) for g in chosen],
            gpu_names=[str(g.name) for g in chosen],
            slot_names=[slot_name_for(host, g) for g in chosen],
            host=host,
            note=f"least-loaded {gpu_count} of {len(gpus)} GPU(s)",
        )

    def release(self, handle: ComputeHandle) -> None:
        """Nothing to give back: local devices are guarded by concurrency slots only."""
        return None


def get_provider(kind: str) -> LocalProvider:
    """Return the compute provider for ``compute.provider``.

    Raises:
        ComputeError: The provider is unknown.
    """
    if kind == "local":
        return LocalProvider()
    raise ComputeError(f"compute.provider={kind!r} is not available; use 'local'")
