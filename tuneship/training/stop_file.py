"""A trainer callback that saves a checkpoint and stops when a file appears.

A rented pod's status endpoint creates the file when the run's budget is reached; the
save that follows pushes the checkpoint (with ``--push-checkpoints``) before training ends.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments


class StopFileCallback(TrainerCallback):
    """Save and stop at the end of the first step after ``path`` exists.

    Args:
        path: The file whose appearance asks training to stop.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.stopped_at: int | None = None

    def on_step_end(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        **kwargs: Any,
    ) -> None:
        """Ask the Trainer to save and stop once the stop file is there."""
        if self.stopped_at is None and self.path.exists():
            self.stopped_at = state.global_step
            control.should_save = True
            control.should_training_stop = True
