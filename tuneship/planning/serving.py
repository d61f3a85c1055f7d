"""The vLLM serving plan: which GPUs, how many, what TP, what context, what memory fraction.

The arithmetic follows vLLM V1's own start-up sequence (vllm-memory.md sections 1 and 6):

1. vLLM refuses to start unless ``free >= ceil(total x gpu_memory_utilization)``.
2. The budget ``B = util x total`` (per GPU) pays for the weights (÷ TP), the activation
   peak of the profile run, non-torch memory (NCCL buffers at TP >= 2) and, from v0.21,
   the CUDA-graph estimate. The rest is the KV cache.
3. One request of ``max_model_len`` tokens must fit in that KV cache, in blocks of 16
   tokens per layer (sliding-window layers hold only the window plus one batch).

Every constant below cites its measurement. Options enumerate GPU types x counts (TP =
count); the cheapest option that fits is chosen, and every rejected one says why.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, cast

from tuneship.errors import PlanningError
from tuneship.planning.gpus import CUDA_CONTEXT_GIB, GIB, GpuSpec, load_gpu_catalog
from tuneship.planning.kv_cache import (
    BLOCK_SIZE,
    ceil_div,
    kv_bytes_per_token,
    kv_dtype_bytes,
    kv_request_bytes,
    largest_fitting_length,
)
from tuneship.planning.model_facts import ModelFacts

if TYPE_CHECKING:
    from tuneship.config import ServeConfig

# --- Constants, each with its source (vllm-memory.md = /work/shared/reference, summarised
# --- in docs/planner.md; numbers measured by llm-d on H100 with vLLM 0.19 unless noted).

NON_TORCH_TP1_GIB = 0.27
"""Non-torch memory at TP 1: 0.13-0.27 GiB measured; upper end (vllm-memory.md 3.1)."""

NON_TORCH_TP_GIB = 2.13
"""Non-torch memory per GPU at TP >= 2 (NCCL, custom all-reduce): 2.07 at TP 2 and 2.13 at
TP 4 for Llama-3.1-8B on vLLM 0.19 (llm-d-planner accuracy report; vllm-memory.md 3.2)."""

CUDA_GRAPH_GIB = 1.04
"""CUDA-graph memory: 0.51-1.85 GiB, mean 1.04 (H100, v0.19; vllm-memory.md 3.1)."""

CUDA_GRAPH_SUBTRACTED_SINCE = (0, 21)
"""VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=1 is the default since v0.21.0, so the graph
estimate comes out of the KV budget; before, graphs live in the (1 - util) headroom
(vllm-memory.md 1.1 step 3)."""

OLD_GRAPH_HEADROOM_GIB = 0.5
"""Before v0.21 keep ``(1 - util) x total >= graphs + 0.5 GiB`` (vllm-memory.md 6 step 5)."""

ACTIVATION_SMALL_GPU_GIB = 1.0
"""Activation peak on GPUs with 2048-token batch defaults (under 70 GiB, and A100):
0.19-0.37 GiB measured, 0.2-1 GiB in the recipe; upper end (vllm-memory.md 3.1, 6)."""

ACTIVATION_LEGACY_GIB = 5.6
"""vLLM <= 0.16, H100 defaults (8192 tokens / 1024 seqs): dense models 4.76-5.64 GiB."""

ACTIVATION_LEGACY_GPT_OSS_GIB = 7.38
"""vLLM <= 0.16, gpt-oss: 7.38 GiB (vllm-memory.md 3.1)."""

ACTIVATION_DENSE_GIB = 2.21
"""vLLM >= 0.17, H100 defaults: Llama-3.1-8B 1.89, Qwen2.5-7B 2.21 GiB (v0.19)."""

ACTIVATION_LARGE_VOCAB_GIB = 4.0
"""vLLM >= 0.17, 256K-vocab models (Gemma): 3.6-4.0 GiB (the sampler pass over the vocab)."""

ACTIVATION_MOE_GIB = 2.9
"""vLLM >= 0.17, MoE models: 1.2-2.9 GiB; upper end."""

ACTIVATION_VL_GIB = 2.51
"""Vision-language models: 2.51 GiB (vllm-memory.md 3.1)."""

ACTIVATION_DROP_VERSION = (0, 17)
"""The activation peak fell about 60 % between vLLM 0.16 and 0.17 (Qwen3-14B 5.64 -> 2.23)."""

AUTO_UTILIZATION_CAP = 0.95
"""Highest gpu_memory_utilization 'auto' picks. vLLM can use about 0.99 (llm-d); 0.95 is
RunPod worker-vllm's template default and leaves room for allocator slack (policy)."""

