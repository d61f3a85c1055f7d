"""Local GPUs through NVML: recorded readings, failures, and the real no-GPU path."""

from __future__ import annotations

from pathlib import Path

import pynvml
import pytest
from _planning_helpers import GIB, RecordedNvml, fixture_facts

from tuneship.errors import ComputeError
from tuneship.planning.inventory import LocalGpu, list_local_gpus, pick_least_loaded
from tuneship.planning.serving import ServeRequest, evaluate_option

# Seed 002: a 24 GB card whose vLLM start-up saw 17.88 of 23.56 GiB free (a zombie process
# held 4.7 GB); next to it an idle A6000 and a busy one, as nvidia-smi would show them.
RECORDED = [
    {
        "name": b"NVIDIA GeForce RTX 4090",
        "uuid": b"GPU-5d3c1a2e-0000-4000-8000-000000000000",
        "total": int(23.56 * GIB),
        "free": int(17.88 * GIB),
        "util": 35,
    },
    {
        "name": "NVIDIA RTX A6000",
        "uuid": "GPU-8e1f6b7a-0000-4000-8000-000000000001",
        "total": 51_527_024_640,
        "free": 50_982_125_568,
        "util": 0,
    },
    {
        "name": "NVIDIA RTX A6000",
        "uuid": "GPU-8e1f6b7a-0000-4000-8000-000000000002",
        "total": 51_527_024_640,
        "free": 50_982_125_568,
        "util": 87,
    },
]


def test_recorded_readings_become_local_gpus() -> None:
    nvml = RecordedNvml(RECORDED)
    gpus = list_local_gpus(nvml)
    assert [g.index for g in gpus] == [0, 1, 2]
    first = gpus[0]
    assert first.name == "NVIDIA GeForce RTX 4090"  # bytes from old bindings decoded
    assert first.uuid.startswith("GPU-5d3c")
    assert round(first.free_gib, 2) == 17.88 and round(first.total_gib, 2) == 23.56
    assert first.utilization == 35
    assert nvml.shutdowns == 1


def test_least_loaded_prefers_free_memory_then_low_utilisation() -> None:
    gpus = list_local_gpus(RecordedNvml(RECORDED))
    assert [g.index for g in pick_least_loaded(gpus, 1)] == [1]  # idle A6000, not the busy one
    assert [g.index for g in pick_least_loaded(gpus, 2)] == [1, 2]
    assert [g.index for g in pick_least_loaded(gpus, 3)] == [1, 2, 0]
    roomy = pick_least_loaded(gpus, 1, min_free_bytes=40 * GIB)
    assert roomy[0].index == 1
    with pytest.raises(ComputeError, match=r"need 3 local GPU\(s\) with at least 40.00 GiB"):
        pick_least_loaded(gpus, 3, min_free_bytes=40 * GIB)


def test_unknown_utilisation_ranks_after_known() -> None:
    devices = [dict(RECORDED[1], util=(pynvml.NVML_ERROR_NOT_SUPPORTED,)), dict(RECORDED[1])]
    gpus = list_local_gpus(RecordedNvml(devices))
    assert gpus[0].utilization is None
    assert pick_least_loaded(gpus, 1)[0].index == 1


@pytest.mark.parametrize(
    "code",
    [
        pynvml.NVML_ERROR_LIBRARY_NOT_FOUND,
        pynvml.NVML_ERROR_DRIVER_NOT_LOADED,
        pynvml.NVML_ERROR_NO_PERMISSION,
    ],
)
def test_init_failures_mean_no_gpus(code: int) -> None:
    nvml = RecordedNvml(RECORDED, init_error=code)
    assert list_local_gpus(nvml) == []
    assert nvml.shutdowns == 0


def test_a_lost_gpu_is_left_out_and_the_rest_kept() -> None:
    devices = [dict(RECORDED[0], lost=pynvml.NVML_ERROR_GPU_IS_LOST), RECORDED[1]]
    gpus = list_local_gpus(RecordedNvml(devices))
    assert [g.index for g in gpus] == [1]


@pytest.mark.skipif(Path("/dev/nvidia0").exists(), reason="this machine has a GPU")
def test_real_nvml_without_a_gpu_returns_empty() -> None:
    assert list_local_gpus() == []


def test_local_gpu_plans_within_its_free_memory() -> None:
    gpu = list_local_gpus(RecordedNvml(RECORDED))[0].to_gpu_spec()
    assert gpu.name == "RTX 4090 (local #0)"
    assert gpu.free_gib is not None and gpu.free_gib < 17.88  # less vLLM's CUDA context
    facts = fixture_facts("meta-llama--Llama-3.2-3B-Instruct")
    option = evaluate_option(facts, gpu, 1)
    assert option.gpu_memory_utilization is not None
    assert option.gpu_memory_utilization * gpu.total_gib <= gpu.free_gib
    asked = evaluate_option(facts, gpu, 1, ServeRequest(gpu_memory_utilization=0.8))
    assert not asked.fits and "free at start" in asked.reasons[0]


def test_local_gpu_dataclass_units() -> None:
    gpu = LocalGpu(0, "x", "GPU-1", 2 * GIB, GIB, None)
    assert (gpu.total_gib, gpu.free_gib) == (2.0, 1.0)
    assert gpu.to_gpu_spec().name == "x (local #0)"
