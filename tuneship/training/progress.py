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
    """Call ``on_progress`` with the step, the step count and the latest logged metrics.

    Reports on every log event and, between logs, on about ``MAX_STEP_REPORTS`` evenly
    spaced steps so long runs do not flood the reporter. A failing reporter is logged,
    never allowed to stop training.
    """

    def __init__(self, on_progress: Callable[[TrainProgress], None]) -> None:
        self._on_progress = on_progress
        self._logs: dict[str, float] = {}

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Record the newly logged numbers and report."""
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

    def _report(self, state: TrainerState) -> None:
        progress = TrainProgress(
            step=state.global_step,
            max_steps=state.max_steps,
            epoch=state.epoch,
            logs=dict(self._logs),
        )
        try:
            self._on_progress(progress)
        except Exception:  # a broken progress reporter must not kill a long training run
            logger.exception("progress callback failed at step %s", state.global_step)
