"""Where a local vLLM server runs: this machine's GPUs (or its CPU) as input to the planner.

A thin adapter, no arithmetic of its own: it reads the GPUs through NVML
(``tuneship.planning.inventory``; an NVML error means no GPUs), picks the
``tensor_parallel_size`` least-loaded ones (or ``serve.gpu_indices``), and asks the one
serving planner (:func:`tuneship.planning.serving.plan_serving`) with the same
:class:`~tuneship.planning.serving.ServeRequest` every target uses, the tightest chosen
GPU as the GPU type and its free memory as vLLM will see it. The result, a
:class:`LocalPlan`, is what :class:`~tuneship.serving.local_vllm.LocalVllmTarget` starts
the server with; nothing re-plans.

Without GPUs the CPU backend gets a bounded KV cache (``VLLM_CPU_KVCACHE_SPACE``) and the
context length that cache holds, computed by the planner's KV helpers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import psutil
from pydantic import BaseModel, Field

from tuneship.config import ServeConfig
from tuneship.errors import ServingError, TuneshipError
from tuneship.planning.gpus import GIB
from tuneship.planning.inventory import LocalGpu, list_local_gpus, pick_least_loaded
from tuneship.planning.kv_cache import BLOCK_SIZE, kv_request_bytes, largest_fitting_length
from tuneship.planning.model_facts import ModelFacts, load_model_facts
from tuneship.planning.serving import (
    CPU_AUTO_LEN_CAP,
    ServeRequest,
    choose_memory_share,
    plan_serving,
)
from tuneship.serving.base import Backend

CPU_KV_AUTO_MIN_GIB = 1
CPU_KV_AUTO_MAX_GIB = 8
CPU_MAX_NUM_BATCHED_TOKENS = 2048
"""vLLM's batch default below H100 class (vllm-memory.md 1.1 step 2); sizes the
sliding-window layers' share of the CPU KV cache."""


class LocalPlan(BaseModel):
    """Resolved placement and limits for one local vLLM server (the target's input)."""

    backend: Backend
    gpu_indices: list[int] = Field(default_factory=list)
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float | None = Field(
        default=None, description="None on the CPU backend."
    )
    max_model_len: int | None = Field(default=None, description="None lets vLLM choose ('auto').")
    cpu_kvcache_space_gib: int | None = Field(default=None, description="KV cache GiB on the CPU.")
    notes: list[str] = Field(default_factory=list, description="Why values were chosen.")
    largest_fitting_model_len: int | None = Field(
        default=None, description="The planner's longest context for this placement."
    )
    planner_summary: str | None = Field(default=None, description="The planner's option.")

    @property
    def cuda_visible_devices(self) -> str | None:
        """The ``CUDA_VISIBLE_DEVICES`` value, or None on the CPU backend."""
        return ",".join(str(i) for i in self.gpu_indices) if self.backend == "cuda" else None

    def cuda_env(self) -> dict[str, str]:
        """The environment that pins the server to the plan's GPUs (empty on the CPU)."""
        if self.backend != "cuda":
            return {}
        return {
            "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
            "CUDA_VISIBLE_DEVICES": self.cuda_visible_devices or "",
        }


def read_local_gpus() -> list[LocalGpu]:
    """Return the GPUs NVML reports, or ``[]`` when there is no GPU, driver or NVML."""
    errors: tuple[type[BaseException], ...] = (OSError,)
    try:
        import pynvml

        errors = (OSError, pynvml.NVMLError)
    except ImportError:
        pass
    try:
        return list(list_local_gpus())
    except errors:
        return []


def choose_gpus(gpus: Sequence[LocalGpu], options: ServeConfig) -> list[LocalGpu]:
    """Return the GPUs to run on: ``serve.gpu_indices``, else the least-loaded TP-many.

    Raises:
        ServingError: Fewer GPUs than ``tensor_parallel_size``, or an unknown index.
    """
    count = options.tensor_parallel_size
    by_index = {g.index: g for g in gpus}
    if options.gpu_indices:
        missing = [i for i in options.gpu_indices if i not in by_index]
        if missing:
            raise ServingError(
                f"serve.gpu_indices={options.gpu_indices}: no GPU {missing} on this machine "
                f"(found: {sorted(by_index) or 'none'})"
            )
        if len(set(options.gpu_indices)) != count:
            raise ServingError(
                f"serve.gpu_indices={options.gpu_indices} must name "
                f"serve.tensor_parallel_size={count} distinct GPUs"
            )
        return [by_index[i] for i in options.gpu_indices]
    if len(gpus) < count:
        raise ServingError(
            f"serve.tensor_parallel_size={count} needs {count} GPUs; this machine has {len(gpus)}"
        )
    return pick_least_loaded(list(gpus), count)


