"""The local compute provider and the per-GPU concurrency slots."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import pytest

from tuneship.compute.base import ComputeHandle
from tuneship.compute.local import LocalProvider, get_provider, slot_name_for
from tuneship.errors import ComputeError


@dataclass
class RecordedGpu:
    """One NVML reading as recorded from a real machine (index, name, memory, load)."""

    index: int
    name: str
    uuid: str
    total_bytes: int
    free_bytes: int
    utilization: int


GIB = 1024**3
# Two RTX 4090s: GPU 0 busy with another process (seed 002's 17.88 of 23.56 GiB free).
READINGS = [
    RecordedGpu(
        0, "NVIDIA GeForce RTX 4090", "GPU-aaaa-0000", int(23.56 * GIB), int(17.88 * GIB), 63
    ),
    RecordedGpu(
        1, "NVIDIA GeForce RTX 4090", "GPU-bbbb-1111", int(23.56 * GIB), int(23.1 * GIB), 0
    ),
]


def _pick(gpus, count):  # type: ignore[no-untyped-def]
    return sorted(gpus, key=lambda g: (-g.free_bytes, g.utilization))[:count]


def test_no_gpu_falls_back_to_cpu_cleanly() -> None:
    handle = LocalProvider(list_gpus=list).provision(device="auto", gpu_count=1)
    assert handle.device == "cpu" and handle.slot_names == []
    assert "no GPU" in handle.note


def test_this_machine_without_nvml_is_a_clean_cpu_fallback() -> None:
    # The real NVML path: on a machine without the driver this must not raise.
    handle = get_provider("local").provision(device="auto", gpu_count=1)
    assert handle.device in {"cpu", "cuda"}


def test_cuda_required_without_gpu_is_an_error() -> None:
    with pytest.raises(ComputeError, match="no NVIDIA GPU"):
        LocalProvider(list_gpus=list).provision(device="cuda", gpu_count=1)


def test_picks_the_least_loaded_gpu_and_one_slot_per_device() -> None:
    provider = LocalProvider(list_gpus=lambda: list(READINGS), pick_gpus=_pick)
    handle = provider.provision(device="auto", gpu_count=1)
    assert handle.device == "cuda" and handle.gpu_indices == [1]
    assert handle.slot_names == [slot_name_for(handle.host, READINGS[1])]
    both = provider.provision(device="cuda", gpu_count=2)
    assert sorted(both.gpu_indices) == [0, 1] and len(set(both.slot_names)) == 2
    with pytest.raises(ComputeError, match="has 2 GPU"):
        provider.provision(device="cuda", gpu_count=3)


def test_cpu_requested_ignores_gpus() -> None:
    handle = LocalProvider(list_gpus=lambda: list(READINGS)).provision(device="cpu", gpu_count=1)
    assert handle.device == "cpu"


def test_unknown_provider_is_an_error() -> None:
    with pytest.raises(ComputeError, match="not available"):
        get_provider("moon")


@pytest.mark.usefixtures("prefect_harness")
def test_two_runs_never_hold_the_same_gpu_at_once() -> None:
    from tuneship.tasks.compute import hold_gpu_slots

    handle = ComputeHandle(
        provider="local",
        device="cuda",
        gpu_indices=[0],
        gpu_names=["x"],
        slot_names=["tuneship-gpu-test-0"],
        host="h",
    )
    inside = 0
    overlap: list[int] = []
    lock = threading.Lock()

    def job() -> None:
        nonlocal inside
        with hold_gpu_slots(handle, timeout_s=60):
            with lock:
                inside += 1
                overlap.append(inside)
            time.sleep(0.5)
            with lock:
                inside -= 1

    threads = [threading.Thread(target=job) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlap == [1, 1]
