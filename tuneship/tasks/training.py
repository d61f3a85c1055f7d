"""Tasks: train with eval and merge, each run from a serialised job spec."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE

from tuneship.config import PublishConfig
from tuneship.tasks._common import artifact_key, get_logger, retry_on_transient
from tuneship.training import (
    MergeJobSpec,
    MergeResult,
    TrainJobSpec,
    TrainProgress,
    TrainResult,
    run_merge,
    run_training,
)
from tuneship.training.merge import describe_merge_check


def write_spec(spec: TrainJobSpec | MergeJobSpec, path: Path) -> Path:
    """Serialise a job spec to JSON; the same file can run inside a rented pod."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(spec.model_dump_json(indent=2), encoding="utf-8")
    return path


class _ProgressReporter:
    """Turns trainer callbacks into a throttled Prefect progress artifact."""

    LOGGED_KEYS = ("loss", "eval_loss", "learning_rate", "epoch")

    def __init__(self, run_name: str) -> None:
        self.artifact_id: UUID = create_progress_artifact(  # type: ignore[assignment]
            progress=0.0,
            key=artifact_key(run_name, "training-progress"),
            description="Training progress (steps done / total)",
        )
        self._last_logged: tuple[Any, ...] | None = None
        self._last_log_time = 0.0
        self._last_eval: float | None = None
        self._last_pct = -1.0
        self._last_time = 0.0
        self.logger = get_logger()

    def __call__(self, progress: TrainProgress) -> None:
        pct = 100.0 * progress.step / progress.max_steps if progress.max_steps else 0.0
        now = time.monotonic()
        # Every API write costs the training loop time (and the local API server competes
        # for the same cores): at most one progress update per percent and per 5 s.
        if pct >= 100.0 or (pct - self._last_pct >= 1.0 and now - self._last_time >= 5.0):
            update_progress_artifact(self.artifact_id, min(pct, 100.0))
            self._last_pct, self._last_time = pct, now
        shown = {
            k: round(float(v), 4)
            for k, v in progress.logs.items()
            if k in self.LOGGED_KEYS and isinstance(v, int | float)
        }
        if not shown:
            return
        new_eval = shown.get("eval_loss") != self._last_eval
        # Log lines likewise: every new eval loss, otherwise at most one per 5 s.
        if new_eval or now - self._last_log_time >= 5.0 or progress.step >= progress.max_steps:
            key = (progress.step, tuple(sorted(shown.items())))
            if key != self._last_logged:
                self._last_logged, self._last_log_time = key, now
                self._last_eval = shown.get("eval_loss")
                self.logger.info("step %d/%d %s", progress.step, progress.max_steps, shown)


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


def _series_table(result: TrainResult) -> list[dict[str, Any]]:
    rows: dict[int, dict[str, Any]] = {}
    for step, value in result.loss_history:
        rows.setdefault(int(step), {"step": int(step)})["loss"] = round(float(value), 5)
    for step, value in result.eval_loss_history:
        rows.setdefault(int(step), {"step": int(step)})["eval_loss"] = round(float(value), 5)
    return [rows[k] for k in sorted(rows)]


@task(
    name="train-with-eval",
    retries=1,
    retry_delay_seconds=10,
    retry_condition_fn=retry_on_transient,
    cache_policy=NO_CACHE,
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
    reporter = _ProgressReporter(run_name)
    result = run_training(loaded, on_progress=reporter, callbacks=callbacks)
    update_progress_artifact(reporter.artifact_id, 100.0)
    table = _series_table(result)
    if table:
        create_table_artifact(
            table=table,
            key=artifact_key(run_name, "training-metrics"),
            description="Training and eval loss (at most ~200 points)",
        )
    lines = [
        "| metric | value |",
        "|---|---|",
        f"| method | {result.method} ({result.adapter}) |",
        f"| steps | {result.global_step} |",
        f"| train loss | {result.train_loss} |",
        f"| base eval loss | {result.base_eval_loss} |",
        f"| fine-tuned eval loss | {result.eval_loss} |",
        f"| best checkpoint | {result.best_checkpoint} |",
    ]
    create_markdown_artifact(
        markdown="\n".join(lines),
        key=artifact_key(run_name, "training-summary"),
        description="Training summary",
    )
    return result


@task(name="merge-adapter", retries=0, cache_policy=NO_CACHE)
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