FREE_MEMORY_MARGIN_GIB = 0.25
"""'auto' utilization stays this far below the free memory, since other processes' use
moves between planning and start-up (policy)."""

KV_ESTIMATE_MARGIN = 0.05
"""Share of an *estimated* KV cache kept back when fitting max_model_len: estimates have
been within about 5 % of vLLM's (vllm-memory.md 6 step 6: keep a 5-10 % margin)."""

DEFAULT_MIN_MODEL_LEN = 4096
"""With max_model_len 'auto', an option that fits less context than this is rejected
(capped by the model's own maximum); a plan with a few hundred tokens is no plan."""

VOCAB_PADDING = 64
"""VocabParallelEmbedding pads the vocab to a multiple of 64 before splitting it by TP."""

KvCacheDtype = Literal["auto", "fp8"]
PriceBasis = Literal["serverless", "pod"]


def parse_version(version: str) -> tuple[int, int]:
    """``"v0.27.1"`` -> ``(0, 27)``.

    Raises:
        PlanningError: Not a version string.
    """
    match = re.match(r"^v?(\d+)\.(\d+)", version.strip())
    if not match:
        raise PlanningError(f"vLLM version {version!r} is not like 0.27.1")
    return int(match.group(1)), int(match.group(2))


def default_max_num_batched_tokens(gpu: GpuSpec) -> int:
    """vLLM's serve default for max_num_batched_tokens on this GPU.

    ``EngineArgs.get_batch_defaults``: >= 70 GiB and not an A100 -> 8192; >= 160 GiB ->
    16384; otherwise 2048 (vllm-memory.md 1.1 step 2).
    """
    name = f"{gpu.name} {' '.join(gpu.aliases)}".lower()
    if gpu.total_gib >= 160:
        return 16384
    if gpu.total_gib >= 70 and "a100" not in name:
        return 8192
    return 2048


def activation_peak_gib(facts: ModelFacts, gpu: GpuSpec, version: tuple[int, int]) -> float:
    """The profile run's activation peak on one GPU (independent of TP, vllm-memory.md 3.1).

    Measured at 8192 batched tokens; scaled linearly for 16384-token GPUs, and the small
    measured peak is used on 2048-token GPUs.
    """
    batched = default_max_num_batched_tokens(gpu)
    if batched <= 2048:
        return ACTIVATION_SMALL_GPU_GIB
    if version < ACTIVATION_DROP_VERSION:
        base = (
            ACTIVATION_LEGACY_GPT_OSS_GIB
            if facts.model_type == "gpt_oss"
            else ACTIVATION_LEGACY_GIB
        )
    else:
        base = ACTIVATION_DENSE_GIB
        if facts.vocab_size >= 256_000:
            base = max(base, ACTIVATION_LARGE_VOCAB_GIB)
        if facts.moe is not None:
            base = max(base, ACTIVATION_MOE_GIB)
        if facts.multimodal:
            base = max(base, ACTIVATION_VL_GIB)
    return base * batched / 8192


def non_torch_gib(tensor_parallel_size: int) -> float:
    """Non-torch memory per GPU (NCCL and all-reduce buffers grow it at TP >= 2)."""
    return NON_TORCH_TP1_GIB if tensor_parallel_size == 1 else NON_TORCH_TP_GIB


def cuda_graph_gib(version: tuple[int, int], enforce_eager: bool) -> float:
    """CUDA-graph memory subtracted from the KV budget (0 before v0.21 or when eager)."""
    if enforce_eager or version < CUDA_GRAPH_SUBTRACTED_SINCE:
        return 0.0
    return CUDA_GRAPH_GIB


