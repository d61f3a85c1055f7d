"""KV-cache sizes as vLLM V1 computes them: per token, per request, and the longest fit.

Full attention (MHA/GQA/MQA), MLA (DeepSeek) and sliding-window layers (Gemma, Mistral)
each have their own rule (vllm/v1/kv_cache_interface.py; vllm-memory.md section 1.4).
Every planner answer about context length goes through these functions, on the GPU and
on the CPU backend alike.
"""

from __future__ import annotations

from tuneship.errors import PlanningError
from tuneship.planning.model_facts import ModelFacts

BLOCK_SIZE = 16
"""KV block size in tokens: vllm DEFAULT_BLOCK_SIZE (vllm-memory.md 1.4)."""


def ceil_div(a: int, b: int) -> int:
    """Integer ceiling division (whole blocks, padded vocab)."""
    return -(-a // b)


def kv_dtype_bytes(kv_cache_dtype: str, dtype: str = "auto") -> int:
    """Bytes per KV element.

    1 for ``fp8``; 4 when the model itself runs in float32 (the CPU backend does); else 2
    (vLLM serves float32 checkpoints in 16-bit on GPUs unless told otherwise).

    Raises:
        PlanningError: An unknown ``kv_cache_dtype``.
    """
    if kv_cache_dtype not in ("auto", "fp8"):
        raise PlanningError(f"--kv-cache-dtype must be auto or fp8, got {kv_cache_dtype!r}")
    if kv_cache_dtype == "fp8":
        return 1
    return 4 if dtype == "float32" else 2


def kv_heads_per_gpu(facts: ModelFacts, tensor_parallel_size: int) -> int:
    """KV heads each GPU holds: ``max(1, kv_heads // tp)`` (vLLM replicates when tp > kv)."""
    return max(1, facts.num_kv_heads // tensor_parallel_size)


def layer_kv_bytes_per_token(
    facts: ModelFacts, tensor_parallel_size: int, dtype_bytes: float
) -> int:
    """KV-cache bytes one layer stores per token on one GPU.

    Full attention: ``2 x kv_heads_per_gpu x head_dim x dtype`` (K and V). MLA: one latent
    of ``kv_lora_rank + qk_rope_head_dim`` values, replicated on every TP rank
    (vllm/v1/kv_cache_interface.py, MLAAttentionSpec; vllm-memory.md section 1.4).
    """
    if facts.mla is not None:
        return int(facts.mla.cache_width * dtype_bytes)
    return int(2 * kv_heads_per_gpu(facts, tensor_parallel_size) * facts.head_dim * dtype_bytes)


def kv_bytes_per_token(
    facts: ModelFacts, tp: int, kv_cache_dtype: str = "auto", dtype: str = "auto"
) -> int:
    """KV bytes per token per GPU over all layers, as vLLM sizes its cache in tokens.

    ``layers x 2 x max(1, kv_heads // tp) x head_dim x dtype`` for GQA/MHA/MQA; MLA stores
    ``kv_lora_rank + qk_rope_head_dim`` per layer on every rank (vllm-memory.md 1.4).
    """
    element = kv_dtype_bytes(kv_cache_dtype, dtype)
    return layer_kv_bytes_per_token(facts, tp, element) * facts.num_layers


def kv_request_bytes(
    facts: ModelFacts,
    tp: int,
    length: int,
    kv_cache_dtype: str = "auto",
    max_num_batched_tokens: int = 8192,
    dtype: str = "auto",
) -> int:
    """KV bytes per GPU one request of ``length`` tokens needs.

    Full-attention (and MLA) layers need ``cdiv(length, 16)`` blocks; sliding-window
    layers ``cdiv(min(window - 1 + max_num_batched_tokens, length), 16) + 1`` blocks
    (vllm/v1/kv_cache_interface.py, SlidingWindowSpec.max_memory_usage_bytes).
    """
    if length <= 0:
        return 0
    per_layer_block = layer_kv_bytes_per_token(facts, tp, kv_dtype_bytes(kv_cache_dtype, dtype))
    per_layer_block *= BLOCK_SIZE
    blocks = facts.full_layers * ceil_div(length, BLOCK_SIZE)
    if facts.sliding_layers and facts.sliding_window:
        tokens = min(facts.sliding_window - 1 + max_num_batched_tokens, length)
        blocks += facts.sliding_layers * (ceil_div(tokens, BLOCK_SIZE) + 1)
    return blocks * per_layer_block


def largest_fitting_length(
    facts: ModelFacts,
    tp: int,
    kv_bytes: float,
    limit: int,
    kv_cache_dtype: str = "auto",
    max_num_batched_tokens: int = 8192,
    dtype: str = "auto",
) -> int:
    """The longest request (<= ``limit`` tokens) whose KV cache fits in ``kv_bytes``.

    Returns ``limit`` when it fits, else the largest multiple of 16 that fits, else 0.
    """

    def need(length: int) -> int:
        return kv_request_bytes(facts, tp, length, kv_cache_dtype, max_num_batched_tokens, dtype)

    if limit <= 0 or kv_bytes <= 0:
        return 0
    if need(limit) <= kv_bytes:
        return limit
    lo, hi = 0, limit // BLOCK_SIZE  # need(lo*16) fits (0 always does); find the largest
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if need(mid * BLOCK_SIZE) <= kv_bytes:
            lo = mid
        else:
            hi = mid - 1
    return lo * BLOCK_SIZE
