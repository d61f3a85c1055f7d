"""Retry a training run once after a CUDA out-of-memory error at its start.

A batch that fits the planner's estimate can still run out of memory on the first step
(fragmentation, a longer-than-planned row, another process on the GPU). Before any
optimizer step has run, nothing is lost by starting again with half the per-device batch
and twice the gradient accumulation: the effective batch, and so the training recipe,
stays the same. An OOM later in training is not retried (it is a real planning error).

Test-only fault hook: with ``TUNESHIP_FAULT_OOM_FIRST_STEP=1`` in the environment the
first attempt raises a CUDA out-of-memory error at its first step (documented in
docs/runpod.md), so the retry can be tested on a CPU.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from tuneship.errors import TrainingError
from tuneship.training.specs import TrainJobSpec, TrainResult

FAULT_OOM_ENV = "TUNESHIP_FAULT_OOM_FIRST_STEP"


def halve_batch(spec: TrainJobSpec) -> TrainJobSpec | None:
    """The same run with half the per-device batch and twice the accumulation.

    Returns:
        The new spec, or None when the per-device batch is already 1.
    """
    training = spec.training
    if training.per_device_train_batch_size < 2:
        return None
    update = {
        "per_device_train_batch_size": training.per_device_train_batch_size // 2,
        "gradient_accumulation_steps": training.gradient_accumulation_steps * 2,
        "per_device_eval_batch_size": max(1, training.per_device_eval_batch_size // 2),
    }
    return spec.model_copy(update={"training": training.model_copy(update=update)})


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or "CUDA out of memory" in str(exc)


class _StepWatch:
    """A trainer callback that records whether an optimizer step finished (and injects
    the test-only OOM on the first step when asked)."""

    def __init__(self, inject_oom: bool) -> None:
        from transformers import TrainerCallback

        watch = self

        class Callback(TrainerCallback):  # type: ignore[misc]
            def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                if watch.inject_oom:
                    watch.inject_oom = False
                    import torch

                    raise torch.OutOfMemoryError(
                        "CUDA out of memory. Tried to allocate 2.00 GiB "
                        f"(injected by {FAULT_OOM_ENV})"
                    )

            def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                watch.stepped = True

        self.inject_oom = inject_oom
        self.stepped = False
        self.callback = Callback()


def train_with_oom_retry(
    spec: TrainJobSpec,
    run: Callable[[TrainJobSpec, list[Any]], TrainResult],
    callbacks: list[Any],
) -> TrainResult:
    """Run ``run(spec, callbacks)``; after an OOM before the first step, retry once halved.

    Args:
        spec: The training job.
        run: Trains one attempt (``run_training`` with the caller's progress reporting).
        callbacks: Trainer callbacks for every attempt.

    Returns:
        The result; its notes say when the batch was halved.

    Raises:
        TrainingError: The retry ran out of memory too, or the OOM came after training
            had started, or the batch could not be halved (the message says what to change).
    """
    watch = _StepWatch(inject_oom=os.environ.get(FAULT_OOM_ENV) == "1")
    try:
        return run(spec, [*callbacks, watch.callback])
    except Exception as exc:
        if not _is_oom(exc):
            raise
        first = exc
    smaller = halve_batch(spec)
    t = spec.training
    if watch.stepped or smaller is None:
        where = "during training" if watch.stepped else "with a per-device batch of 1"
        raise TrainingError(
            f"CUDA out of memory {where} (batch {t.per_device_train_batch_size} x "
            f"{t.gradient_accumulation_steps} accumulation): use a GPU with more memory, "
            "training.gradient_checkpointing=true, a shorter data.max_length or qlora. "
            f"The error: {first}"
        ) from None
    s = smaller.training
    note = (
        f"CUDA out of memory at the start of training with per-device batch "
        f"{t.per_device_train_batch_size} x {t.gradient_accumulation_steps} accumulation; "
        f"retried with {s.per_device_train_batch_size} x {s.gradient_accumulation_steps} "
        "(same effective batch)"
    )
    print(f"oom-retry: {note}", flush=True)
    _free_cuda()
    try:
        result = run(smaller, list(callbacks))
    except Exception as exc:
        if not _is_oom(exc):
            raise
        raise TrainingError(
            f"CUDA out of memory again after halving the batch ({note}): use a GPU with "
            "more memory, training.gradient_checkpointing=true, a shorter data.max_length "
            f"or qlora. The error: {exc}"
        ) from None
    return result.model_copy(update={"notes": [*result.notes, note]})


def _free_cuda() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