def tensor_parallel_problems(facts: ModelFacts, tp: int) -> list[str]:
    """Why vLLM would reject this TP size for this model (empty when it is valid).

    Rules from vLLM (vllm-memory.md section 2): attention heads divisible by TP; KV heads
    divisible by TP or TP a multiple of them (replication); the vocab padded to 64
    divisible by TP; the MLP widths divisible by TP; quantisation groups/blocks whole per
    shard.
    """
    problems = []
    if tp < 1:
        return [f"TP {tp} is not a positive number of GPUs"]
    heads = facts.num_attention_heads
    if heads % tp:
        problems.append(f"TP {tp} does not divide {heads} attention heads")
    kv = facts.num_kv_heads
    if facts.mla is None and kv:
        if tp >= kv and tp % kv:
            problems.append(f"TP {tp} is not a multiple of {kv} KV heads")
        elif tp < kv and kv % tp:
            problems.append(f"TP {tp} does not divide {kv} KV heads")
    padded = ceil_div(facts.vocab_size, VOCAB_PADDING) * VOCAB_PADDING
    if padded % tp:
        problems.append(f"TP {tp} does not divide the padded vocab of {padded:,}")
    widths = []
    if facts.moe is None or facts.moe.moe_layers < facts.num_layers:
        widths.append(("intermediate size", facts.intermediate_size))
    if facts.moe is not None:
        widths.append(("expert intermediate size", facts.moe.moe_intermediate_size))
    for label, width in widths:
        if width % tp:
            problems.append(f"TP {tp} does not divide the {label} {width:,}")
            continue
        quant = facts.quantization
        if quant is None:
            continue
        part = width // tp
        if quant.weight_block_size and part % quant.weight_block_size[0]:
            problems.append(
                f"{label} slice {part:,} per GPU at TP {tp} is not a multiple of the "
                f"{quant.weight_block_size[0]}-wide quantisation block"
            )
        elif quant.group_size and quant.method not in ("mxfp4", "fp8") and part % quant.group_size:
            problems.append(
                f"{label} slice {part:,} per GPU at TP {tp} is not a multiple of the "
                f"quantisation group size {quant.group_size}"
            )
    return problems


def valid_tensor_parallel_sizes(facts: ModelFacts, limit: int = 16) -> list[int]:
    """TP sizes from 1 to ``limit`` that vLLM accepts for this model."""
    return [tp for tp in range(1, limit + 1) if not tensor_parallel_problems(facts, tp)]


GPU_AUTO_LEN_CAP = 32768
"""Upper bound of ``serve.max_model_len: auto`` for every serving target: the model's own
maximum (often 128K and more) would give one request the whole KV cache (policy)."""

CPU_AUTO_LEN_CAP = 8192
"""The same bound on vLLM's CPU backend, whose KV cache is a few GiB of RAM (policy)."""


