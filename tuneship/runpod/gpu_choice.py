"""Which RunPod GPU type to rent, in which order, and the fallback on "no capacity".

Shared by pod serving and the training provider: the memory plan says which GPU types
fit; the live catalogue (``RunPodClient.get_gpu_types()``) gives prices and lists AMD
parts and MIG slices that must never be rented for a CUDA image. Pure functions, plus
:func:`rent_first_available`, which walks the ranking through a caller's create call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from tuneship.planning.gpus import is_cuda_gpu_type
from tuneship.runpod.errors import RunPodCapacityError

T = TypeVar("T")
log = logging.getLogger(__name__)

CLOUD_TYPES = ("SECURE", "COMMUNITY")
_PRICE_FIELD = {"SECURE": "securePrice", "COMMUNITY": "communityPrice"}

__all__ = [
    "GpuChoice",
    "is_cuda_gpu_type",
    "rank_gpu_types",
    "rent_first_available",
    "rentable_gpu_types",
]


@dataclass(frozen=True)
class GpuChoice:
    """One way to rent: a GPU type in a cloud type at its price per GPU-hour.

    Attributes:
        gpu_type_id: RunPod's ``gpuTypeId``.
        cloud_type: ``SECURE``, ``COMMUNITY`` or ``ALL`` (RunPod picks).
        usd_per_gpu_hour: The listed price, or None when RunPod lists none.
    """

    gpu_type_id: str
    cloud_type: str
    usd_per_gpu_hour: float | None


def rentable_gpu_types(catalogue: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The catalogue rows a CUDA image can run on: whole NVIDIA GPUs only."""
    return [dict(row) for row in catalogue if row.get("id") and is_cuda_gpu_type(row)]


def _price(row: dict[str, Any], cloud_type: str) -> float | None:
    if cloud_type == "ALL":
        prices = [row.get(f) for f in _PRICE_FIELD.values()]
        known = [float(p) for p in prices if p]
        return min(known) if known else None
    value = row.get(_PRICE_FIELD[cloud_type])
    return float(value) if value else None


def rank_gpu_types(
    plan: Any,
    catalogue: Iterable[dict[str, Any]],
    cloud_type: str,
    restrict: list[str] | None = None,
    *,
    other_cloud: bool = False,
) -> list[GpuChoice]:
    """The GPU types to try, in order: fitting, whole NVIDIA GPUs, cheapest first.

    Args:
        plan: What fits: an object with ``gpu_ids`` (a RunPod plan) or an iterable of
            RunPod GPU type ids.
        catalogue: Live ``gpuTypes`` rows (with ``securePrice``/``communityPrice``).
        cloud_type: ``SECURE``, ``COMMUNITY`` or ``ALL``.
        restrict: GPU type ids or display names to keep; their order then wins over price.
        other_cloud: For ``SECURE``/``COMMUNITY``, append the same types in the other
            cloud type as a fallback after every type in the chosen one.

    Returns:
        Choices to try in order; a type without a price in a cloud type that lists none
        (RunPod does not rent it there) is left out.
    """
    fitting = set(getattr(plan, "gpu_ids", None) or plan or ())
    rows = [r for r in rentable_gpu_types(catalogue) if r["id"] in fitting]
    if restrict:
        order = {name: i for i, name in enumerate(restrict)}
        far = len(order)
        rank = {
            str(r["id"]): min(order.get(r["id"], far), order.get(str(r.get("displayName")), far))
            for r in rows
        }
        rows = [r for r in rows if rank[str(r["id"])] < far]
    clouds = [cloud_type]
    if other_cloud and cloud_type in CLOUD_TYPES:
        clouds.append(next(c for c in CLOUD_TYPES if c != cloud_type))
    ranked: list[GpuChoice] = []
    for cloud in clouds:
        choices = [
            GpuChoice(str(r["id"]), cloud, _price(r, cloud))
            for r in rows
            if _price(r, cloud) is not None
        ]
        if restrict:
            choices.sort(key=lambda c: rank[c.gpu_type_id])
        else:
            choices.sort(key=lambda c: (c.usd_per_gpu_hour, c.gpu_type_id))
        ranked.extend(choices)
    return ranked


def rent_first_available(
    choices: list[GpuChoice], create: Callable[[GpuChoice], T], *, what: str = "a pod"
) -> tuple[T, GpuChoice]:
    """Call ``create`` with each choice until one is not refused for lack of capacity.

    Args:
        choices: From :func:`rank_gpu_types`.
        create: Rents with one choice (e.g. ``RunPodClient.create_pod``); raises
            :class:`RunPodCapacityError` on "no instances available".
        what: For the message.

    Returns:
        ``create``'s result and the choice that had capacity.

    Raises:
        RunPodCapacityError: No choice had capacity (nothing was created), or there were none.
    """
    refused: list[str] = []
    for choice in choices:
        try:
            return create(choice), choice
        except RunPodCapacityError as exc:
            log.warning("no %s capacity (%s cloud): %s", choice.gpu_type_id, choice.cloud_type, exc)
            refused.append(f"{choice.gpu_type_id} ({choice.cloud_type})")
    if not refused:
        raise RunPodCapacityError(
            f"no RunPod GPU type fits {what}: none of the fitting types is a rentable whole "
            "NVIDIA GPU in the chosen cloud type. Allow more GPU types or cloud_type ALL"
        )
    raise RunPodCapacityError(
        f"RunPod has no capacity for {what} on any of {refused} right now. Nothing was "
        "created. Allow cloud_type ALL or more GPU types, or try later"
    )
