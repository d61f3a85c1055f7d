"""What a RunPod training run will cost before renting, and whether it is over budget.

The time estimate is FLOP-based, not measured: a transformer's training step costs about
``6 x parameters`` FLOPs per token for full fine-tuning and ``4 x`` for LoRA/QLoRA (no
weight gradients), plus ``2 x`` for recomputed activations with gradient checkpointing.
Divided by the GPU's dense bf16 tensor throughput times a model-FLOPs utilisation (MFU)
between :data:`MFU_LOW` and :data:`MFU_HIGH`, that gives a range of hours; price x hours
gives the cost range. Pod start-up, evaluation and the merge are covered by a fixed
overhead range. Nothing here talks to RunPod.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tuneship.config import PipelineConfig
from tuneship.errors import ComputeError
from tuneship.planning.training_time import (
    BF16_DENSE_TFLOPS,
    MFU_HIGH,
    MFU_LOW,
    QLORA_SLOWDOWN,
    training_flops_per_token,
)
from tuneship.planning.training_time import MFU as MFU_MID

if TYPE_CHECKING:
    from tuneship.compute.runpod_plan import RunPodTrainingChoice
    from tuneship.data import PreparedData

OVERHEAD_HOURS = (0.1, 0.2, 0.4)
"""Pod start-up (image pull, install, downloads), evaluations and the merge: low, mid, high."""


@dataclass(frozen=True)
class CostEstimate:
    """A training run's estimated time and cost on one GPU option, with its range."""

    gpu_type_id: str
    gpu_count: int
    usd_per_hour: float
    tokens: int
    hours: float
    hours_low: float
    hours_high: float

    @property
    def usd(self) -> float:
        """Cost at the middle estimate."""
        return round(self.hours * self.usd_per_hour, 2)

    @property
    def usd_low(self) -> float:
        """Cost at the fast end of the range."""
        return round(self.hours_low * self.usd_per_hour, 2)

    @property
    def usd_high(self) -> float:
        """Cost at the slow end of the range."""
        return round(self.hours_high * self.usd_per_hour, 2)

    def describe(self) -> str:
        """One line: time and cost with their range."""
        return (
            f"about {_hours(self.hours)} ({_hours(self.hours_low)}-{_hours(self.hours_high)}) "
            f"and ${self.usd:.2f} (${self.usd_low:.2f}-${self.usd_high:.2f}) on "
            f"{self.gpu_count} x {self.gpu_type_id} for ~{self.tokens:,} training tokens "
            "(FLOP-based estimate, not measured)"
        )


def _hours(value: float) -> str:
    return f"{value * 60:.0f} min" if value < 1 else f"{value:.1f} h"


def training_tokens(config: PipelineConfig, n_train: int, mean_row_tokens: float | None) -> int:
    """Tokens the run trains on: steps x rows per step x tokens per row (all epochs).

    Args:
        config: The run's configuration.
        n_train: Training rows.
        mean_row_tokens: Mean tokens per row (capped at ``data.max_length``); None assumes
            every row is ``data.max_length`` long (an upper bound).
    """
    per_row = min(mean_row_tokens or config.data.max_length, config.data.max_length)
    training = config.training
    if training.max_steps > 0:
        rows = (
            training.max_steps
            * training.per_device_train_batch_size
            * training.gradient_accumulation_steps
            * config.compute.gpu_count
        )
    else:
        rows = int(training.num_train_epochs * n_train)
    return int(rows * per_row)


def tokens_per_step(config: PipelineConfig, mean_row_tokens: float | None) -> float:
    """Training tokens one optimizer step processes (rows per step x tokens per row)."""
    training = config.training
    rows = (
        training.per_device_train_batch_size
        * training.gradient_accumulation_steps
        * config.compute.gpu_count
    )
    return rows * min(mean_row_tokens or config.data.max_length, config.data.max_length)


def estimate_training_cost(
    config: PipelineConfig,
    *,
    param_count: int,
    gpu_type_id: str,
    gpu_count: int,
    usd_per_hour: float,
    tokens: int,
) -> CostEstimate | None:
    """Estimate a run's hours and cost on one GPU option.

    Returns:
        The estimate, or None when the GPU's throughput is unknown.
    """
    tflops = BF16_DENSE_TFLOPS.get(gpu_type_id)
    if tflops is None:
        return None
    work = tokens * training_flops_per_token(
        param_count, config.training.adapter, config.training.gradient_checkpointing
    )
    speed = tflops * 1e12 * gpu_count
    if config.training.adapter == "qlora":
        speed *= QLORA_SLOWDOWN

    def hours_at(mfu: float, overhead: float) -> float:
        return work / (speed * mfu) / 3600 + overhead

    low, mid, high = OVERHEAD_HOURS
    return CostEstimate(
        gpu_type_id=gpu_type_id,
        gpu_count=gpu_count,
        usd_per_hour=usd_per_hour,
        tokens=tokens,
        hours=hours_at(MFU_MID, mid),
        hours_low=hours_at(MFU_HIGH, low),
        hours_high=hours_at(MFU_LOW, high),
    )


def estimate_choice_cost(
    config: PipelineConfig,
    base_model_dir: str | Path,
    choice: RunPodTrainingChoice,
    prepared: PreparedData,
    top: int = 3,
) -> list[CostEstimate]:
    """Estimates for the first ``top`` GPU options a run would try (unknown GPUs left out).

    Args:
        config: The run's configuration.
        base_model_dir: Local folder of the base model (its config.json gives the size).
        choice: The ranked GPU options.
        prepared: The prepared split (rows and mean tokens per row).
        top: How many options to estimate.
    """
    from tuneship.planning import load_model_facts

    params = load_model_facts(base_model_dir).param_count
    tokens = training_tokens(config, prepared.n_train, prepared.report.mean_row_tokens)
    found = []
    for option in choice.options[:top]:
        estimate = estimate_training_cost(
            config,
            param_count=params,
            gpu_type_id=str(option.runpod_gpu_id),
            gpu_count=option.gpu_count,
            usd_per_hour=float(option.usd_per_hour or 0.0),
            tokens=tokens,
        )
        if estimate is not None:
            found.append(estimate)
    return found


@dataclass(frozen=True)
class Spend:
    """Money and pod time a run used so far, all pods together."""

    usd: float
    hours: float


class BudgetExceededError(ComputeError):
    """``compute.runpod.max_usd`` or ``max_hours`` was reached; the run stops spending."""


def budget_exceeded(config: PipelineConfig, spend: Spend) -> str | None:
    """Say which of ``max_usd``/``max_hours`` the spend reached, or None when within both."""
    settings = config.compute.runpod
    if spend.usd >= settings.max_usd:
        return f"compute.runpod.max_usd={settings.max_usd:g} reached (${spend.usd:.2f} spent)"
    if spend.hours >= settings.max_hours:
        return (
            f"compute.runpod.max_hours={settings.max_hours:g} reached ({spend.hours:.2f} h of "
            "pod time)"
        )
    return None