@dataclass(frozen=True)
class ServeRequest:
    """What is asked of one vLLM server, wherever it runs: the planner's one input.

    ``serve.*`` settings become a request once (:meth:`from_serve_config`); the local and
    RunPod targets hand the same request to :func:`plan_serving`, so a setting means the
    same thing on every target. Where the server runs (GPU types, counts, free memory) is
    not part of the request.

    Attributes:
        max_model_len: A length to check, or ``"auto"`` for the largest that fits.
        max_model_len_cap: Upper bound for ``"auto"`` (besides the model's own maximum).
        gpu_memory_utilization: A fraction to check against free memory, or ``"auto"``.
        tensor_parallel_size: GPUs per server (= TP); None lets the planner choose.
        kv_cache_dtype: ``"auto"`` (the model's 16-bit) or ``"fp8"``.
        dtype: The model's compute dtype (``serve.dtype``); ``float32`` doubles the KV
            cache where vLLM keeps it (the CPU backend).
        vllm_version: vLLM version to plan for; the catalog's target by default.
        enforce_eager: No CUDA graphs.
        kv_cache_memory_gib: A KV cache size known from vLLM's own log (or set with
            ``--kv-cache-memory-bytes``); replaces the estimate and its margin.
        min_model_len: Least context an ``"auto"`` length must reach.
        price_basis: ``"serverless"`` or ``"pod"`` prices.
    """

    max_model_len: int | Literal["auto"] = "auto"
    max_model_len_cap: int | None = None
    gpu_memory_utilization: float | Literal["auto"] = "auto"
    tensor_parallel_size: int | None = None
    kv_cache_dtype: KvCacheDtype = "auto"
    dtype: str = "auto"
    vllm_version: str | None = None
    enforce_eager: bool = False
    kv_cache_memory_gib: float | None = None
    min_model_len: int = DEFAULT_MIN_MODEL_LEN
    price_basis: PriceBasis = "serverless"

    def __post_init__(self) -> None:
        kv_dtype_bytes(self.kv_cache_dtype)  # an unknown KV dtype fails here, not later
        util = self.gpu_memory_utilization
        if util != "auto" and not 0 < float(util) <= 1:
            raise PlanningError(f"--gpu-memory-utilization must be in (0, 1] or auto, got {util}")

    @classmethod
    def from_serve_config(
        cls, serve: ServeConfig, *, price_basis: PriceBasis = "serverless"
    ) -> ServeRequest:
        """The request the ``serve`` section makes; every target plans with this.

        ``auto`` lengths are capped at :data:`GPU_AUTO_LEN_CAP`. On a RunPod target
        ``serve.runpod.gpu_count`` (when set) wins over ``serve.tensor_parallel_size``, and
        the default TP of 1 lets the planner rent more GPUs when one is not enough; a
        local server uses exactly ``serve.tensor_parallel_size`` GPUs.
        ``extra_options`` that change memory (``enforce_eager``, ``kv_cache_dtype``) are
        read here, so the plan and the server's flags agree.
        """
        extra = serve.extra_options
        kv_dtype = str(extra.get("kv_cache_dtype") or "auto")
        return cls(
            max_model_len=serve.max_model_len,
            max_model_len_cap=GPU_AUTO_LEN_CAP,
            gpu_memory_utilization=serve.gpu_memory_utilization,
            tensor_parallel_size=_requested_tp(serve),
            kv_cache_dtype=cast(KvCacheDtype, "fp8" if kv_dtype.startswith("fp8") else "auto"),
            dtype=serve.dtype,
            enforce_eager=bool(extra.get("enforce_eager")),
            price_basis=price_basis,
        )


def _requested_tp(serve: ServeConfig) -> int | None:
    if not serve.target.startswith("runpod"):
        return serve.tensor_parallel_size
    if serve.runpod.gpu_count:
        return serve.runpod.gpu_count
    return serve.tensor_parallel_size if serve.tensor_parallel_size > 1 else None