def resolve_cpu_kv_space(options: ServeConfig, ram_bytes: int | None) -> tuple[int, str]:
    """Return the CPU KV cache GiB and why: the config value, else a quarter of free RAM."""
    if options.cpu_kvcache_space_gib is not None:
        return options.cpu_kvcache_space_gib, "serve.cpu_kvcache_space_gib"
    if ram_bytes is None:
        return 4, "4 GiB (free RAM unknown)"
    gib = int(ram_bytes / GIB / 4)
    gib = min(max(gib, CPU_KV_AUTO_MIN_GIB), CPU_KV_AUTO_MAX_GIB)
    return gib, f"a quarter of {ram_bytes / GIB:.1f} GiB free RAM, within 1-8 GiB"


def read_model_facts(model: str | Path) -> ModelFacts | None:
    """The planner's facts for ``model``, or None when its config cannot be read.

    A Hub id is read from the Hub (vLLM downloads it anyway); offline, or for a model the
    planner cannot read, the server is started without a planned length (vLLM fits it).
    """
    try:
        return load_model_facts(model)
    except TuneshipError:
        return None


def _check_model_limit(facts: ModelFacts | None, request: ServeRequest, model: str) -> None:
    limit = facts.max_position_embeddings if facts else None
    if isinstance(request.max_model_len, int) and limit and request.max_model_len > limit:
        raise ServingError(
            f"serve.max_model_len={request.max_model_len} is longer than the model allows "
            f"(max_position_embeddings {limit} in {model}/config.json); use at most "
            f"{limit} or 'auto'"
        )


def _plan_cpu(
    facts: ModelFacts | None, request: ServeRequest, options: ServeConfig, ram_bytes: int | None
) -> LocalPlan:
    if options.gpu_indices:
        raise ServingError(f"serve.gpu_indices={options.gpu_indices}: this machine has no GPU")
    space, why = resolve_cpu_kv_space(options, ram_bytes)
    notes = [f"no GPU found: CPU backend with a {space} GiB KV cache ({why})"]
    length: int | None = None
    why_len = "vLLM's auto-fit (model config not readable)"
    if isinstance(request.max_model_len, int):
        length, why_len = request.max_model_len, "serve.max_model_len"
    if facts is not None:
        # The CPU backend keeps the KV cache in the model's own dtype.
        dtype = request.dtype if request.dtype != "auto" else str(facts.dtype or "bfloat16")
        space_bytes = space * GIB

        def need(tokens: int) -> int:
            return kv_request_bytes(
                facts, 1, tokens, request.kv_cache_dtype, CPU_MAX_NUM_BATCHED_TOKENS, dtype
            )

        if length is not None and need(length) > space_bytes:
            fits = largest_fitting_length(
                facts, 1, space_bytes, length, request.kv_cache_dtype,
                CPU_MAX_NUM_BATCHED_TOKENS, dtype,
            )  # fmt: skip
            raise ServingError(
                f"serve.max_model_len={length} needs more KV cache than the {space} GiB CPU "
                f"KV space holds ({fits} tokens); lower it or raise serve.cpu_kvcache_space_gib"
            )
        if length is None:
            limit = min(facts.max_position_embeddings or CPU_AUTO_LEN_CAP, CPU_AUTO_LEN_CAP)
            length = largest_fitting_length(
                facts, 1, space_bytes, limit, request.kv_cache_dtype,
                CPU_MAX_NUM_BATCHED_TOKENS, dtype,
            )  # fmt: skip
            why_len = f"the model's {facts.max_position_embeddings}" + (
                f", capped at {CPU_AUTO_LEN_CAP}" if limit == CPU_AUTO_LEN_CAP else ""
            )
            if length < limit:
                why_len += f", cut to the {length} tokens the CPU KV space holds"
            if length < BLOCK_SIZE:
                raise ServingError(
                    "the CPU KV space is too small for this model; raise "
                    "serve.cpu_kvcache_space_gib"
                )
    notes.append(f"max_model_len {length if length else 'auto'}: {why_len}")
    return LocalPlan(
        backend="cpu",
        tensor_parallel_size=options.tensor_parallel_size,
        max_model_len=length,
        cpu_kvcache_space_gib=space,
        notes=notes,
    )


