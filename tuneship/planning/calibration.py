"""The planner against measured vLLM start-ups (``data/calibration.json``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any

from tuneship.planning.gpus import find_gpu
from tuneship.planning.model_facts import facts_from_config
from tuneship.planning.serving import ServeRequest, evaluate_option


@dataclass(frozen=True)
class CalibrationResult:
    """One measured point and what the planner predicts for it."""

    point_id: str
    model: str
    setting: str
    measured_kv_cache_gib: float
    predicted_kv_cache_gib: float
    measured_kv_tokens: int | None
    predicted_kv_tokens: int
    kind: str
    source: str

    @property
    def kv_error(self) -> float:
        """Relative error of the predicted KV cache size (+ = over-predicted)."""
        return self.predicted_kv_cache_gib / self.measured_kv_cache_gib - 1

    @property
    def tokens_error(self) -> float | None:
        """Relative error of the predicted KV token capacity, when vLLM logged one."""
        if not self.measured_kv_tokens:
            return None
        return self.predicted_kv_tokens / self.measured_kv_tokens - 1


def load_calibration_data() -> dict[str, Any]:
    """The shipped calibration data (points, model facts, sources)."""
    text = (resources.files("tuneship.planning") / "data" / "calibration.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def run_calibration() -> list[CalibrationResult]:
    """Predict every calibration point with the planner.

    Each point is planned at its own vLLM version, GPU memory, TP and memory fraction;
    the planner's weights come from the official total_size (or the config).

    Returns:
        One result per point, in file order.
    """
    data = load_calibration_data()
    results = []
    for point in data["points"]:
        model = data["models"][point["model"]]
        weight = model.get("weight_bytes")
        facts = facts_from_config(
            model["config"],
            point["model"],
            (int(weight), "official total_size") if weight else None,
        )
        gpu = replace(find_gpu(point["gpu"]), total_gib=float(point["gpu_total_gib"]))
        option = evaluate_option(
            facts,
            gpu,
            int(point["tensor_parallel_size"]),
            ServeRequest(
                gpu_memory_utilization=float(point["gpu_memory_utilization"]),
                kv_cache_dtype=point["kv_cache_dtype"],
                vllm_version=point["vllm_version"],
                min_model_len=1,
            ),
        )
        results.append(
            CalibrationResult(
                point_id=point["id"],
                model=point["model"],
                setting=(
                    f"{point['gpu']} {point['gpu_total_gib']} GiB, "
                    f"TP {point['tensor_parallel_size']}, "
                    f"util {point['gpu_memory_utilization']}, vLLM {point['vllm_version']}, "
                    f"KV {point['kv_cache_dtype']}"
                ),
                measured_kv_cache_gib=float(point["measured_kv_cache_gib"]),
                predicted_kv_cache_gib=option.kv_cache_gib,
                measured_kv_tokens=point.get("measured_kv_tokens"),
                predicted_kv_tokens=option.kv_tokens,
                kind=point["kind"],
                source=data["sources"][point["source"]],
            )
        )
    return results
