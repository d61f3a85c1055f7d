"""Training memory plan: peak GPU memory for LoRA, QLoRA and full fine-tuning, and the
cheapest GPU type and count that holds it.

Parts, per GPU (vllm-memory.md section 5; docs/planner.md explains each):

- base weights: 16-bit (2 B/param), or for QLoRA NF4 at 0.5 B/param plus 0.127 bit/param
  of double-quantised constants on the decoder Linears, embeddings/lm_head/norms 16-bit
  (QLoRA paper, Dettmers et al. 2023);
- trainable parameters, gradients and AdamW states: LoRA adapters are kept in fp32 with
  fp32 gradients and two fp32 moments, 16 B/param; full fine-tuning uses mixed precision,
  16 B/param in all (ZeRO paper's 2 + 2 + 12: 16-bit weights and gradients, fp32 master
  weights and moments);
- activations (Korthikanti et al. 2022, arXiv 2205.05198, with flash/SDPA attention so
  the ``5as/h`` score term is not stored): ``34·s·b·h`` bytes per layer without gradient
  checkpointing; ``2·s·b·h`` per layer plus one layer's ``34·s·b·h`` working set with it;
- logits: ``b·s·V`` x (2 B bf16 logits + 4 B fp32 upcast for the loss + 4 B fp32 gradient);
- CUDA context and kernels: 1 GiB (0.5-1 GB measured; upper end).

With several GPUs the weights and optimizer state are sharded (FSDP full-shard / ZeRO-3);
activations stay per GPU. A plan fits when the peak is at most 90 % of the GPU's memory:
the caching allocator fragments (seed 000: 10.67 GB reserved but unallocated at an OOM).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from tuneship.errors import PlanningError
from tuneship.planning.gpus import CUDA_CONTEXT_GIB, GIB, GpuSpec, load_gpu_catalog
from tuneship.planning.model_facts import ModelFacts
from tuneship.planning.parameters import parameter_breakdown
from tuneship.planning.training_time import estimate_training_hours, training_flops_per_token

Method = Literal["lora", "qlora", "full"]


def _round_significant(value: float, digits: int = 3) -> float:
    # A tiny model's run costs a fraction of a cent: fixed decimals would show 0.
    return float(f"{value:.{digits}g}")


NF4_BYTES_PER_PARAM = 0.5 + 0.127 / 8
"""NF4 weights (4 bits) plus double-quantised constants (0.127 bit/param, QLoRA paper)."""

LORA_STATE_BYTES_PER_PARAM = 16
"""fp32 adapter weights 4 + fp32 gradients 4 + AdamW moments 8 (vllm-memory.md 5.1)."""

FULL_MASTER_BYTES, FULL_GRAD_BYTES, FULL_OPTIMIZER_BYTES = 4, 2, 8
"""Mixed-precision AdamW beyond the 16-bit weights: fp32 master copy, 16-bit gradients,
two fp32 moments; 2 + 4 + 2 + 8 = 16 B/param (ZeRO, Rajbhandari et al. 2019; 16-18 B/param
in vllm-memory.md 5.1)."""

ACTIVATION_FACTOR_NO_CHECKPOINTING = 34
"""Bytes per ``s·b·h`` per layer kept for backward, 16-bit activations (Korthikanti 2022)."""

ACTIVATION_FACTOR_CHECKPOINTED = 2
"""With full gradient checkpointing each layer keeps only its 16-bit input (``2sbh``)."""

LOGIT_BYTES = 2 + 4 + 4
"""Per logit: bf16 logits, their fp32 upcast for cross-entropy, and the fp32 gradient."""

TRAINING_WORKSPACE_GIB = 0.4
"""cuBLAS workspaces and loaded kernels beside the CUDA context: context plus these come to
0.5-1 GB (vllm-memory.md 5.1); the upper end, with the context's 0.6 GiB."""

USABLE_FRACTION = 0.9
"""Share of GPU memory a training peak may use; the rest absorbs allocator fragmentation."""


@dataclass
class TrainingOption:
    """One GPU type x count for a training run."""

    gpu: str
    gpu_count: int
    peak_gib: float
    parts: dict[str, float]
    usable_gib: float
    usd_per_hour: float | None
    fits: bool
    reasons: list[str]
    price_basis: str = ""
    estimated_hours: float | None = None
    estimated_cost_usd: float | None = None
    runpod_gpu_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return asdict(self)