def plan_local_server(
    model: str | Path,
    options: ServeConfig,
    gpus: Sequence[LocalGpu] | None = None,
    ram_bytes: int | None = None,
    facts: ModelFacts | None = None,
) -> LocalPlan:
    """Decide the backend, GPUs, memory share and context length for one local server.

    Args:
        model: Model folder or Hub repo id.
        options: The ``serve`` section (made into the planner's ``ServeRequest``).
        gpus: GPU readings; None reads them from NVML (``[]`` means CPU).
        ram_bytes: Free RAM for the CPU KV default; None asks psutil.
        facts: The model's facts; read from ``model`` when None.

    Returns:
        The plan; ``notes`` says where each value came from.

    Raises:
        ServingError: The request cannot be placed here; the message names the field to
            change. Other misfits the planner foresees are noted, and vLLM has the last word.
    """
    readings = list(read_local_gpus() if gpus is None else gpus)
    request = ServeRequest.from_serve_config(options)
    facts = facts or read_model_facts(model)
    _check_model_limit(facts, request, str(model))
    if not readings:
        ram = psutil.virtual_memory().available if ram_bytes is None else ram_bytes
        return _plan_cpu(facts, request, options, ram)
    chosen = choose_gpus(readings, options)
    tightest = min(chosen, key=lambda g: g.free_bytes)
    where = (
        f"GPU {tightest.index} ({tightest.name}) has {tightest.free_gib:.2f} of "
        f"{tightest.total_gib:.2f} GiB free"
    )
    notes = [
        f"GPU {g.index} ({g.name}): {g.free_gib:.2f} of {g.total_gib:.2f} GiB free" for g in chosen
    ]
    spec = tightest.to_gpu_spec()
    length: int | None = request.max_model_len if isinstance(request.max_model_len, int) else None
    largest: int | None = None
    summary: str | None = None
    if facts is None:
        # Without the model's facts only the memory share can be worked out.
        util, limit, problem = choose_memory_share(
            spec.total_gib * GIB, (spec.free_gib or 0.0) * GIB, request.gpu_memory_utilization
        )
        why_len = "serve.max_model_len" if length else "vLLM's auto-fit (model config not readable)"
    else:
        option = plan_serving(
            facts, request, gpus=[spec], gpu_count=len(chosen), suggest=False
        ).options[0]
        util, limit, problem = (
            option.gpu_memory_utilization,
            option.memory_share_limit,
            option.memory_problem,
        )
        largest, summary = option.largest_fitting_model_len, option.summary()
        other = [r for r in option.reasons if r != problem]
        if other:
            notes.append("the planner expects trouble: " + "; ".join(other))
        if length is None:
            length = option.max_model_len
            why_len = "the planner's fit for the free memory"
        else:
            why_len = "serve.max_model_len"
    if util is None:
        raise ServingError(
            f"{where}: too little to serve from. Free GPU memory (stop other processes) or "
            "choose other GPUs with serve.gpu_indices."
        )
    if problem:
        value = float(request.gpu_memory_utilization)
        raise ServingError(
            f"serve.gpu_memory_utilization={value} asks for "
            f"{value * tightest.total_gib:.2f} GiB per GPU but {where}; use at most "
            f"{limit:.2f}, or 'auto'"
        )
    notes.append(f"gpu_memory_utilization {util:.2f} (safe up to the free memory)")
    notes.append(f"max_model_len {length if length else 'auto'}: {why_len}")
    return LocalPlan(
        backend="cuda",
        gpu_indices=[g.index for g in chosen],
        tensor_parallel_size=len(chosen),
        gpu_memory_utilization=util,
        max_model_len=length,
        notes=notes,
        largest_fitting_model_len=largest,
        planner_summary=summary,
    )
