"""Tasks: train with eval and merge, each run from a serialised job spec."""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from tuneship.config import PublishConfig
from tuneship.tables import format_markdown_table
from tuneship.tasks._common import TRAINING_RETRY, artifact_key, get_logger, pipeline_task
from tuneship.training import (
    MergeJobSpec,
    MergeResult,
    TrainJobSpec,
    TrainProgress,
    TrainResult,
    run_merge,
    run_training,
)
from tuneship.training.job import write_spec
from tuneship.training.merge import describe_merge_check
from tuneship.training.metrics_report import (
    build_metrics_table,
    render_loss_chart_markdown,
    round_for_readers,
)


class ProgressArtifact:
    """A Prefect progress artifact written from a background thread.

    An API write takes the calling thread tens to hundreds of milliseconds on a busy
    machine; made from the training loop, every one of them stalls training. The trainer
    only records the latest share here (no I/O); a daemon thread creates the artifact (while
    the trainer loads the model: creating it took 0.4 s of the task's fixed cost on a
    loaded machine) and then writes the share at most every ``interval_s`` seconds when it
    moved by at least one percent.
    """

    def __init__(self, run_name: str, interval_s: float = 5.0) -> None:
        self.artifact_id: UUID | None = None
        self._key = artifact_key(run_name, "training-progress")
        self._interval_s = interval_s
        self._pct = 0.0
        self._written = 0.0
        self._done = threading.Event()
        # The thread runs in a copy of this context, so the artifact belongs to this task run.
        context = contextvars.copy_context()
        self._thread = threading.Thread(
            target=context.run, args=(self._run,), name="tuneship-progress", daemon=True
        )
        self._thread.start()

    def set(self, pct: float) -> None:
        """Record the latest share done (0-100); written later by the background thread."""
        self._pct = min(max(pct, 0.0), 100.0)

    def _create(self) -> None:
        try:
            self.artifact_id = create_progress_artifact(  # type: ignore[assignment]
                progress=0.0,
                key=self._key,
                description="Training progress (steps done / total)",
            )
        except Exception:  # a missing progress bar must not fail (or stall) the training run
            get_logger().warning("could not create the training progress artifact", exc_info=True)

    def _run(self) -> None:
        self._create()
        while not self._done.wait(self._interval_s):
            if self._pct - self._written >= 1.0:
                self._write(self._pct)

    def _write(self, pct: float) -> None:
        if self.artifact_id is None:
            return
        try:
            update_progress_artifact(self.artifact_id, pct)
            self._written = pct
        except Exception:  # a lost progress update must not fail (or stall) the training run
            get_logger().warning("could not update the training progress artifact", exc_info=True)

    def close(self, pct: float | None = None) -> None:
        """Stop the thread and write the final share (default: the latest recorded)."""
        self._done.set()
        self._thread.join(timeout=30)
        self._write(self._pct if pct is None else pct)


PROGRESS_LISTENERS: list[Callable[[TrainProgress], None]] = []
"""Extra receivers of every training progress report in this process (the CLI's progress
bar). A listener runs in the training loop, so it must be quick; its errors are logged."""


