"""Renting the training pod: which GPU types, in which order, on demand or spot.

One ranking (:func:`rank_training_gpus`) serves the first rental and every restart: the
GPU types the training plan finds fitting, filtered to whole NVIDIA GPUs of RunPod's live
catalogue, cheapest first (or in ``compute.runpod.gpu_types`` order), in the chosen cloud
type; with ``cloud_type: ALL`` every type in the secure cloud first, then in the community
cloud. :func:`rent_training_pod` walks that ranking through
:func:`tuneship.runpod.gpu_choice.rent_first_available` ("no instances available" goes to
the next choice), and rents interruptible (spot) pods with RunPod's minimum bid when
``compute.runpod.interruptible`` is set.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from tuneship.config import RunPodComputeConfig
from tuneship.planning.training import TrainingOption
from tuneship.runpod.client import RunPodClient
from tuneship.runpod.errors import RunPodCapacityError
from tuneship.runpod.gpu_choice import GpuChoice, rank_gpu_types, rent_first_available

# Host CUDA versions RunPod filters on (``allowedCudaVersions``), oldest first.
HOST_CUDA_VERSIONS = (
    "11.8",
    "12.0",
    "12.1",
    "12.2",
    "12.3",
    "12.4",
    "12.5",
    "12.6",
    "12.7",
    "12.8",
    "12.9",
    "13.0",
)
_CUDA_TAG = re.compile(r"cuda(\d+)\.(\d+)")


def image_cuda_versions(image: str) -> list[str] | None:
    """Host CUDA versions whose driver runs ``image`` (its tag's CUDA build or newer).

    ``runpod/pytorch:2.8.0-py3.11-cuda12.8.1-...`` needs a 12.8 driver or newer; None
    when the tag names no CUDA version (RunPod then picks any host).
    """
    found = _CUDA_TAG.search(image.rsplit("/", 1)[-1])
    if not found:
        return None
    built = (int(found.group(1)), int(found.group(2)))
    return [v for v in HOST_CUDA_VERSIONS if tuple(int(x) for x in v.split(".")) >= built] or None


def rank_training_gpus(
    options: Sequence[TrainingOption],
    catalogue: Sequence[dict[str, Any]],
    settings: RunPodComputeConfig,
) -> list[GpuChoice]:
    """The (GPU type, cloud type) pairs to try, in order, for the training pod.

    Args:
        options: The fitting options of the training plan (``check_runpod_training``).
        catalogue: RunPod's live ``gpuTypes`` rows (AMD parts and MIG slices are dropped).
        settings: ``compute.runpod``: ``gpu_types`` restricts and orders, ``cloud_type``.

    Returns:
        Choices to try in order; empty when no fitting type is rentable.
    """
    fitting = [str(o.runpod_gpu_id) for o in options if o.runpod_gpu_id]
    if settings.cloud_type == "ALL":
        return rank_gpu_types(fitting, catalogue, "SECURE", settings.gpu_types, other_cloud=True)
    return rank_gpu_types(fitting, catalogue, settings.cloud_type, settings.gpu_types)


def rent_training_pod(
    client: RunPodClient,
    *,
    name: str,
    options: Sequence[TrainingOption],
    settings: RunPodComputeConfig,
    docker_args: str,
    ports: str,
    env: dict[str, str],
    disk_gb: int,
    log: Callable[[str], None] = lambda _m: None,
) -> tuple[dict[str, Any], GpuChoice, int, float]:
    """Rent the training pod on the first ranked choice with capacity.

    Returns:
        The created pod, the choice it runs on, its GPU count and its price per hour (all
        GPUs: the spot bid for an interruptible pod).

    Raises:
        RunPodCapacityError: No choice had capacity, or none was rentable (nothing created).
    """
    counts = {str(o.runpod_gpu_id): o.gpu_count for o in options}
    choices = rank_training_gpus(options, client.get_gpu_types(), settings)
    log(
        "GPU types in order: "
        + ", ".join(
            f"{c.gpu_type_id} ({c.cloud_type}, ${c.usd_per_gpu_hour}/GPU-h)" for c in choices[:6]
        )
    )
    cuda = image_cuda_versions(settings.image)
    prices: dict[GpuChoice, float] = {}

    def create(choice: GpuChoice) -> dict[str, Any]:
        count = counts[choice.gpu_type_id]
        spec: dict[str, Any] = {
            "name": name,
            "image_name": settings.image,
            "gpu_type_id": choice.gpu_type_id,
            "gpu_count": count,
            "cloud_type": choice.cloud_type,
            "container_disk_in_gb": disk_gb,
            "docker_args": docker_args,
            "ports": ports,
            "env": env,
            "allowed_cuda_versions": cuda,
        }
        if settings.interruptible:
            bid = client.get_spot_bid(choice.gpu_type_id, count)
            if bid is None:
                raise RunPodCapacityError(f"no spot offer for {choice.gpu_type_id}")
            pod = client.create_spot_pod(bid_per_gpu=bid, **spec)
            prices[choice] = bid * count
        else:
            pod = client.create_pod(**spec)
            prices[choice] = float(choice.usd_per_gpu_hour or 0.0) * count
        return pod

    kind = "interruptible (spot) pod" if settings.interruptible else "pod"
    pod, choice = rent_first_available(choices, create, what=f"the training {kind} {name}")
    for skipped in choices[: choices.index(choice)]:
        log(f"no capacity for {skipped.gpu_type_id} ({skipped.cloud_type} cloud); tried the next")
    return pod, choice, counts[choice.gpu_type_id], prices[choice]