@dataclass
class TrainingPlan:
    """Peak memory of a fine-tuning run and the GPU options for it, chosen first."""

    model: str
    method: str
    seq_len: int
    batch_size: int
    gradient_checkpointing: bool
    lora_r: int
    trainable_params: int
    peak_gib: float
    parts: dict[str, float]
    options: list[TrainingOption] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def chosen(self) -> TrainingOption | None:
        """The cheapest option that fits, or None."""
        return self.options[0] if self.options and self.options[0].fits else None

    def to_dict(self) -> dict[str, Any]:
        """The ``plan train --json`` object (``peak_gib`` and ``parts`` are for one GPU)."""
        return {
            "model": self.model,
            "method": self.method,
            "seq_len": self.seq_len,
            "batch_size": self.batch_size,
            "gradient_checkpointing": self.gradient_checkpointing,
            "lora_r": self.lora_r,
            "trainable_params": self.trainable_params,
            "peak_gib": self.peak_gib,
            "parts": self.parts,
            "chosen": self.chosen.to_dict() if self.chosen else None,
            "options": [o.to_dict() for o in self.options],
            "notes": self.notes,
        }

    def ensure_fits(self) -> TrainingOption:
        """Return the chosen option or raise naming the closest one.

        Raises:
            PlanningError: Nothing fits.
        """
        if self.chosen is not None:
            return self.chosen
        closest = min(self.options, key=lambda o: o.peak_gib - o.usable_gib, default=None)
        hint = (
            f"; closest: {closest.gpu_count} x {closest.gpu}: {'; '.join(closest.reasons)}"
            if (closest)
            else ""
        )
        raise PlanningError(
            f"{self.method} training of {self.model} needs {self.peak_gib:.2f} GiB on one GPU "
            f"and no option fits{hint}. Try --gradient-checkpointing, a smaller --batch-size "
            "or --seq-len, or qlora."
        )


def training_memory_parts(
    facts: ModelFacts,
    method: Method,
    *,
    seq_len: int = 2048,
    batch_size: int = 1,
    gradient_checkpointing: bool = False,
    lora_r: int = 16,
    gpu_count: int = 1,
) -> tuple[dict[str, int], int]:
    """Peak-memory parts in bytes for one GPU, and the trainable parameter count.

    Args:
        facts: The model.
        method: ``lora``, ``qlora`` or ``full``.
        seq_len: Tokens per sequence.
        batch_size: Sequences per GPU per step.
        gradient_checkpointing: Whether activations are recomputed in backward.
        lora_r: LoRA rank (adapters on every decoder Linear, PEFT's ``all-linear``).
        gpu_count: GPUs sharing the weights and optimizer state (FSDP full shard).

    Returns:
        ``(parts, trainable_params)``; parts are ``base_weights``, ``trainable_params``,
        ``gradients``, ``optimizer_states``, ``activations``, ``logits``, ``cuda_context``.

    Raises:
        PlanningError: Unknown method or non-positive sizes.
    """
    if method not in ("lora", "qlora", "full"):
        raise PlanningError(f"--method must be lora, qlora or full, got {method!r}")
    for label, value in (
        ("seq-len", seq_len),
        ("batch-size", batch_size),
        ("lora r", lora_r),
        ("gpu count", gpu_count),
    ):
        if value < 1:
            raise PlanningError(f"--{label} must be at least 1, got {value}")
    breakdown = parameter_breakdown(facts)
    params = facts.param_count
    if method == "qlora":
        quantised = breakdown["linear"]
        base = quantised * NF4_BYTES_PER_PARAM + (params - quantised) * 2
    else:
        base = params * 2.0
    if method == "full":
        trainable = params
        master = trainable * FULL_MASTER_BYTES
        grads = trainable * FULL_GRAD_BYTES
        optimizer = trainable * FULL_OPTIMIZER_BYTES
    else:
        trainable = breakdown["lora_per_rank"] * lora_r
        master = trainable * 4
        grads = trainable * 4
        optimizer = trainable * (LORA_STATE_BYTES_PER_PARAM - 8)
    sbh = seq_len * batch_size * facts.hidden_size
    if gradient_checkpointing:
        activations = (
            facts.num_layers * ACTIVATION_FACTOR_CHECKPOINTED * sbh
            + ACTIVATION_FACTOR_NO_CHECKPOINTING * sbh
        )
    else:
        activations = facts.num_layers * ACTIVATION_FACTOR_NO_CHECKPOINTING * sbh
    logits = seq_len * batch_size * facts.vocab_size * LOGIT_BYTES
    shard = gpu_count
    parts = {
        "base_weights": int(base / shard),
        "trainable_params": int(master / shard),
        "gradients": int(grads / shard),
        "optimizer_states": int(optimizer / shard),
        "activations": int(activations),
        "logits": int(logits),
        "cuda_context": int((CUDA_CONTEXT_GIB + TRAINING_WORKSPACE_GIB) * GIB),
    }
    return parts, trainable


def _gib_parts(parts: dict[str, int]) -> dict[str, float]:
    return {k: round(v / GIB, 2) for k, v in parts.items()}


