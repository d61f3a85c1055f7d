"""Task: plan training memory before training, on the GPUs the run was given."""

from __future__ import annotations

from prefect.artifacts import create_table_artifact

from tuneship.compute.base import ComputeHandle
from tuneship.config import PipelineConfig
from tuneship.tasks._common import artifact_key, get_logger, pipeline_task


@pipeline_task(
    "plan-training-memory", run_name="plan-memory-{config.training.adapter}-{config.name}"
)
def plan_training_memory(
    config: PipelineConfig, base_model_dir: str, handle: ComputeHandle
) -> float:
    """Estimate training's peak GPU memory and stop now if the given GPU cannot hold it.

    On a CUDA handle the plan is made for the GPU that was provisioned (free memory as NVML
    reads it) and must fit. On the CPU the plan lists the cheapest rentable GPUs instead, as
    information.

    Args:
        config: The run's configuration.
        base_model_dir: Local folder of the base model (its config.json is read).
        handle: The provisioned compute.

    Returns:
        The estimated peak memory per GPU in GiB.

    Raises:
        PlanningError: The provisioned GPU cannot hold the training run.
    """
    from tuneship.planning import (
        list_local_gpus,
        load_model_facts,
        plan_table_rows,
        plan_training,
    )

    facts = load_model_facts(base_model_dir)
    gpus = None
    if handle.device == "cuda":
        gpus = [g.to_gpu_spec() for g in list_local_gpus() if g.index in handle.gpu_indices][:1]
    plan = plan_training(
        facts,
        config.training.adapter,
        seq_len=config.data.max_length,
        batch_size=config.training.per_device_train_batch_size,
        gradient_checkpointing=config.training.gradient_checkpointing,
        lora_r=config.training.lora.r,
        gpus=gpus or None,
        counts=(1,) if gpus else (1, 2, 4, 8),
    )
    if gpus:
        description = f"Training memory plan: peak {plan.peak_gib:.2f} GiB on the given GPU"
    else:
        description = (
            f"Training runs on the CPU here; GPUs you could rent for it (peak "
            f"{plan.peak_gib:.2f} GiB per GPU), cheapest first"
        )
    create_table_artifact(
        table=plan_table_rows(plan, rent_list=not gpus),
        key=artifact_key(config.name, "training-memory-plan"),
        description=description,
    )
    get_logger().info("training memory: peak %.2f GiB per GPU", plan.peak_gib)
    if gpus:
        plan.ensure_fits()
    return float(plan.peak_gib)
