"""Choose where a local vLLM server runs: which GPUs, how much of them, what context length.

GPU readings come from ``tuneship.planning.inventory`` (NVML); an NVML error means no
GPUs. The rules:

* the ``tensor_parallel_size`` least-loaded GPUs (or ``serve.gpu_indices``) are exposed
  through ``CUDA_VISIBLE_DEVICES`` (with ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` so CUDA numbers
  them like NVML does);
* ``gpu_memory_utilization`` is a share of *total* memory that vLLM requires to be free
  at start-up (``Free memory on device ... is less than desired GPU memory utilization``),
  so it never exceeds ``(free - margin) / total`` on any chosen GPU; ``auto`` takes the
  highest such value, up to vLLM's usual 0.9;
* ``max_model_len`` ``auto`` takes the model's own limit, capped; a number is checked
  against the model's limit;
* without GPUs, the CPU backend gets a bounded KV cache (``VLLM_CPU_KVCACHE_SPACE``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from tuneship.config import ServeConfig
from tuneship.errors import ServingError
from tuneship.serving.base import Backend

if TYPE_CHECKING:
    from tuneship.planning.inventory import LocalGpu

GIB = 1024**3
AUTO_UTILIZATION_CAP = 0.90
"""vLLM's own default share; 'auto' never asks for more, only less on a busy GPU."""
MIN_UTILIZATION = 0.05
MARGIN_MIN_BYTES = 1 * GIB
"""Kept free beyond the request: the CUDA context (~0.6 GiB) is created before vLLM's check."""
MARGIN_FRACTION = 0.02
GPU_AUTO_LEN_CAP = 32768
CPU_AUTO_LEN_CAP = 8192
CPU_KV_AUTO_MIN_GIB = 1
CPU_KV_AUTO_MAX_GIB = 8

_LENGTH_KEYS = ("max_position_embeddings", "max_sequence_length", "seq_length", "n_positions")


class ServingPlan(BaseModel):
    """Resolved placement and limits for one local vLLM server."""

    backend: Backend
    gpu_indices: list[int] = Field(default_factory=list)
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float | None = Field(
        default=None, description="None on the CPU backend."
    )
    max_model_len: int | None = Field(default=None, description="None lets vLLM choose ('auto').")
    cpu_kvcache_space_gib: int | None = Field(default=None, description="KV cache GiB on the CPU.")
    notes: list[str] = Field(default_factory=list, description="Why values were chosen.")

    @property
    def cuda_visible_devices(self) -> str | None:
        """The ``CUDA_VISIBLE_DEVICES`` value, or None on the CPU backend."""
        return ",".join(str(i) for i in self.gpu_indices) if self.backend == "cuda" else None


def read_local_gpus() -> list[LocalGpu]:
    """Return the GPUs NVML reports, or ``[]`` when there is no GPU, driver or NVML."""
    from tuneship.planning.inventory import list_local_gpus

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
    from tuneship.planning.inventory import pick_least_loaded

    return pick_least_loaded(list(gpus), count)


def safe_utilization(gpu: LocalGpu) -> float:
    """Return the highest ``gpu_memory_utilization`` that ``gpu``'s free memory allows.

    vLLM requires ``total * utilization`` to be free when it starts; a margin stays
    free for the CUDA context and other processes' growth. Rounded down to 0.01.
    """
    if gpu.total_bytes <= 0:
        return 0.0
    margin = max(MARGIN_MIN_BYTES, MARGIN_FRACTION * gpu.total_bytes)
    share = (gpu.free_bytes - margin) / gpu.total_bytes
    return max(0.0, math.floor(share * 100) / 100)


def resolve_utilization(gpus: Sequence[LocalGpu], requested: float | str) -> float:
    """Return the ``gpu_memory_utilization`` to pass for the chosen GPUs.

    Args:
        gpus: The chosen GPUs (vLLM applies one value to each).
        requested: ``serve.gpu_memory_utilization``: a share or ``"auto"``.

    Raises:
        ServingError: The GPUs are too full, or the requested share is more than is free;
            the message names the GPU, its free memory and the highest value that fits.
    """
    tightest = min(gpus, key=safe_utilization)
    limit = safe_utilization(tightest)
    free_gib = tightest.free_bytes / GIB
    total_gib = tightest.total_bytes / GIB
    where = f"GPU {tightest.index} ({tightest.name}) has {free_gib:.2f} of {total_gib:.2f} GiB free"
    if limit < MIN_UTILIZATION:
        raise ServingError(
            f"{where}: too little to serve from. Free GPU memory (stop other processes) or "
            "choose other GPUs with serve.gpu_indices."
        )
    if requested == "auto":
        return min(limit, AUTO_UTILIZATION_CAP)
    value = float(requested)
    if value > limit:
        raise ServingError(
            f"serve.gpu_memory_utilization={value} asks for {value * total_gib:.2f} GiB per GPU "
            f"but {where}; use at most {limit:.2f}, or 'auto'"
        )
    return value


