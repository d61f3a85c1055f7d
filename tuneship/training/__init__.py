"""Training, evaluation and merging, run from serialisable job specs (no Prefect here).

Heavy libraries (torch, transformers, TRL, PEFT) load only when a stage runs, so
importing this package is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tuneship.training.checks import check_training_spec
from tuneship.training.series import downsample_series
from tuneship.training.specs import (
    MergeJobSpec,
    MergeResult,
    TrainJobSpec,
    TrainProgress,
    TrainResult,
)

if TYPE_CHECKING:
    from tuneship.training.merge import run_merge
    from tuneship.training.train import run_training

__all__ = [
    "MergeJobSpec",
    "MergeResult",
    "TrainJobSpec",
    "TrainProgress",
    "TrainResult",
    "check_training_spec",
    "downsample_series",
    "run_merge",
    "run_training",
]


def __getattr__(name: str) -> Any:
    if name == "run_training":
        from tuneship.training.train import run_training

        return run_training
    if name == "run_merge":
        from tuneship.training.merge import run_merge

        return run_merge
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
