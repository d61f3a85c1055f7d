"""Tasks: provision compute and hold one concurrency slot per GPU while training."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress

from tuneship.compute.base import ComputeHandle
from tuneship.compute.local import get_provider
from tuneship.config import ComputeConfig
from tuneship.tasks._common import GPU_RETRY, get_logger, pipeline_task


@pipeline_task("provision-gpu", GPU_RETRY, run_name="provision-{compute.device}")
def provision_compute(compute: ComputeConfig) -> ComputeHandle:
    """Choose the devices the training job runs on (CPU when there is no GPU).

    Args:
        compute: The ``compute`` config section.

    Returns:
        The handle the training task runs on.
    """
    handle = get_provider(compute.provider).provision(
        device=compute.device, gpu_count=compute.gpu_count
    )
    get_logger().info(
        "compute: %s on %s %s (%s)",
        handle.provider,
        handle.device,
        handle.gpu_names or "",
        handle.note,
    )
    return handle


@contextmanager
def hold_gpu_slots(handle: ComputeHandle, timeout_s: float | None = None) -> Iterator[None]:
    """Hold one Prefect concurrency slot per GPU so two runs never train on the same GPU.

    Each GPU gets a global concurrency limit of 1, created on first use. A CPU handle
    holds nothing.

    Args:
        handle: The provisioned compute.
        timeout_s: How long to wait for a GPU that another run is using.

    Yields:
        Nothing; the slots are held inside the ``with`` block.
    """
    if not handle.slot_names:
        yield
        return
    from prefect.client.orchestration import get_client
    from prefect.concurrency.sync import concurrency
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client:
        for name in handle.slot_names:
            # Another run may create it between the read and the create inside upsert.
            with suppress(ObjectAlreadyExists):
                client.upsert_global_concurrency_limit_by_name(name, limit=1)

    with concurrency(handle.slot_names, occupy=1, timeout_seconds=timeout_s, strict=True):
        yield
