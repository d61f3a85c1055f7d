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
    config: PipelineConfig, base_model_dir: str, handle: ComputeHandle, n_train: int | None = None
) -> float:
    """Estimate training's peak GPU memory and stop now if the given GPU cannot hold it.

    On a CUDA handle the plan is made for the GPU that was provisioned (free memory as NVML
    reads it) and must fit. On the CPU the plan lists the cheapest rentable GPUs instead, as
    information, each with the estimated time and cost of the planned steps on it.

    Args:
        config: The run's configuration.
        base_model_dir: Local folder of the base model (its config.json is read).
        handle: The provisioned compute.
        n_train: Train rows, for the number of steps when ``training.max_steps`` is -1.

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
    from tuneship.planning.training_time import MFU, planned_tokens_per_gpu

    facts = load_model_facts(base_model_dir)
    training = config.training
    tokens = planned_tokens_per_gpu(
        training.max_steps,
        training.num_train_epochs,
        n_train,
        batch_size=training.per_device_train_batch_size,
        gradient_accumulation_steps=training.gradient_accumulation_steps,
        seq_len=config.data.max_length,
    )
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
        tokens_per_gpu=None if gpus else tokens,
    )
    if gpus:
        description = f"Training memory plan: peak {plan.peak_gib:.2f} GiB on the given GPU"
    else:
        cost_basis = (
            f"; time and cost of the planned {tokens:,} tokens per GPU (rows counted at "
            f"data.max_length), estimated from FLOPs at {MFU:.0%} utilisation, start-up not "
            "included; price: a RunPod pod's, or its serverless rate where no pod price is "
            "known"
            if tokens
            else ""
        )
        description = (
            f"Training runs on the CPU here; GPUs you could rent for it (peak "
            f"{plan.peak_gib:.2f} GiB per GPU), cheapest first{cost_basis}"
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
