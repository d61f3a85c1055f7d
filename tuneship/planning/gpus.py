"""The GPU catalog: RunPod GPU ids, serverless pools and prices, and GPUs people own.

The numbers live in ``data/gpus.json`` with their sources and dates, so they can be
checked and updated without touching code. ``load_runpod_catalog`` is the boundary for
live RunPod data: with a client it merges the API's GPU types over the snapshot.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
from importlib import resources
from typing import Any, Protocol

from tuneship.errors import PlanningError, TuneshipError

GIB = 1024**3

CUDA_CONTEXT_GIB = 0.6
"""The CUDA context a process creates before it allocates anything: a clean H100 shows
78.57 of 79.19 GiB free to vLLM (vllm-memory.md 1.1, 3.1 "about 0.6 GiB"). The one value
every planner (serving and training) subtracts."""
"""Bytes in a GiB; vLLM and torch report memory in GiB."""

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GpuSpec:
    """One GPU type the planner can place a model on.

    Attributes:
        name: Usual name, e.g. ``"A100 40GB"``.
        total_gib: Memory as torch/vLLM report it ("total"); vLLM's budget is a fraction of it.
        memory_gb: Marketing size in GB (80 for an H100).
        aliases: Other names it goes by (nvidia-smi names, RunPod ids, short forms).
        runpod_id: RunPod's ``gpuTypeId``, or None when RunPod does not rent it.
        serverless_pool: RunPod serverless pool id (``gpuIds``), or None.
        serverless_usd_per_second: RunPod serverless flex price per GPU-second, or None.
        pod_usd_per_hour: RunPod pod price per GPU-hour when known, or None.
        pod_price_source: Where the pod price comes from.
        total_gib_source: Where ``total_gib`` comes from (reference, seed, estimate, nvml, user).
        max_count: Most GPUs of this type one pod or worker can have.
        free_gib: Free memory per GPU when known (a local GPU), as vLLM will see it at start.
    """

    name: str
    total_gib: float
    memory_gb: float | None = None
    aliases: tuple[str, ...] = ()
    runpod_id: str | None = None
    serverless_pool: str | None = None
    serverless_usd_per_second: float | None = None
    pod_usd_per_hour: float | None = None
    pod_price_source: str | None = None
    total_gib_source: str = "estimate"
    max_count: int = 8
    free_gib: float | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def total_bytes(self) -> int:
        """Total memory in bytes."""
        return round(self.total_gib * GIB)

    @property
    def rentable(self) -> bool:
        """Whether RunPod rents this GPU type."""
        return self.runpod_id is not None

    def price_per_hour(self, basis: str) -> tuple[float | None, str]:
        """Return the price of one GPU for an hour and the basis it was computed on.

        Args:
            basis: ``"serverless"`` (RunPod flex per-second price x 3600) or ``"pod"`` (the
                pod price when known, else the serverless rate as an upper bound).

        Returns:
            ``(usd_per_hour or None, basis label)``.
        """
        serverless = (
            self.serverless_usd_per_second * 3600
            if self.serverless_usd_per_second is not None
            else None
        )
        if basis == "pod":
            if self.pod_usd_per_hour is not None:
                return self.pod_usd_per_hour, "runpod pod"
            if serverless is not None:
                return serverless, "runpod serverless rate (no pod price known)"
            return None, "no price (owned or unpriced GPU)"
        if serverless is not None:
            return serverless, "runpod serverless flex"
        return None, "no price (owned or unpriced GPU)"


@dataclass(frozen=True)
class GpuCatalog:
    """The shipped GPU catalog with its provenance."""

    gpus: tuple[GpuSpec, ...]
    sources: dict[str, str]
    retrieved: str
    vllm: dict[str, str]
    serverless_pools: dict[str, float | None]

    @property
    def vllm_target_version(self) -> str:
        """The vLLM version plans are made for by default."""
        return self.vllm["target_version"]

    def rentable(self) -> list[GpuSpec]:
        """GPU types RunPod rents, in catalog order."""
        return [g for g in self.gpus if g.rentable]


def _normalise(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


@lru_cache(maxsize=1)
def load_gpu_catalog() -> GpuCatalog:
    """Load the GPU catalog shipped in ``tuneship/planning/data/gpus.json``.

    Returns:
        The catalog (cached; treat it as read-only).
    """
    text = (resources.files("tuneship.planning") / "data" / "gpus.json").read_text("utf-8")
    data = json.loads(text)
    pools = {p["pool"]: p["usd_per_second"] for p in data["serverless_pools"]}
    gpus = []
    for row in data["gpus"]:
        pool = row.get("serverless_pool")
        gpus.append(
            GpuSpec(
                name=row["name"],
                total_gib=float(row["total_gib"]),
                memory_gb=row.get("memory_gb"),
                aliases=tuple(row.get("aliases", ())),
                runpod_id=row.get("runpod_id"),
                serverless_pool=pool,
                serverless_usd_per_second=pools.get(pool) if pool else None,
                pod_usd_per_hour=row.get("pod_usd_per_hour"),
                pod_price_source=row.get("pod_price_source"),
                total_gib_source=row.get("total_gib_source", "estimate"),
            )
        )
    return GpuCatalog(
        gpus=tuple(gpus),
        sources=data["sources"],
        retrieved=data["retrieved"],
        vllm=data["vllm"],
        serverless_pools=pools,
    )


def find_gpu(name: str, catalog: GpuCatalog | None = None) -> GpuSpec:
    """Look a GPU up by name, alias or RunPod id, ignoring case, spaces and dashes.

    Args:
        name: e.g. ``"a100 40gb"``, ``"NVIDIA GeForce RTX 4090"``, ``"H100"``.
        catalog: Catalog to search; the shipped one by default.

    Returns:
        The GPU.

    Raises:
        PlanningError: No GPU matches; the message lists the known names.
    """
    cat = catalog or load_gpu_catalog()
    key = _normalise(name)
    for gpu in cat.gpus:
        names = (gpu.name, *gpu.aliases, *(x for x in [gpu.runpod_id] if x))
        if any(_normalise(n) == key for n in names):
            return gpu
    known = ", ".join(g.name for g in cat.gpus)
    raise PlanningError(
        f"unknown GPU {name!r}; known GPUs: {known}. "
        "For any other GPU pass its memory with --gpu-memory-gib."
    )


def custom_gpu(total_gib: float, name: str | None = None) -> GpuSpec:
    """A GPU known only by its memory (``--gpu-memory-gib``).

    Args:
        total_gib: Total memory in GiB as torch/vLLM report it.
        name: Display name; ``"custom <X> GiB"`` by default.

    Returns:
        The GPU, with no price.

    Raises:
        PlanningError: The size is not a positive number.
    """
    if not math.isfinite(total_gib) or total_gib <= 0:
        raise PlanningError(f"--gpu-memory-gib must be a positive number of GiB, got {total_gib}")
    return GpuSpec(
        name=name or f"custom {total_gib:g} GiB", total_gib=total_gib, total_gib_source="user"
    )


class RunpodGpuSource(Protocol):
    """What ``load_runpod_catalog`` needs from a RunPod client."""

    def get_gpu_types(self) -> list[dict[str, Any]]:
        """Return RunPod GraphQL ``gpuTypes`` rows.

        Each row has ``id``, ``displayName``, ``memoryInGb`` and optionally
        ``securePrice``, ``communityPrice``, ``maxGpuCount``.
        """
        ...


def merge_runpod_gpu_types(rows: list[dict[str, Any]], catalog: GpuCatalog) -> list[GpuSpec]:
    """Merge live RunPod GPU types over the shipped snapshot.

    Known ids keep the snapshot's measured ``total_gib`` and pool, and take the live pod
    price and count limit. Unknown ids are added with ``total_gib`` estimated from the
    nominal size (GB as GiB less 0.8 GiB, the gap seen between nominal and reported sizes
    on the measured cards in the catalog).

    Args:
        rows: ``gpuTypes`` rows from the RunPod API.
        catalog: The shipped catalog.

    Returns:
        Rentable GPUs.
    """
    by_id = {g.runpod_id: g for g in catalog.rentable()}
    merged: list[GpuSpec] = []
    for row in rows:
        gpu_id = row.get("id")
        if not gpu_id:
            continue
        price = row.get("securePrice") or row.get("communityPrice") or None
        max_count = int(row.get("maxGpuCount") or 8)
        known = by_id.get(gpu_id)
        if known is not None:
            merged.append(
                replace(
                    known,
                    pod_usd_per_hour=float(price) if price else known.pod_usd_per_hour,
                    pod_price_source="runpod api (live)" if price else known.pod_price_source,
                    max_count=max_count,
                )
            )
            continue
        memory = row.get("memoryInGb")
        if not memory:
            continue
        merged.append(
            GpuSpec(
                name=str(row.get("displayName") or gpu_id),
                total_gib=float(memory) - 0.8,
                memory_gb=float(memory),
                aliases=(gpu_id,),
                runpod_id=gpu_id,
                pod_usd_per_hour=float(price) if price else None,
                pod_price_source="runpod api (live)" if price else None,
                total_gib_source="estimate from RunPod memoryInGb",
                max_count=max_count,
            )
        )
    return merged


def load_runpod_catalog(client: RunpodGpuSource | None = None) -> list[GpuSpec]:
    """RunPod's rentable GPUs: live from the API when a client is given, else the snapshot.

    Args:
        client: A RunPod client with ``get_gpu_types()``; None uses the shipped snapshot.

    Returns:
        Rentable GPU types. A failing API call falls back to the snapshot (logged).
    """
    catalog = load_gpu_catalog()
    if client is None:
        return catalog.rentable()
    try:
        rows = client.get_gpu_types()
    except TuneshipError as exc:
        log.warning(
            "RunPod GPU list unavailable (%s); using the snapshot of %s", exc, catalog.retrieved
        )
        return catalog.rentable()
    merged = merge_runpod_gpu_types(rows, catalog)
    return merged or catalog.rentable()