@dataclass
class ServingOption:
    """One GPU type x count, with its memory arithmetic per GPU and whether it fits.

    The first thirteen fields are the ``--json`` contract; the rest explain them.
    """

    gpu: str
    gpu_count: int
    tensor_parallel_size: int
    gpu_memory_utilization: float | None
    max_model_len: int | None
    weights_gib: float
    kv_bytes_per_token: int
    kv_cache_gib: float
    kv_tokens: int
    max_concurrency: float
    usd_per_hour: float | None
    fits: bool
    reasons: list[str]
    total_gib: float = 0.0
    free_gib: float = 0.0
    budget_gib: float = 0.0
    activation_gib: float = 0.0
    non_torch_gib: float = 0.0
    cuda_graph_gib: float = 0.0
    kv_needed_gib: float | None = None
    largest_fitting_model_len: int = 0
    kv_cache_dtype: str = "auto"
    kv_cache_measured: bool = False
    memory_share_limit: float = 0.0
    memory_problem: str | None = None
    price_basis: str = ""
    runpod_gpu_id: str | None = None
    serverless_pool: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The option as JSON-ready data."""
        return asdict(self)

    def summary(self) -> str:
        """One line: ``4 x A100 40GB, TP 4, util 0.95, max_model_len 4,800``."""
        util = "-" if self.gpu_memory_utilization is None else f"{self.gpu_memory_utilization:.2f}"
        length = "-" if self.max_model_len is None else f"{self.max_model_len:,}"
        return (
            f"{self.gpu_count} x {self.gpu}, TP {self.tensor_parallel_size}, "
            f"gpu_memory_utilization {util}, max_model_len {length}"
        )


@dataclass
class ServingPlan:
    """All options considered for serving one model, the chosen one first."""

    model: str
    facts: ModelFacts
    vllm_version: str
    kv_cache_dtype: str
    options: list[ServingOption]
    request: ServeRequest = field(default_factory=lambda: ServeRequest())
    suggestion: ServingOption | None = None

    @property
    def chosen(self) -> ServingOption | None:
        """The cheapest option that fits, or None."""
        return self.options[0] if self.options and self.options[0].fits else None

    def to_dict(self) -> dict[str, Any]:
        """The ``plan serve --json`` object."""
        return {
            "model": self.model,
            "chosen": self.chosen.to_dict() if self.chosen else None,
            "options": [o.to_dict() for o in self.options],
            "suggestion": self.suggestion.to_dict() if self.suggestion else None,
            "vllm_version": self.vllm_version,
            "kv_cache_dtype": self.kv_cache_dtype,
            "facts": facts_summary(self.facts),
        }

    def ensure_fits(self) -> ServingOption:
        """Return the chosen option, or raise saying why nothing fits and what would.

        Raises:
            PlanningError: No option fits; the message has each option's reasons and,
                when one was found, an option that would fit.
        """
        if self.chosen is not None:
            return self.chosen
        lines = [f"no GPU plan fits {self.model}:"]
        for option in self.options[:8]:
            lines.append(f"  {option.gpu_count} x {option.gpu}: " + "; ".join(option.reasons))
        if len(self.options) > 8:
            lines.append(f"  ... and {len(self.options) - 8} more options")
        if self.suggestion is not None:
            lines.append(f"what would fit: {self.suggestion.summary()}")
        else:
            lines.append("nothing in the GPU catalog fits with these settings either")
        raise PlanningError("\n".join(lines))


def facts_summary(facts: ModelFacts) -> dict[str, Any]:
    """The model facts a plan shows."""
    return {
        "model_type": facts.model_type,
        "params": facts.param_count,
        "weight_bytes": facts.weight_bytes,
        "weight_bytes_source": facts.weight_bytes_source,
        "dtype": facts.dtype,
        "layers": facts.num_layers,
        "attention_heads": facts.num_attention_heads,
        "kv_heads": facts.num_kv_heads,
        "head_dim": facts.head_dim,
        "vocab_size": facts.vocab_size,
        "max_position_embeddings": facts.max_position_embeddings,
        "sliding_window": facts.sliding_window,
        "sliding_layers": facts.sliding_layers,
        "mla": facts.mla is not None,
        "moe_experts": facts.moe.num_experts if facts.moe else None,
        "quantization": facts.quantization.method if facts.quantization else None,
        "notes": list(facts.notes),
    }


def _gib(value: float) -> float:
    return round(value / GIB, 2)


def choose_memory_share(
    total: float,
    free: float,
    requested: float | Literal["auto"],
    old_graph_headroom: float = 0.0,
) -> tuple[float | None, float, str | None]:
    """The ``gpu_memory_utilization`` to use on one GPU, the highest safe one, and why not.

    vLLM refuses to start unless ``ceil(total x util)`` bytes are free (vllm-memory.md 1.1);
    the highest safe share keeps :data:`FREE_MEMORY_MARGIN_GIB` free beside that, and
    ``"auto"`` takes it, up to :data:`AUTO_UTILIZATION_CAP`.

    Args:
        total: The GPU's memory in bytes.
        free: Free bytes at vLLM's check (after its CUDA context).
        requested: ``serve.gpu_memory_utilization``: a share or ``"auto"``.
        old_graph_headroom: Bytes CUDA graphs need outside the budget (vLLM < 0.21).

    Returns:
        ``(share, highest safe share, problem)``: share is None when no share is safe;
        problem says why the free memory does not allow the share (None when it does).
    """
    raw = (free - FREE_MEMORY_MARGIN_GIB * GIB) / total
    if old_graph_headroom:
        raw = min(raw, 1 - old_graph_headroom / total)
    limit = max(0.0, math.floor(raw * 100 + 1e-9) / 100)
    if requested == "auto":
        util = min(limit, AUTO_UTILIZATION_CAP)
        if util <= 0:
            return (
                None,
                limit,
                (
                    f"only {_gib(free):.2f} of {_gib(total):.2f} GiB is free: no memory fraction "
                    "is safe to ask for"
                ),
            )
        return util, limit, None
    util = float(requested)
    needed = math.ceil(total * util)
    if needed > free:
        return (
            util,
            limit,
            (
                f"gpu_memory_utilization {util:.2f} needs {_gib(needed):.2f} GiB free at start "
                f"but {_gib(free):.2f} of {_gib(total):.2f} GiB is free; use at most {limit:.2f}, "
                "or 'auto'"
            ),
        )
    return util, limit, None


def evaluate_option(
    facts: ModelFacts,
    gpu: GpuSpec,
    count: int,
    request: ServeRequest | None = None,
    *,
    free_gib: float | None = None,
) -> ServingOption:
    """Work out one option (``count`` GPUs of one type, TP = count) and whether it fits.

    Args:
        facts: The model.
        gpu: The GPU type.
        count: GPUs, all used for tensor parallelism.
        request: What is asked of the server (defaults: everything ``"auto"``).
        free_gib: Free memory per GPU at start, as vLLM sees it (after its CUDA context);
            defaults to the GPU's known free memory, else total less the CUDA context.

    Returns:
        The option, with ``fits`` and the ``reasons`` it does not.
    """
    request = request or ServeRequest()
    max_model_len = request.max_model_len
    gpu_memory_utilization = request.gpu_memory_utilization
    kv_cache_dtype = request.kv_cache_dtype
    enforce_eager = request.enforce_eager
    kv_cache_memory_gib = request.kv_cache_memory_gib
    vllm_version = request.vllm_version
    dtype = request.dtype
    version_text = vllm_version or load_gpu_catalog().vllm_target_version
    version = parse_version(version_text)
    tp = count
    reasons = tensor_parallel_problems(facts, tp)
    notes: list[str] = []
    total = gpu.total_gib * GIB
    free_known = free_gib if free_gib is not None else gpu.free_gib
    free = (free_known * GIB) if free_known is not None else total - CUDA_CONTEXT_GIB * GIB
    if free > total:
        reasons.append(
            f"free memory {_gib(free):.2f} GiB is more than the GPU's {_gib(total):.2f} GiB"
        )
        free = total

    graphs = cuda_graph_gib(version, enforce_eager) * GIB
    old_graph_headroom = (
        0.0
        if enforce_eager or version >= CUDA_GRAPH_SUBTRACTED_SINCE
        else (CUDA_GRAPH_GIB + OLD_GRAPH_HEADROOM_GIB) * GIB
    )

    util, share_limit, memory_problem = choose_memory_share(
        total, free, gpu_memory_utilization, old_graph_headroom
    )
    if memory_problem:
        reasons.append(memory_problem)
    requested_share = util is not None and gpu_memory_utilization != "auto"
    if requested_share and old_graph_headroom and (1 - (util or 0)) * total < old_graph_headroom:
        reasons.append(
            f"vLLM {version_text} keeps CUDA graphs outside the budget: (1 - {util:.2f}) x "
            f"{_gib(total):.2f} GiB leaves less than {_gib(old_graph_headroom):.2f} GiB "
            "for them"
        )
    budget = (util or 0.0) * total
    weights = facts.weight_bytes / tp
    activation = activation_peak_gib(facts, gpu, version) * GIB
    non_torch = non_torch_gib(tp) * GIB
    batched = default_max_num_batched_tokens(gpu)
    bpt = kv_bytes_per_token(facts, tp, kv_cache_dtype, dtype)
    block_all_layers = bpt * BLOCK_SIZE

    measured = kv_cache_memory_gib is not None
    memory_failed = util is None
    if measured:
        kv_avail = float(kv_cache_memory_gib or 0) * GIB
        usable = kv_avail - block_all_layers
    else:
        kv_avail = budget - weights - activation - non_torch - graphs
        usable = kv_avail * (1 - KV_ESTIMATE_MARGIN) - block_all_layers
        if util is not None and weights > budget:
            memory_failed = True
            reasons.append(
                f"weights {_gib(weights):.2f} GiB per GPU exceed the {_gib(budget):.2f} GiB "
                f"budget ({util:.2f} x {_gib(total):.2f} GiB)"
            )
        elif util is not None and kv_avail <= 0:
            memory_failed = True
            reasons.append(
                f"no memory left for the KV cache: budget {_gib(budget):.2f} - weights "
                f"{_gib(weights):.2f} - activations {_gib(activation):.2f} - non-torch "
                f"{_gib(non_torch):.2f} - CUDA graphs {_gib(graphs):.2f} = "
                f"{_gib(kv_avail):.2f} GiB"
            )
    kv_avail = max(kv_avail, 0.0)
    usable = max(usable, 0.0)
    kv_tokens = int(kv_avail // block_all_layers) * BLOCK_SIZE if block_all_layers else 0

    model_max = facts.max_position_embeddings
    limit_auto = min(x for x in (model_max, request.max_model_len_cap, 10_000_000) if x)
    largest = largest_fitting_length(facts, tp, usable, limit_auto, kv_cache_dtype, batched, dtype)
    length: int | None
    if max_model_len == "auto":
        length = largest
        wanted = min(request.min_model_len, limit_auto)
        if not memory_failed and largest < wanted:
            if largest == 0:
                reasons.append("no KV cache memory for even one block of 16 tokens")
            else:
                reasons.append(
                    f"only {largest:,} tokens of context fit (at least {wanted:,} wanted)"
                )
        if length == 0:
            length = None
    else:
        length = int(max_model_len)
        if length < 1:
            raise PlanningError(f"--max-model-len must be a positive number or auto, got {length}")
        if model_max and length > model_max:
            reasons.append(
                f"max_model_len {length:,} exceeds the model's {model_max:,} (vLLM refuses it "
                "unless VLLM_ALLOW_LONG_MAX_MODEL_LEN=1)"
            )
        need = kv_request_bytes(facts, tp, length, kv_cache_dtype, batched, dtype)
        if need > usable and not memory_failed:
            fit = largest_fitting_length(facts, tp, usable, length, kv_cache_dtype, batched, dtype)
            where = (
                f"{_gib(usable):.2f} GiB is available"
                if measured
                else f"only {_gib(usable):.2f} GiB is usable ({_gib(kv_avail):.2f} estimated, "
                f"less a {KV_ESTIMATE_MARGIN:.0%} margin)"
            )
            reasons.append(
                f"max_model_len {length:,} needs {_gib(need):.2f} GiB of KV cache per GPU but "
                f"{where}; the largest that fits is {fit:,} (or use 'auto')"
            )
    need_len = kv_request_bytes(facts, tp, length, kv_cache_dtype, batched, dtype) if length else 0
    concurrency = round(kv_avail / need_len, 2) if need_len else 0.0
    if facts.sliding_layers:
        notes.append(
            f"{facts.sliding_layers} of {facts.num_layers} layers use a {facts.sliding_window}-"
            "token sliding window; they hold only the window plus one batch per request"
        )
    if tp > facts.num_kv_heads and facts.mla is None:
        notes.append(f"KV heads are replicated: {facts.num_kv_heads} KV heads on {tp} GPUs")
    if facts.mla is not None and tp > 1:
        notes.append("MLA's latent KV cache is replicated on every TP rank")
    price, basis = gpu.price_per_hour(request.price_basis)
    return ServingOption(
        gpu=gpu.name,
        gpu_count=count,
        tensor_parallel_size=tp,
        gpu_memory_utilization=util,
        max_model_len=length,
        weights_gib=_gib(weights),
        kv_bytes_per_token=bpt,
        kv_cache_gib=_gib(kv_avail),
        kv_tokens=kv_tokens,
        max_concurrency=concurrency,
        usd_per_hour=round(price * count, 4) if price is not None else None,
        fits=not reasons,
        reasons=reasons,
        total_gib=round(gpu.total_gib, 2),
        free_gib=_gib(free),
        budget_gib=_gib(budget),
        activation_gib=_gib(activation),
        non_torch_gib=_gib(non_torch),
        cuda_graph_gib=_gib(graphs),
        kv_needed_gib=_gib(need_len) if need_len else None,
        largest_fitting_model_len=largest,
        kv_cache_dtype=kv_cache_dtype,
        kv_cache_measured=measured,
        memory_share_limit=share_limit,
        memory_problem=memory_problem,
        price_basis=basis,
        runpod_gpu_id=gpu.runpod_id,
        serverless_pool=gpu.serverless_pool,
        notes=notes,
    )


def _sort_key(option: ServingOption) -> tuple[Any, ...]:
    price = option.usd_per_hour if option.usd_per_hour is not None else math.inf
    return (not option.fits, price, option.gpu_count, -option.kv_tokens, option.gpu)


def plan_serving(
    facts: ModelFacts,
    request: ServeRequest | None = None,
    *,
    gpus: Sequence[GpuSpec] | None = None,
    gpu_count: int | None = None,
    free_gib: float | None = None,
    suggest: bool = True,
) -> ServingPlan:
    """Plan vLLM serving for a model: enumerate GPU types x counts, choose the cheapest fit.

    This is the one serving planner: ``tuneship plan serve``, the local target (with the
    local GPUs as ``gpus`` and their free memory as ``free_gib``) and the RunPod targets
    (with the rentable catalog) all ask it, with a :class:`ServeRequest`.

    Args:
        facts: The model (see :func:`~tuneship.planning.model_facts.load_model_facts`).
        request: What is asked of the server; ``request.tensor_parallel_size`` fixes the
            GPU count (TP = GPUs).
        gpus: GPU types to consider; RunPod's rentable GPUs by default.
        gpu_count: Only this many GPUs per option (must equal the request's TP if both).
        free_gib: Free memory per GPU at start (as vLLM sees it).
        suggest: When nothing fits a restricted search, search wider for a suggestion.

    Returns:
        The plan; ``plan.chosen`` is None when nothing fits.

    Raises:
        PlanningError: Contradictory or invalid settings.
    """
    request = request or ServeRequest()
    tensor_parallel_size = request.tensor_parallel_size
    if (
        tensor_parallel_size is not None
        and gpu_count is not None
        and tensor_parallel_size != gpu_count
    ):
        raise PlanningError(
            f"--tp {tensor_parallel_size} with --gpus {gpu_count}: the planner uses every "
            "GPU for tensor parallelism, so give one of them or make them equal"
        )
    fixed = tensor_parallel_size or gpu_count
    if fixed is not None and fixed < 1:
        raise PlanningError(f"--gpus/--tp must be at least 1, got {fixed}")
    candidates = list(gpus) if gpus is not None else load_gpu_catalog().rentable()
    if not candidates:
        raise PlanningError("no GPU types to plan for")
    options = []
    for gpu in candidates:
        if fixed is not None:
            counts: Sequence[int] = [fixed]
        elif len(candidates) == 1:
            counts = range(1, gpu.max_count + 1)
        else:
            counts = [c for c in (1, 2, 4, 8) if c <= gpu.max_count]
        for count in counts:
            options.append(evaluate_option(facts, gpu, count, request, free_gib=free_gib))
    options.sort(key=_sort_key)
    version = request.vllm_version or load_gpu_catalog().vllm_target_version
    plan = ServingPlan(facts.source, facts, version, request.kv_cache_dtype, options, request)
    if plan.chosen is None and suggest:
        plan.suggestion = _suggest(facts, candidates, fixed, gpus is not None, free_gib, request)
    return plan


def _suggest(
    facts: ModelFacts,
    candidates: list[GpuSpec],
    fixed: int | None,
    restricted_gpus: bool,
    free_gib: float | None,
    request: ServeRequest,
) -> ServingOption | None:
    """The cheapest option that fits in a wider search: more GPUs, then the catalog."""
    wider: list[ServingOption] = []
    if fixed is not None:
        for gpu in candidates:
            for count in range(1, gpu.max_count + 1):
                wider.append(evaluate_option(facts, gpu, count, request, free_gib=free_gib))
    if not any(o.fits for o in wider) and (restricted_gpus or fixed is not None):
        estimated = replace(request, kv_cache_memory_gib=None)
        for gpu in load_gpu_catalog().rentable():
            for count in (1, 2, 4, 8):
                wider.append(evaluate_option(facts, gpu, count, estimated))
    fitting = sorted((o for o in wider if o.fits), key=_sort_key)
    return fitting[0] if fitting else None