def plan_training(
    facts: ModelFacts,
    method: Method,
    *,
    seq_len: int = 2048,
    batch_size: int = 1,
    gradient_checkpointing: bool = False,
    lora_r: int = 16,
    gpus: Sequence[GpuSpec] | None = None,
    counts: Sequence[int] = (1, 2, 4, 8),
    tokens: int | None = None,
    throughput_tokens_per_s: float | None = None,
    tokens_per_gpu: int | None = None,
    price_basis: Literal["pod", "serverless"] = "pod",
) -> TrainingPlan:
    """Plan a fine-tuning run: its peak memory and the cheapest GPU type and count for it.

    Args:
        facts: The model.
        method: ``lora``, ``qlora`` or ``full``.
        seq_len: Tokens per sequence.
        batch_size: Sequences per GPU per step.
        gradient_checkpointing: Recompute activations in backward.
        lora_r: LoRA rank.
        gpus: GPU types to consider; RunPod's rentable GPUs by default.
        counts: GPU counts to consider per type.
        tokens: Tokens the run will process (all epochs), for the cost estimate.
        throughput_tokens_per_s: Training throughput of the whole job, for the estimate.
        tokens_per_gpu: Tokens each GPU trains on in the planned steps; without a measured
            ``throughput_tokens_per_s``, each GPU type's time is estimated from its FLOPs
            (:mod:`tuneship.planning.training_time`).
        price_basis: ``"pod"`` prices (default) or ``"serverless"`` rates.

    Returns:
        The plan; ``peak_gib``/``parts`` are for one GPU, each option has its own.
    """
    # One shape of run, sized for one GPU here and for each GPU count below.
    parts_for = functools.partial(
        training_memory_parts,
        facts,
        method,
        seq_len=seq_len,
        batch_size=batch_size,
        gradient_checkpointing=gradient_checkpointing,
        lora_r=lora_r,
    )
    parts, trainable = parts_for()
    peak = sum(parts.values())
    notes = []
    if method == "qlora":
        notes.append("QLoRA needs an NVIDIA GPU (bitsandbytes 4-bit)")
    if facts.quantization is not None and method != "qlora":
        notes.append(
            f"the checkpoint is pre-quantised ({facts.quantization.method}); training loads it "
            "in 16-bit, as planned here"
        )
    hours = None
    if tokens and throughput_tokens_per_s:
        if throughput_tokens_per_s <= 0:
            raise PlanningError("throughput must be positive")
        hours = tokens / throughput_tokens_per_s / 3600
    flops_per_token = training_flops_per_token(facts.param_count, method, gradient_checkpointing)
    candidates = list(gpus) if gpus is not None else load_gpu_catalog().rentable()
    options = []
    for gpu in candidates:
        for count in counts:
            if count > gpu.max_count:
                continue
            per_gpu, _ = parts_for(gpu_count=count)
            option_peak = sum(per_gpu.values())
            usable = gpu.total_gib * GIB * USABLE_FRACTION
            reasons = []
            if option_peak > usable:
                biggest = max(per_gpu, key=lambda k: per_gpu[k])
                reasons.append(
                    f"peak {option_peak / GIB:.2f} GiB per GPU exceeds the {usable / GIB:.2f} GiB "
                    f"usable ({USABLE_FRACTION:.0%} of {gpu.total_gib:.2f} GiB); largest part: "
                    f"{biggest.replace('_', ' ')} {per_gpu[biggest] / GIB:.2f} GiB"
                )
            price, basis = gpu.price_per_hour(price_basis)
            usd = round(price * count, 4) if price is not None else None
            option_hours = hours
            if option_hours is None and tokens_per_gpu:
                option_hours = estimate_training_hours(
                    tokens_per_gpu, flops_per_token, gpu.runpod_id, method
                )
            options.append(
                TrainingOption(
                    gpu=gpu.name,
                    gpu_count=count,
                    peak_gib=round(option_peak / GIB, 2),
                    parts=_gib_parts(per_gpu),
                    usable_gib=round(usable / GIB, 2),
                    usd_per_hour=usd,
                    fits=not reasons,
                    reasons=reasons,
                    price_basis=basis,
                    estimated_hours=(
                        _round_significant(option_hours) if option_hours is not None else None
                    ),
                    estimated_cost_usd=(
                        _round_significant(option_hours * usd)
                        if option_hours is not None and usd is not None
                        else None
                    ),
                    runpod_gpu_id=gpu.runpod_id,
                )
            )
    options.sort(
        key=lambda o: (
            not o.fits,
            o.usd_per_hour if o.usd_per_hour is not None else math.inf,
            o.gpu_count,
            o.gpu,
        )
    )
    return TrainingPlan(
        model=facts.source,
        method=method,
        seq_len=seq_len,
        batch_size=batch_size,
        gradient_checkpointing=gradient_checkpointing,
        lora_r=lora_r,
        trainable_params=trainable,
        peak_gib=round(peak / GIB, 2),
        parts=_gib_parts(parts),
        options=options,
        notes=notes,
    )
