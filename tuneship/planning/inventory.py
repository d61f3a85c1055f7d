"""Local GPUs through NVML (nvidia-ml-py), and choosing the least-loaded ones.

No NVML library, no driver, or any NVML error at start-up means "no GPUs": an empty list,
never a crash (offline-testing.md section 5: ``nvmlInit`` raises
``NVMLError_LibraryNotFound`` without the library and ``NVMLError_DriverNotLoaded``
without a driver; both derive from ``NVMLError``).

Indices are NVML's, which follow PCI bus order. CUDA numbers devices fastest-first unless
``CUDA_DEVICE_ORDER=PCI_BUS_ID``; callers should set that, or pass the UUIDs in
``CUDA_VISIBLE_DEVICES``, so the GPUs chosen here are the GPUs a job gets.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from tuneship.errors import ComputeError, PlanningError
from tuneship.planning.gpus import CUDA_CONTEXT_GIB, GIB, GpuSpec, find_gpu

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalGpu:
    """One local GPU as NVML reports it.

    Attributes:
        index: NVML index (PCI bus order).
        name: Product name, e.g. ``"NVIDIA GeForce RTX 4090"``.
        uuid: ``GPU-...`` UUID (usable in ``CUDA_VISIBLE_DEVICES``).
        total_bytes: Total memory.
        free_bytes: Free memory now.
        utilization: GPU utilisation in percent, None when NVML cannot tell (e.g. MIG).
    """

    index: int
    name: str
    uuid: str
    total_bytes: int
    free_bytes: int
    utilization: int | None

    @property
    def total_gib(self) -> float:
        """Total memory in GiB."""
        return self.total_bytes / GIB

    @property
    def free_gib(self) -> float:
        """Free memory in GiB."""
        return self.free_bytes / GIB

    def to_gpu_spec(self) -> GpuSpec:
        """This GPU as a planner GPU.

        Free memory is what vLLM will see at its check, i.e. NVML's free memory less the
        CUDA context vLLM creates first (``CUDA_CONTEXT_GIB``). The catalog entry's name
        is used when the product is known.
        """
        try:
            name = find_gpu(self.name).name
        except PlanningError:
            name = self.name
        return GpuSpec(
            name=f"{name} (local #{self.index})",
            total_gib=self.total_gib,
            aliases=(self.name,),
            total_gib_source="nvml",
            max_count=1,
            free_gib=max(self.free_gib - CUDA_CONTEXT_GIB, 0.0),
        )


def _text(value: Any) -> str:
    """NVML strings are bytes in old bindings and str in new ones."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _import_nvml() -> ModuleType | None:
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml


def list_local_gpus(nvml: Any = None) -> list[LocalGpu]:
    """List local NVIDIA GPUs with their memory and utilisation.

    Args:
        nvml: The ``pynvml`` module or an object with the same functions (tests pass
            recorded readings); the installed ``pynvml`` by default.

    Returns:
        GPUs in NVML index order; empty when NVML, the driver or the GPUs are missing. A
        GPU that fails to answer is left out (logged), the others are kept.
    """
    lib = nvml if nvml is not None else _import_nvml()
    if lib is None:
        return []
    error: type[BaseException] = getattr(lib, "NVMLError", Exception)
    try:
        lib.nvmlInit()
    except error as exc:
        log.info("no NVIDIA GPUs visible (%s)", exc)
        return []
    gpus: list[LocalGpu] = []
    try:
        count = int(lib.nvmlDeviceGetCount())
        for index in range(count):
            try:
                handle = lib.nvmlDeviceGetHandleByIndex(index)
                memory = lib.nvmlDeviceGetMemoryInfo(handle)
                try:
                    utilization: int | None = int(lib.nvmlDeviceGetUtilizationRates(handle).gpu)
                except error:
                    utilization = None
                gpus.append(
                    LocalGpu(
                        index=index,
                        name=_text(lib.nvmlDeviceGetName(handle)),
                        uuid=_text(lib.nvmlDeviceGetUUID(handle)),
                        total_bytes=int(memory.total),
                        free_bytes=int(memory.free),
                        utilization=utilization,
                    )
                )
            except error as exc:
                log.warning("GPU %d did not answer NVML (%s); leaving it out", index, exc)
    except error as exc:
        log.warning("NVML failed while listing GPUs (%s)", exc)
    finally:
        try:
            lib.nvmlShutdown()
        except error as exc:
            log.debug("nvmlShutdown failed: %s", exc)
    return gpus


def pick_least_loaded(gpus: list[LocalGpu], count: int, min_free_bytes: int = 0) -> list[LocalGpu]:
    """Choose the ``count`` least-loaded GPUs: most free memory, then lowest utilisation.

    Args:
        gpus: Candidates (from :func:`list_local_gpus`).
        count: How many to choose.
        min_free_bytes: Leave out GPUs with less free memory than this.

    Returns:
        The chosen GPUs, least loaded first.

    Raises:
        ComputeError: Fewer than ``count`` GPUs qualify; the message lists them.
    """
    if count < 1:
        raise ComputeError(f"GPU count must be at least 1, got {count}")
    eligible = [g for g in gpus if g.free_bytes >= min_free_bytes]
    ranked = sorted(
        eligible,
        key=lambda g: (-g.free_bytes, g.utilization if g.utilization is not None else 101, g.index),
    )
    if len(ranked) < count:
        seen = (
            ", ".join(
                f"#{g.index} {g.name} {g.free_gib:.2f}/{g.total_gib:.2f} GiB free" for g in gpus
            )
            or "none"
        )
        need = f" with at least {min_free_bytes / GIB:.2f} GiB free" if min_free_bytes else ""
        raise ComputeError(f"need {count} local GPU(s){need}, found {len(ranked)} (GPUs: {seen})")
    return ranked[:count]