class _ProgressReporter:
    """Turns trainer callbacks into a progress artifact and throttled progress log lines."""

    LOGGED_KEYS = ("loss", "eval_loss", "learning_rate", "epoch")

    def __init__(
        self, artifact: ProgressArtifact | None = None, eval_every: int | None = None
    ) -> None:
        """Args:
        artifact: The progress artifact to update, if any.
        eval_every: The eval interval in steps (``eval_strategy: steps``), with an eval at
            the last step too; None when unknown. A training line of such a step waits
            for its eval loss, so the step is logged once, with both.
        """
        self.artifact = artifact
        self.eval_every = eval_every
        self._last_logged_step: int | None = None
        self._logged: dict[str, float] = {}
        self._last_log_time = 0.0
        self._pending: tuple[int, int, dict[str, float]] | None = None
        self.logger = get_logger()

    def _is_eval_step(self, step: int, max_steps: int) -> bool:
        return self.eval_every is not None and (step % self.eval_every == 0 or step == max_steps)

    def flush(self) -> None:
        """Log a training line still waiting for its eval loss (training ended first)."""
        if self._pending is not None:
            step, max_steps, shown = self._pending
            self._pending = None
            self._log_line(step, max_steps, shown)

    def _log_line(self, step: int, max_steps: int, shown: dict[str, float]) -> None:
        if step != self._last_logged_step:
            self._last_logged_step, self._logged = step, {}
        self._logged.update(shown)
        self._last_log_time = time.monotonic()
        self.logger.info("step %d/%d %s", step, max_steps, shown)

    def __call__(self, progress: TrainProgress) -> None:
        for listener in PROGRESS_LISTENERS:
            try:
                listener(progress)
            except Exception:  # a broken display must not stop training
                self.logger.warning("progress listener failed", exc_info=True)
        if progress.max_steps <= 0:
            return  # before the trainer knows its step count (no `step 0/0` lines)
        pct = 100.0 * progress.step / progress.max_steps
        now = time.monotonic()
        if self.artifact is not None:
            self.artifact.set(pct)
        shown = {
            k: round(float(v), 4)
            for k, v in progress.logs.items()
            if k in self.LOGGED_KEYS and isinstance(v, int | float)
        }
        # A report carries only its own step's values; of those, a line shows the ones not
        # yet logged (an eval loss logged at the step of an already logged training loss).
        if progress.step == self._last_logged_step:
            shown = {k: v for k, v in shown.items() if self._logged.get(k) != v}
        if self._pending is not None:
            step, _, waiting = self._pending
            if step == progress.step:
                # The eval loss of a step whose training line waited: one line with both.
                self._pending = None
                shown = {**waiting, **shown}
            else:
                self.flush()
        if not shown:
            return
        if "eval_loss" not in shown and self._is_eval_step(progress.step, progress.max_steps):
            self._pending = (progress.step, progress.max_steps, shown)
            return
        # Log lines likewise: every eval loss, otherwise at most one per 5 s.
        if "eval_loss" in shown or now - self._last_log_time >= 5.0 or pct >= 100.0:
            self._log_line(progress.step, progress.max_steps, shown)


def prepare_hub_checkpoints(
    spec: TrainJobSpec, publish: PublishConfig | None, run_name: str
) -> list[Any]:
    """Return the checkpoint-pushing callback, fetching a pushed checkpoint to resume from.

    Args:
        spec: The training job.
        publish: The ``publish`` config section, or None.
        run_name: Names the run in checkpoint commit messages.

    Returns:
        Extra trainer callbacks (empty unless checkpoints are pushed to the Hub).
    """
    if publish is None or publish.target != "hub" or not publish.push_checkpoints:
        return []
    from tuneship.blocks.credentials import resolve_hf_token
    from tuneship.hub.checkpoints import PushCheckpointsCallback, download_latest_checkpoint
    from tuneship.hub.client import make_api
    from tuneship.training.train import find_latest_checkpoint

    api = make_api(resolve_hf_token(publish.hf_credentials_block), publish.hub_endpoint)
    if (
        spec.training.resume_from_checkpoint == "auto"
        and find_latest_checkpoint(Path(spec.output_dir)) is None
    ):
        fetched = download_latest_checkpoint(api, publish.repo_id, Path(spec.output_dir))
        if fetched is not None:
            get_logger().info("resume: fetched %s from the Hub", fetched.name)
    return [PushCheckpointsCallback(api, publish.repo_id, run_name=run_name)]


