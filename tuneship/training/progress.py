"""A trainer callback that turns transformers' training state into progress reports."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from tuneship.training.specs import TrainProgress

logger = logging.getLogger(__name__)

MAX_STEP_REPORTS = 100
"""Between log events, report at most this many step updates per run."""


class ProgressCallback(TrainerCallback):
    """Call ``on_progress`` with the step, the step count and the metrics logged at that step.

    Reports on every log event and, between logs, on about ``MAX_STEP_REPORTS`` evenly
    spaced steps so long runs do not flood the reporter. A report carries only the values
    logged at its own step (a training loss and an eval loss logged at the same step come
    together); a later step's report never repeats them, and the pre-training evaluation
    (step 0, or the base model before a resumed run restores its checkpoint) never shows up
    as a training step's eval loss. A failing reporter is logged, never allowed to stop
    training.
    """

    def __init__(self, on_progress: Callable[[TrainProgress], None]) -> None:
        self._on_progress = on_progress
        self._logs: dict[str, float] = {}
        self._logs_step: int | None = None
        self._training = False

    def on_train_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        **kwargs: Any,
    ) -> None:
        """Forget what was logged before training (the base model's evaluation)."""
        self._training = True
        self._logs, self._logs_step = {}, None

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Record the numbers logged at this step and report them."""
        if not self._training:
            # The pre-training evaluation: the caller reports the base loss itself, and a
            # resumed run is not at the step this log claims.
            return
        if self._logs_step != state.global_step:
            self._logs, self._logs_step = {}, state.global_step
        for key, value in (logs or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self._logs[key] = float(value)
        self._report(state)

    def on_step_end(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        **kwargs: Any,
    ) -> None:
        """Report every few steps between log events."""
        every = max(1, state.max_steps // MAX_STEP_REPORTS)
        if state.global_step % every == 0:
            self._report(state)

    def on_train_end(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        **kwargs: Any,
    ) -> None:
        """Stop reporting: a final evaluation after training belongs to the caller."""
        self._training = False

    def _report(self, state: TrainerState) -> None:
        logs = self._logs if self._logs_step == state.global_step else {}
        progress = TrainProgress(
            step=state.global_step,
            max_steps=state.max_steps,
            epoch=state.epoch,
            logs=dict(logs),
        )
        try:
            self._on_progress(progress)
        except Exception:  # a broken progress reporter must not kill a long training run
            logger.exception("progress callback failed at step %s", state.global_step)
