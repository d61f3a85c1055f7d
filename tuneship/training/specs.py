"""Serialisable job specs and results for the training and merge stages.

A spec holds everything one stage needs (paths and settings, no Python objects), so the
same stage runs in-process or in a rented pod from ``python -m tuneship.training.job``.
Results are small (paths and numbers) so they fit in a Prefect task result.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from tuneship.config import PipelineConfig, TrainingConfig

if TYPE_CHECKING:
    from tuneship.compute.base import ComputeHandle
    from tuneship.data import PreparedData

TrainerFormat = Literal["messages", "prompt_completion", "preference"]
ModelDtype = Literal["auto", "float32", "bfloat16", "float16"]
Device = Literal["cpu", "cuda"]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TrainJobSpec(_Spec):
    """Everything one training run needs, as JSON-serialisable values."""

    model_path: str = Field(description="Local folder of the base model (config + tokenizer).")
    train_path: str = Field(description="JSONL file of training rows.")
    eval_path: str | None = Field(None, description="JSONL file of eval rows, or None.")
    trainer_format: TrainerFormat = Field(description="Row format of the JSONL files.")
    output_dir: str = Field(description="Folder for checkpoints; the result goes to <it>/final.")
    training: TrainingConfig = Field(default_factory=lambda: TrainingConfig())
    max_length: int = Field(1024, ge=8, description="Token length at which rows are truncated.")
    model_dtype: ModelDtype = Field("auto", description="Dtype to load the base in (CUDA only).")
    device: Device = Field("cpu", description="Train on the CPU or on CUDA GPUs.")
    cuda_devices: list[int] = Field(
        default_factory=list, description="CUDA device indices to use (empty: all visible)."
    )
    trust_remote_code: bool = Field(False, description="Allow custom modelling code.")


class TrainProgress(_Spec):
    """One progress report from a running training job."""

    step: int
    max_steps: int
    epoch: float | None = None
    logs: dict[str, float] = Field(default_factory=dict)


class TrainResult(_Spec):
    """What a training run produced (small: paths and numbers)."""

    output_path: str = Field(description="Folder with the adapter (or full model) and tokenizer.")
    is_adapter: bool
    method: str
    adapter: str
    global_step: int
    train_loss: float | None = None
    base_eval_loss: float | None = Field(None, description="Eval loss before training.")
    eval_loss: float | None = Field(None, description="Eval loss of the final (best) model.")
    eval_metrics: dict[str, float] = Field(
        default_factory=dict,
        description="Every eval metric of the final model (e.g. DPO's eval_rewards/accuracies).",
    )
    best_checkpoint: str | None = None
    resumed_from: str | None = None
    notes: list[str] = Field(default_factory=list)
    loss_history: list[tuple[int, float]] = Field(default_factory=list)
    eval_loss_history: list[tuple[int, float]] = Field(default_factory=list)


class MergeJobSpec(_Spec):
    """Everything one merge (or full-model export) needs."""

    base_model_path: str = Field(description="Local folder of the base model.")
    adapter_path: str = Field(
        description="Training output: a LoRA adapter folder, or a full model when is_adapter=false."
    )
    output_dir: str = Field(description="Folder to write the merged model into (replaced).")
    is_adapter: bool = Field(True, description="False for a full fine-tune: save, no merge.")
    eval_path: str | None = Field(None, description="JSONL rows to verify the merge on.")
    train_path: str | None = Field(None, description="Fallback rows when eval_path is None.")
    check_rows: int = Field(4, ge=1, description="Rows whose logits are compared.")
    max_length: int = Field(128, ge=8, description="Tokens per verification row.")
    max_shard_size: str = Field("5GB", description="Largest safetensors shard, e.g. '5GB'.")
    dtype: ModelDtype = Field("auto", description="Output dtype; 'auto' keeps the base's dtype.")
    device: Device = Field("cpu", description="Where to run the merge and verification.")
    tolerance: float | None = Field(
        None, gt=0, description="Max abs logit difference allowed; default depends on dtype."
    )
    trust_remote_code: bool = False


class MergeResult(_Spec):
    """What a merge produced and how closely it matches base + adapter."""

    merged_dir: str
    max_abs_logit_diff: float
    tolerance: float
    checked_rows: int
    dtype: str
    merged: bool = Field(description="True when an adapter was merged, False for a full model.")


MERGE_CHECK_MAX_LENGTH = 128
"""Tokens per row the merge self-check compares (enough to catch a bad merge, and fast)."""


def build_train_spec(
    config: PipelineConfig, base_model_dir: str, prepared: PreparedData, handle: ComputeHandle
) -> TrainJobSpec:
    """Return the training job of a pipeline run.

    Args:
        config: The run's configuration.
        base_model_dir: Local folder of the base model.
        prepared: The prepared train/eval split.
        handle: The compute the job runs on.

    Returns:
        The job spec; its checkpoints go to ``<run dir>/train``.
    """
    return TrainJobSpec(
        model_path=base_model_dir,
        train_path=prepared.train_path,
        eval_path=prepared.eval_path,
        trainer_format=prepared.trainer_format,
        output_dir=str(config.run_dir() / "train"),
        training=config.training,
        max_length=config.data.max_length,
        model_dtype=config.model.dtype,
        device=handle.device,
        cuda_devices=handle.gpu_indices,
        trust_remote_code=config.model.trust_remote_code,
    )


def build_merge_spec(
    config: PipelineConfig, base_model_dir: str, trained: TrainResult, prepared: PreparedData
) -> MergeJobSpec:
    """Return the merge job (merge the adapter, or export a full model) of a pipeline run.

    Args:
        config: The run's configuration.
        base_model_dir: Local folder of the base model.
        trained: What the training job produced.
        prepared: The prepared split, whose rows verify the merge.

    Returns:
        The job spec; the merged model goes to ``<run dir>/merged``.
    """
    return MergeJobSpec(
        base_model_path=base_model_dir,
        adapter_path=trained.output_path,
        is_adapter=trained.is_adapter,
        output_dir=str(config.run_dir() / "merged"),
        eval_path=prepared.eval_path,
        train_path=prepared.train_path,
        dtype=config.model.dtype,
        trust_remote_code=config.model.trust_remote_code,
        max_length=min(config.data.max_length, MERGE_CHECK_MAX_LENGTH),
    )
