"""Training progress in the terminal: a rich progress bar on a TTY, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING

from tuneship.training.specs import TrainProgress

if TYPE_CHECKING:
    from rich.progress import TaskID


class PlainProgress:
    """Write one ``training: step N/M loss L`` line at most every ``interval_s`` seconds."""

    def __init__(self, stream: IO[str], interval_s: float = 10.0) -> None:
        self._stream = stream
        self._interval_s = interval_s
        self._last = 0.0
        self._loss: float | None = None

    def __call__(self, progress: TrainProgress) -> None:
        """Record a report; print a line when the interval passed or training finished."""
        if progress.max_steps <= 0:
            return
        self._loss = progress.logs.get("loss", self._loss)
        now = time.monotonic()
        if now - self._last < self._interval_s and progress.step < progress.max_steps:
            return
        self._last = now
        loss = "" if self._loss is None else f" loss {self._loss:.4g}"
        self._stream.write(f"training: step {progress.step}/{progress.max_steps}{loss}\n")
        self._stream.flush()


class BarProgress:
    """A rich progress bar: step, latest training loss, eval loss and time left."""

    def __init__(self, stream: IO[str]) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("training"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[losses]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(file=stream),
            transient=False,
        )
        self._task: TaskID | None = None
        self._losses: dict[str, float] = {}

    def __call__(self, progress: TrainProgress) -> None:
        """Move the bar to the reported step and show the step's losses."""
        if progress.max_steps <= 0:
            return
        for key in ("loss", "eval_loss"):
            if key in progress.logs:
                self._losses[key] = progress.logs[key]
        losses = "  ".join(f"{k} {v:.4g}" for k, v in self._losses.items())
        if self._task is None:
            self.bar.start()
            self._task = self.bar.add_task("training", total=progress.max_steps, losses=losses)
        self.bar.update(
            self._task, completed=progress.step, total=progress.max_steps, losses=losses
        )

    def stop(self) -> None:
        """Leave the finished bar on screen."""
        if self._task is not None:
            self.bar.stop()


@contextmanager
def show_training_progress(stream: IO[str] | None = None) -> Iterator[None]:
    """Show training progress on ``stream`` (stderr) while the block runs.

    On a terminal a progress bar, otherwise plain lines (logs, CI) every few seconds.

    Args:
        stream: Where to draw; stderr by default.
    """
    from tuneship.tasks.training import PROGRESS_LISTENERS

    out = stream or sys.stderr
    display: BarProgress | PlainProgress = BarProgress(out) if out.isatty() else PlainProgress(out)
    listener: Callable[[TrainProgress], None] = display
    PROGRESS_LISTENERS.append(listener)
    try:
        yield
    finally:
        PROGRESS_LISTENERS.remove(listener)
        if isinstance(display, BarProgress):
            display.stop()