def read_model_config(model: str | Path) -> dict[str, Any] | None:
    """Return the model's ``config.json`` (local folder, or a cached Hub file), or None."""
    path = Path(model).expanduser()
    file: Path | None = path / "config.json" if path.is_dir() else None
    if file is None:
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(str(model), "config.json")
        except (ImportError, ValueError):
            cached = None
        file = Path(cached) if isinstance(cached, str) else None
    if file is None or not file.is_file():
        return None
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def model_length_limit(config: dict[str, Any]) -> int | None:
    """Return the longest context a model config allows (``max_position_embeddings``...)."""
    for section in (config, config.get("text_config") or {}):
        for key in _LENGTH_KEYS:
            value = section.get(key)
            if isinstance(value, int) and value > 0:
                return value
    return None


def kv_bytes_per_token(config: dict[str, Any], dtype_bytes: int = 2) -> int | None:
    """Return the KV-cache bytes one token takes (full attention), or None if unknown.

    ``layers * 2 * kv_heads * head_dim * dtype_bytes`` (vLLM's ``kv_cache_interface``).
    """
    section = config.get("text_config") or config
    try:
        layers = int(section["num_hidden_layers"])
        heads = int(section["num_attention_heads"])
        kv_heads = int(section.get("num_key_value_heads") or heads)
        head_dim = int(section.get("head_dim") or int(section["hidden_size"]) // heads)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    return layers * 2 * kv_heads * head_dim * dtype_bytes


def _dtype_bytes(options: ServeConfig, config: dict[str, Any]) -> int:
    dtype = options.dtype if options.dtype != "auto" else str(config.get("torch_dtype", ""))
    return 4 if dtype == "float32" else 2


def available_ram_bytes() -> int | None:
    """Return MemAvailable from /proc/meminfo, or None where it cannot be read."""
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def resolve_cpu_kv_space(options: ServeConfig, ram_bytes: int | None) -> tuple[int, str]:
    """Return the CPU KV cache GiB and why: the config value, else a quarter of free RAM."""
    if options.cpu_kvcache_space_gib is not None:
        return options.cpu_kvcache_space_gib, "serve.cpu_kvcache_space_gib"
    if ram_bytes is None:
        return 4, "4 GiB (free RAM unknown)"
    gib = int(ram_bytes / GIB / 4)
    gib = min(max(gib, CPU_KV_AUTO_MIN_GIB), CPU_KV_AUTO_MAX_GIB)
    return gib, f"a quarter of {ram_bytes / GIB:.1f} GiB free RAM, within 1-8 GiB"


def planner_option(
    model: str | Path,
    options: ServeConfig,
    gpus: Sequence[LocalGpu],
    utilization: float | str,
    max_model_len: int | str | None = None,
) -> Any | None:
    """Ask ``tuneship.planning`` how ``model`` fits on the chosen GPUs (None: no answer).

    Only local model folders are planned (no Hub look-ups while deploying). The result is
    the planner's ``ServingOption``: ``fits``, ``max_model_len``, ``reasons``, ``summary()``.
    """
    if not Path(model).expanduser().is_dir() or not gpus:
        return None
    try:
        from tuneship.planning.gpus import custom_gpu
        from tuneship.planning.model_facts import load_model_facts
        from tuneship.planning.serving import CUDA_CONTEXT_GIB, evaluate_option
    except ImportError:
        return None
    from tuneship.errors import TuneshipError

    tightest = min(gpus, key=lambda g: g.free_bytes)
    length = options.max_model_len if max_model_len is None else max_model_len
    try:
        facts = load_model_facts(model)
        return evaluate_option(
            facts,
            custom_gpu(tightest.total_bytes / GIB, tightest.name),
            len(gpus),
            max_model_len=length,  # type: ignore[arg-type]
            max_model_len_cap=GPU_AUTO_LEN_CAP,
            gpu_memory_utilization=utilization,  # type: ignore[arg-type]
            free_gib=max(0.0, tightest.free_bytes / GIB - CUDA_CONTEXT_GIB),
            enforce_eager=bool(options.extra_options.get("enforce_eager")),
        )
    except TuneshipError:
        return None


def resolve_max_model_len(
    model: str | Path,
    options: ServeConfig,
    config: dict[str, Any] | None,
    backend: Backend,
    kv_space_bytes: int | None = None,
) -> tuple[int | None, str]:
    """Return the ``max_model_len`` to pass (None: let vLLM fit it) and why.

    Raises:
        ServingError: A set ``serve.max_model_len`` exceeds the model's limit, or the CPU
            KV space cannot hold even a short sequence.
    """
    limit = model_length_limit(config) if config else None
    per_token = kv_bytes_per_token(config, _dtype_bytes(options, config)) if config else None
    fits = kv_space_bytes // per_token if kv_space_bytes and per_token else None
    if options.max_model_len != "auto":
        value = int(options.max_model_len)
        if limit is not None and value > limit:
            raise ServingError(
                f"serve.max_model_len={value} is longer than the model allows "
                f"(max_position_embeddings {limit} in {model}/config.json); use at most "
                f"{limit} or 'auto'"
            )
        if fits is not None and value > fits:
            raise ServingError(
                f"serve.max_model_len={value} needs more KV cache than the "
                f"{kv_space_bytes // GIB if kv_space_bytes else 0} GiB CPU KV space holds "
                f"({fits} tokens); lower it or raise serve.cpu_kvcache_space_gib"
            )
        return value, "serve.max_model_len"
    if limit is None:
        return None, "vLLM's auto-fit (model config not readable)"
    cap = CPU_AUTO_LEN_CAP if backend == "cpu" else GPU_AUTO_LEN_CAP
    value = min(limit, cap)
    reason = f"the model's {limit}" + (f", capped at {cap}" if limit > cap else "")
    if fits is not None and value > fits:
        value = (fits // 16) * 16
        reason += f", cut to the {fits} tokens the CPU KV space holds"
        if value < 16:
            raise ServingError(
                "the CPU KV space is too small for this model; raise serve.cpu_kvcache_space_gib"
            )
    return value, reason


def plan_serving(
    model: str | Path,
    options: ServeConfig,
    gpus: Sequence[LocalGpu] | None = None,
    ram_bytes: int | None = None,
) -> ServingPlan:
    """Decide the backend, GPUs, memory share and context length for one server.

    Args:
        model: Model folder or Hub repo id (its config.json is read when available).
        options: The ``serve`` section.
        gpus: GPU readings; None reads them from NVML (``[]`` means CPU).
        ram_bytes: Free RAM for the CPU KV default; None reads /proc/meminfo.

    Returns:
        The plan; ``notes`` says where each value came from.

    Raises:
        ServingError: The request cannot fit; the message names the field to change.
    """
    readings = list(read_local_gpus() if gpus is None else gpus)
    config = read_model_config(model)
    notes: list[str] = []
    if not readings:
        if options.gpu_indices:
            raise ServingError(f"serve.gpu_indices={options.gpu_indices}: this machine has no GPU")
        space, why = resolve_cpu_kv_space(
            options, available_ram_bytes() if ram_bytes is None else ram_bytes
        )
        notes.append(f"no GPU found: CPU backend with a {space} GiB KV cache ({why})")
        length, why_len = resolve_max_model_len(model, options, config, "cpu", space * GIB)
        notes.append(f"max_model_len {length if length else 'auto'}: {why_len}")
        return ServingPlan(
            backend="cpu",
            tensor_parallel_size=options.tensor_parallel_size,
            max_model_len=length,
            cpu_kvcache_space_gib=space,
            notes=notes,
        )
    chosen = choose_gpus(readings, options)
    utilization = resolve_utilization(chosen, options.gpu_memory_utilization)
    for gpu in chosen:
        notes.append(
            f"GPU {gpu.index} ({gpu.name}): {gpu.free_bytes / GIB:.2f} of "
            f"{gpu.total_bytes / GIB:.2f} GiB free"
        )
    notes.append(f"gpu_memory_utilization {utilization:.2f} (safe up to the free memory)")
    length, why_len = resolve_max_model_len(model, options, config, "cuda")
    option = planner_option(model, options, chosen, utilization)
    if option is not None and not option.fits:
        notes.append("the planner expects trouble: " + "; ".join(option.reasons))
    elif option is not None and options.max_model_len == "auto" and option.max_model_len:
        length = min(int(option.max_model_len), length or int(option.max_model_len))
        why_len = "the planner's fit for the free memory"
    notes.append(f"max_model_len {length if length else 'auto'}: {why_len}")
    return ServingPlan(
        backend="cuda",
        gpu_indices=[g.index for g in chosen],
        tensor_parallel_size=options.tensor_parallel_size,
        gpu_memory_utilization=utilization,
        max_model_len=length,
        notes=notes,
    )


def cuda_env(plan: ServingPlan) -> dict[str, str]:
    """Return the environment that pins the server to the plan's GPUs."""
    if plan.backend != "cuda":
        return {}
    return {
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "CUDA_VISIBLE_DEVICES": plan.cuda_visible_devices or "",
    }