@pipeline_task(
    "train-with-eval",
    TRAINING_RETRY,
    run_name="train-{spec.training.method}-{spec.training.adapter}-{run_name}",
)
def train_model(
    spec: TrainJobSpec, run_name: str, publish: PublishConfig | None = None
) -> TrainResult:
    """Train from a job spec, reporting progress and metric series as artifacts.

    With ``publish.target=hub`` and ``publish.push_checkpoints``, every saved checkpoint is
    pushed to the repo's ``checkpoints`` branch, and ``training.resume_from_checkpoint=auto``
    first fetches the newest pushed checkpoint when none is on local disk, so a lost machine
    costs at most one save interval.

    Args:
        spec: The training job (serialised to ``<output_dir>/train-spec.json`` first).
        run_name: The run's name, used in artifact keys.
        publish: The ``publish`` config section (for checkpoint pushing); tokens are read from
            the credentials block or environment here, never passed as parameters.

    Returns:
        Where the adapter (or full model) is, and the losses.
    """
    spec_file = write_spec(spec, Path(spec.output_dir) / "train-spec.json")
    loaded = TrainJobSpec.model_validate_json(spec_file.read_text(encoding="utf-8"))
    callbacks = prepare_hub_checkpoints(loaded, publish, run_name)
    artifact = ProgressArtifact(run_name)
    evals = loaded.training.eval_strategy == "steps" and loaded.eval_path is not None
    reporter = _ProgressReporter(artifact, loaded.training.eval_steps if evals else None)
    finished = False
    try:
        result = run_training(loaded, on_progress=reporter, callbacks=callbacks)
        finished = True
    finally:
        reporter.flush()
        # A failed run's artifact stays at the share it reached.
        artifact.close(100.0 if finished else None)
    publish_training_artifacts(result, run_name)
    return result


def publish_training_artifacts(result: TrainResult, run_name: str) -> None:
    """Create the metrics table, the loss chart and the training summary artifacts.

    Args:
        result: The finished training run.
        run_name: The run's name, used in artifact keys.
    """
    table = build_metrics_table(result)
    if table:
        create_table_artifact(
            table=table,
            key=artifact_key(run_name, "training-metrics"),
            description="Training and eval loss by step (4 significant digits)",
        )
        create_markdown_artifact(
            markdown=render_loss_chart_markdown(result),
            key=artifact_key(run_name, "loss-chart"),
            description="Train and eval loss by step; dashed: the base model's eval loss",
        )

    def shown(value: float | None) -> str:
        return "not measured" if value is None else f"{round_for_readers(value):g}"

    rows = [
        ("method", f"{result.method} ({result.adapter})"),
        ("steps", result.global_step),
        ("train loss", shown(result.train_loss)),
        ("base eval loss", shown(result.base_eval_loss)),
        ("fine-tuned eval loss", shown(result.eval_loss)),
        ("best checkpoint", result.best_checkpoint or "none kept"),
    ]
    create_markdown_artifact(
        markdown=format_markdown_table(("metric", "value"), rows),
        key=artifact_key(run_name, "training-summary"),
        description="Training summary",
    )


def _name_merge_run(parameters: dict[str, Any]) -> str:
    spec = parameters["spec"]
    if isinstance(spec, dict):
        spec = MergeJobSpec.model_validate(spec)
    run = Path(spec.output_dir).parent.name
    return f"merge-adapter-{run}" if spec.is_adapter else f"save-full-model-{run}"


@pipeline_task("merge-adapter", run_name=_name_merge_run)
def merge_adapter(spec: MergeJobSpec) -> MergeResult:
    """Merge the adapter into the base and verify the merge on eval rows.

    Args:
        spec: The merge job (serialised to ``<output_dir>/../merge-spec.json`` first).

    Returns:
        The merged folder and the self-check's figures (difference from the float32
        reference, the dtype's own noise, the fine-tune's effect, top-1 agreement).
    """
    spec_file = write_spec(spec, Path(spec.output_dir).parent / "merge-spec.json")
    result = run_merge(MergeJobSpec.model_validate_json(spec_file.read_text(encoding="utf-8")))
    get_logger().info("merge: %s (%s)", result.merged_dir, describe_merge_check(result))
    return result
