"""How long a fine-tune would take on a rented GPU, from FLOPs: an estimate, not a measurement.

A transformer's training step costs about ``6 x parameters`` FLOPs per token for full
fine-tuning and ``4 x`` for LoRA/QLoRA (no weight gradients), plus ``2 x`` for recomputed
activations with gradient checkpointing. Divided by the GPU's dense bf16 tensor throughput
times a model-FLOPs utilisation typical of a small-batch TRL/PEFT run, that gives the hours
of the planned steps (pod start-up, evaluation and the merge are not included). The training
memory plan of a CPU run prices its list of GPUs to rent with it.
"""

from __future__ import annotations

import math

BF16_DENSE_TFLOPS: dict[str, float] = {
    "NVIDIA H100 80GB HBM3": 989.0,
    "NVIDIA H100 PCIe": 756.0,
    "NVIDIA H100 NVL": 835.0,
    "NVIDIA H200": 989.0,
    "NVIDIA B200": 2250.0,
    "NVIDIA A100-SXM4-80GB": 312.0,
    "NVIDIA A100 80GB PCIe": 312.0,
    "NVIDIA L40S": 362.0,
    "NVIDIA L40": 181.0,
    "NVIDIA RTX 6000 Ada Generation": 364.0,
    "NVIDIA RTX A6000": 155.0,
    "NVIDIA A40": 150.0,
    "NVIDIA RTX PRO 6000 Blackwell Server Edition": 500.0,
    "NVIDIA GeForce RTX 5090": 209.0,
    "NVIDIA GeForce RTX 4090": 165.0,
    "NVIDIA GeForce RTX 3090": 71.0,
    "NVIDIA RTX A5000": 111.0,
    "NVIDIA L4": 121.0,
}
"""Dense (no sparsity) bf16/fp16 tensor TFLOPS with fp32 accumulation per GPU, by RunPod
GPU type id, from NVIDIA's datasheets."""

MFU_LOW, MFU, MFU_HIGH = 0.15, 0.30, 0.45
"""Model-FLOPs utilisation of a small-batch TRL/PEFT fine-tune: its usual range (15-45 %)
and the middle, which single-figure estimates use."""

QLORA_SLOWDOWN = 0.6
"""QLoRA's 4-bit dequantisation costs about 40 % of the throughput."""


def training_flops_per_token(param_count: int, adapter: str, gradient_checkpointing: bool) -> float:
    """Training FLOPs per token: forward 2N, backward 2N (+2N weight gradients when full).

    Args:
        param_count: The model's parameters.
        adapter: ``lora``, ``qlora`` or ``full``.
        gradient_checkpointing: Whether activations are recomputed in backward (+2N).
    """
    factor = 6.0 if adapter == "full" else 4.0
    if gradient_checkpointing:
        factor += 2.0
    return factor * param_count


def planned_tokens_per_gpu(
    max_steps: int,
    num_train_epochs: float,
    n_train: int | None,
    *,
    batch_size: int,
    gradient_accumulation_steps: int,
    seq_len: int,
) -> int | None:
    """Tokens one GPU trains on in the planned steps, counting every row as ``seq_len`` long.

    Rows are at most ``seq_len`` tokens, so this is an upper bound. With data parallelism each
    GPU runs the same steps on its own rows, so the time does not shrink with the GPU count
    when ``max_steps`` is set.

    Args:
        max_steps: ``training.max_steps`` (-1 trains ``num_train_epochs``).
        num_train_epochs: Epochs when ``max_steps`` is -1.
        n_train: Train rows (needed when ``max_steps`` is -1), or None when not known.
        batch_size: Rows per GPU per forward pass.
        gradient_accumulation_steps: Forward passes per optimizer step.
        seq_len: ``data.max_length``.

    Returns:
        The token count, or None when the steps depend on a row count that is not known.
    """
    rows_per_step = batch_size * gradient_accumulation_steps
    if max_steps > 0:
        steps = max_steps
    elif n_train:
        steps = math.ceil(num_train_epochs * n_train / rows_per_step)
    else:
        return None
    return steps * rows_per_step * seq_len


def estimate_training_hours(
    tokens_per_gpu: int,
    flops_per_token: float,
    runpod_gpu_id: str | None,
    adapter: str,
) -> float | None:
    """Hours one GPU of a type needs for its share of the planned steps.

    Args:
        tokens_per_gpu: Tokens each GPU trains on (:func:`planned_tokens_per_gpu`).
        flops_per_token: :func:`training_flops_per_token`.
        runpod_gpu_id: The GPU's RunPod type id.
        adapter: ``qlora`` runs slower (:data:`QLORA_SLOWDOWN`).

    Returns:
        The hours, or None when the GPU's throughput is not in :data:`BF16_DENSE_TFLOPS`.
    """
    tflops = BF16_DENSE_TFLOPS.get(runpod_gpu_id or "")
    if tflops is None:
        return None
    speed = tflops * 1e12 * MFU * (QLORA_SLOWDOWN if adapter == "qlora" else 1.0)
    return tokens_per_gpu * flops_per_token / speed / 3600
