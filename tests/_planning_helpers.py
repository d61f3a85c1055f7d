"""Shared helpers for the planner tests: fixture configs and recorded NVML readings."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pynvml

from tuneship.planning.model_facts import ModelFacts, load_model_facts

FIXTURES = Path(__file__).parent / "fixtures" / "model-configs"
GIB = 1024**3


def fixture_path(name: str) -> Path:
    """Path of a fixture config, e.g. ``meta-llama--Llama-3.2-3B-Instruct``."""
    return FIXTURES / f"{name}.json"


def fixture_facts(name: str) -> ModelFacts:
    """Model facts of a fixture config."""
    return load_model_facts(fixture_path(name))


def official_sizes() -> dict[str, dict[str, int]]:
    """Official parameter counts and weight bytes of the fixture models."""
    data: dict[str, dict[str, int]] = json.loads(
        (FIXTURES / "official_sizes.json").read_text("utf-8")
    )["models"]
    return data


def nvml_error(code: int) -> pynvml.NVMLError:
    """A real pynvml error for an NVML return code (NVMLError maps codes to subclasses)."""
    return pynvml.NVMLError(code)


class RecordedNvml:
    """A stand-in for the ``pynvml`` module that replays recorded device readings.

    Each device is a dict with ``name`` (bytes or str, as old and new bindings return),
    ``uuid``, ``total``, ``free``, ``util`` (int, or an NVML error code to raise) and an
    optional ``lost`` error code raised when the handle is requested.
    """

    NVMLError = pynvml.NVMLError

    def __init__(self, devices: list[dict[str, Any]], init_error: int | None = None) -> None:
        self.devices = devices
        self.init_error = init_error
        self.initialised = False
        self.shutdowns = 0

    def nvmlInit(self) -> None:  # noqa: N802 - mirrors pynvml
        if self.init_error is not None:
            raise nvml_error(self.init_error)
        self.initialised = True

    def nvmlShutdown(self) -> None:  # noqa: N802
        if not self.initialised:
            raise nvml_error(pynvml.NVML_ERROR_UNINITIALIZED)
        self.shutdowns += 1
        self.initialised = False

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> dict[str, Any]:  # noqa: N802
        device = self.devices[index]
        if device.get("lost") is not None:
            raise nvml_error(device["lost"])
        return device

    def nvmlDeviceGetName(self, handle: dict[str, Any]) -> Any:  # noqa: N802
        return handle["name"]

    def nvmlDeviceGetUUID(self, handle: dict[str, Any]) -> Any:  # noqa: N802
        return handle["uuid"]

    def nvmlDeviceGetMemoryInfo(self, handle: dict[str, Any]) -> SimpleNamespace:  # noqa: N802
        return SimpleNamespace(
            total=handle["total"], free=handle["free"], used=handle["total"] - handle["free"]
        )

    def nvmlDeviceGetUtilizationRates(self, handle: dict[str, Any]) -> SimpleNamespace:  # noqa: N802
        util = handle["util"]
        if isinstance(util, tuple):
            raise nvml_error(util[0])
        return SimpleNamespace(gpu=util, memory=0)
