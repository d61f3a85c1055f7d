"""Run a training or merge stage from a JSON spec, e.g. inside a rented pod.

Usage::

    python -m tuneship.training.job train SPEC.json RESULT.json [--progress-file P.jsonl]
        [--push-checkpoints REPO] [--stop-file STOP]
    python -m tuneship.training.job merge SPEC.json RESULT.json
    python -m tuneship.training.job package|load_check|publish SPEC.json RESULT.json

(The last three are the stages a RunPod training pod runs after the merge; see
:mod:`tuneship.compute.stage_jobs`.) A CUDA out-of-memory error at the start of training
is retried once with half the per-device batch and twice the accumulation
(:mod:`tuneship.training.oom_retry`, whose test-only fault hook is the
``TUNESHIP_FAULT_OOM_FIRST_STEP=1`` environment variable).

On success RESULT.json holds ``{"ok": true, "result": {...}}``; on an error a user can
fix it holds ``{"ok": false, "error_type": ..., "message": ...}`` and the exit status is
1. :func:`read_job_result` turns that file back into a result or the original error.
Progress lines are printed to stdout as ``TUNESHIP_PROGRESS {json}`` (and appended to
``--progress-file`` when given) so a caller can follow a remote run from its logs.
When ``--stop-file`` appears, training saves (and pushes) a checkpoint and stops.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from tuneship import errors
from tuneship.compute import stage_jobs
from tuneship.errors import TuneshipError
from tuneship.packaging import PackageResult
from tuneship.publishing.base import PublishResult
from tuneship.training.specs import (
    MergeJobSpec,
    MergeResult,
    TrainJobSpec,
    TrainProgress,
    TrainResult,
)

PROGRESS_PREFIX = "TUNESHIP_PROGRESS "
_STAGES: dict[str, tuple[type[BaseModel], type[BaseModel], type[TuneshipError]]] = {
    "train": (TrainJobSpec, TrainResult, errors.TrainingError),
    "merge": (MergeJobSpec, MergeResult, errors.MergeError),
    "package": (stage_jobs.PackageJobSpec, PackageResult, errors.PackagingError),
    "load_check": (stage_jobs.LoadCheckJobSpec, stage_jobs.LoadCheckResult, errors.ServingError),
    "publish": (stage_jobs.PublishJobSpec, PublishResult, errors.PublishError),
}
_RUNNERS: dict[str, Any] = {
    "package": stage_jobs.run_package_job,
    "load_check": stage_jobs.run_load_check_job,
    "publish": stage_jobs.run_publish_job,
}


def write_spec(spec: BaseModel, path: str | Path) -> Path:
    """Write a job spec as JSON and return the path."""
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(spec.model_dump_json(indent=2), encoding="utf-8")
    return file


def read_job_result(path: str | Path, stage: str) -> Any:
    """Read a result file written by this module.

    Args:
        path: The RESULT.json file.
        stage: ``train``, ``merge``, ``package``, ``load_check`` or ``publish``.

    Returns:
        The stage's result (e.g. a :class:`TrainResult` or :class:`MergeResult`).

    Raises:
        TuneshipError: The job failed; the error has the job's own type and message.
    """
    _, result_type, default_error = _STAGES[stage]
    file = Path(path)
    if not file.is_file():
        raise default_error(f"{stage} job wrote no result file {file} (did it crash?)")
    data = json.loads(file.read_text(encoding="utf-8"))
    if data.get("ok"):
        return result_type.model_validate(data["result"])
    error_type = getattr(errors, str(data.get("error_type")), None)
    if not (isinstance(error_type, type) and issubclass(error_type, TuneshipError)):
        error_type = default_error
    raise error_type(str(data.get("message", f"{stage} job failed")))


def _progress_printer(progress_file: Path | None) -> Any:
    def report(progress: TrainProgress) -> None:
        line = progress.model_dump_json()
        print(PROGRESS_PREFIX + line, flush=True)
        if progress_file is not None:
            with progress_file.open("a", encoding="utf-8") as handle:
                handle.write(line + "\n")

    return report


def _hub_checkpoint_callbacks(spec: TrainJobSpec, repo_id: str) -> list[Any]:
    """Push checkpoints to ``repo_id``'s checkpoints branch; fetch the newest to resume from.

    The token is ``HF_TOKEN`` from the environment (a pod's secret), never an argument.
    """
    from huggingface_hub import HfApi

    from tuneship.hub.checkpoints import PushCheckpointsCallback, download_latest_checkpoint
    from tuneship.training.train import find_latest_checkpoint

    api = HfApi()
    if (
        spec.training.resume_from_checkpoint == "auto"
        and find_latest_checkpoint(Path(spec.output_dir)) is None
    ):
        fetched = download_latest_checkpoint(api, repo_id, Path(spec.output_dir))
        if fetched is not None:
            print(f"resume: fetched {fetched.name} from {repo_id}", flush=True)
    return [PushCheckpointsCallback(api, repo_id)]


def run_job(
    stage: str,
    spec_path: str | Path,
    progress_file: str | Path | None = None,
    push_checkpoints: str | None = None,
    stop_file: str | Path | None = None,
) -> Any:
    """Load a spec file and run its stage in this process.

    Args:
        stage: ``train``, ``merge``, ``package``, ``load_check`` or ``publish``.
        spec_path: The spec JSON file.
        progress_file: Append training progress here (JSONL).
        push_checkpoints: A Hub model repo whose ``checkpoints`` branch gets every saved
            checkpoint (and, with ``resume_from_checkpoint=auto``, gives the newest back).
        stop_file: Save a checkpoint and stop training once this file exists.

    Raises:
        TuneshipError: The spec is invalid or the stage failed.
    """
    spec_type, _, default_error = _STAGES[stage]
    try:
        spec = spec_type.model_validate_json(Path(spec_path).read_text(encoding="utf-8"))
    except (OSError, ValidationError) as exc:
        raise default_error(f"{spec_path}: cannot read {stage} spec: {exc}") from None
    if isinstance(spec, TrainJobSpec):
        from tuneship.training.oom_retry import train_with_oom_retry
        from tuneship.training.train import run_training

        file = Path(progress_file) if progress_file else None
        callbacks = _hub_checkpoint_callbacks(spec, push_checkpoints) if push_checkpoints else []
        if stop_file:
            from tuneship.training.stop_file import StopFileCallback

            callbacks.append(StopFileCallback(stop_file))
        printer = _progress_printer(file)
        return train_with_oom_retry(
            spec,
            lambda s, cbs: run_training(s, on_progress=printer, callbacks=cbs),
            callbacks,
        )
    if stage in _RUNNERS:
        return _RUNNERS[stage](spec)
    assert isinstance(spec, MergeJobSpec)
    from tuneship.training.merge import run_merge

    return run_merge(spec)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m tuneship.training.job", description=__doc__)
    parser.add_argument("stage", choices=sorted(_STAGES))
    parser.add_argument("spec", help="job spec JSON file")
    parser.add_argument("result", help="where to write the result JSON")
    parser.add_argument("--progress-file", help="append progress reports here (JSONL)")
    parser.add_argument(
        "--push-checkpoints",
        metavar="REPO",
        help="push checkpoints to REPO's 'checkpoints' branch and resume from it (HF_TOKEN)",
    )
    parser.add_argument(
        "--stop-file", metavar="STOP", help="save a checkpoint and stop once STOP exists"
    )
    args = parser.parse_args(argv)
    result_file = Path(args.result)
    result_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        result = run_job(
            args.stage, args.spec, args.progress_file, args.push_checkpoints, args.stop_file
        )
    except TuneshipError as exc:
        payload = {"ok": False, "error_type": type(exc).__name__, "message": str(exc)}
        result_file.write_text(json.dumps(payload, indent=2), encoding="utf-8")
        print(f"error: {exc}", file=sys.stderr)
        return 1
    payload = {"ok": True, "result": result.model_dump(mode="json")}
    result_file.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
