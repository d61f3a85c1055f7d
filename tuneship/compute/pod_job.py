"""What a RunPod training pod runs: every stage of the staged plan, results pushed to the Hub.

The pod's command (:func:`tuneship.compute.runpod.training_pod_command`) downloads the
staging dataset repo, puts the staged tuneship source first on ``PYTHONPATH`` and runs::

    python -m tuneship.compute.pod_job

Each stage runs as ``python -m tuneship.training.job STAGE SPEC RESULT`` (the entry point the
local path serialises to), with the staged specs' relative paths resolved in the work
folder. After each stage its result file (and, after the merge, the merged model) is
uploaded to the staging repo, where the flow's waiting task finds it. The Hub token comes
from the pod's ``HF_TOKEN`` environment variable, never from the command line.

With ``TUNESHIP_STATUS_TOKEN`` set, the status endpoint of :mod:`tuneship.compute.pod_status`
serves live progress (and a stop action) on ``TUNESHIP_STATUS_PORT`` (default 8765) from
the start: the flow's start-up phase ends when it first answers. After a requested stop,
training pushes a checkpoint, the endpoint says which, and the pod waits to be terminated.

Environment: ``TUNESHIP_STAGING_REPO`` (dataset repo id), ``HF_TOKEN``, optionally
``HF_ENDPOINT``, ``TUNESHIP_POD_WORKDIR`` (default ``/workspace``) and
``TUNESHIP_POD_ALLOW_CPU`` (tests only: train on the CPU when the pod has no GPU).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tuneship.compute.pod_status import (
    STATUS_PORT,
    STATUS_PORT_ENV,
    STATUS_TOKEN_ENV,
    STOPPED_EXIT,
    PodStatus,
    serve_status,
)

STAGING_REPO_ENV = "TUNESHIP_STAGING_REPO"
WORKDIR_ENV = "TUNESHIP_POD_WORKDIR"
ALLOW_CPU_ENV = "TUNESHIP_POD_ALLOW_CPU"
PLAN_FILE = "pod-plan.json"
RESULTS_DIR = "results"
MERGED_DIR = "merged"
STOPPED_LINGER_S = 1800.0
"""After a requested stop, how long the pod keeps answering before it exits by itself."""


def _device_for_pod() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if os.environ.get(ALLOW_CPU_ENV) == "1":
        return "cpu"
    raise RuntimeError(
        "the pod has no usable CUDA GPU (torch.cuda.is_available() is False): the image's "
        "torch build does not match the host's driver; pick another compute.runpod.image"
    )


def _with_device(spec_file: Path, device: str) -> None:
    data: dict[str, Any] = json.loads(spec_file.read_text(encoding="utf-8"))
    data["device"] = device
    spec_file.write_text(json.dumps(data, indent=2), encoding="utf-8")


def _newest_checkpoint(output_dir: Path) -> str | None:
    steps = [
        int(m.group(1))
        for p in output_dir.glob("checkpoint-*")
        if (m := re.fullmatch(r"checkpoint-(\d+)", p.name)) and p.is_dir()
    ]
    return f"checkpoint-{max(steps)}" if steps else None


def run_pod_plan(workdir: Path, repo_id: str, status: PodStatus | None = None) -> int:
    """Run the staged stages in ``workdir`` (the downloaded staging repo) and push results.

    Args:
        workdir: The downloaded staging repo.
        repo_id: The staging repo the results go to.
        status: The status endpoint's state (phases, progress, stop), or None.

    Returns:
        0 when every stage succeeded, :data:`STOPPED_EXIT` after a requested stop (the
        checkpoint is pushed, no result), else the failing stage's exit status (its result
        file, with the error, is pushed first so the flow reports it).
    """
    from huggingface_hub import HfApi

    api = HfApi()
    plan = json.loads((workdir / PLAN_FILE).read_text(encoding="utf-8"))
    device = _device_for_pod()
    for stage in plan["stages"]:
        spec = workdir / "specs" / f"{stage}-spec.json"
        _with_device(spec, device)
        result = workdir / RESULTS_DIR / f"{stage}.json"
        command = [sys.executable, "-m", "tuneship.training.job", stage, str(spec), str(result)]
        if stage == "train" and plan.get("checkpoint_repo"):
            # A replacement pod resumes from the newest checkpoint pushed here.
            command += ["--push-checkpoints", str(plan["checkpoint_repo"])]
        if stage == "train" and status is not None:
            command += ["--progress-file", str(status.progress_file)]
            command += ["--stop-file", str(status.stop_file)]
        if status is not None:
            status.set_phase(stage)
        code = subprocess.call(command, cwd=workdir)
        if stage == "train" and status is not None and status.stop_requested:
            # Stopped on request (the budget): the checkpoint is pushed; no result, no merge.
            status.set_phase(
                "stopped",
                checkpoint=_newest_checkpoint(workdir / "out" / "train"),
                checkpoint_repo=plan.get("checkpoint_repo"),
            )
            return STOPPED_EXIT
        if stage == "merge" and code == 0:
            api.upload_folder(
                repo_id=repo_id,
                repo_type="dataset",
                folder_path=str(workdir / "out" / MERGED_DIR),
                path_in_repo=MERGED_DIR,
                commit_message="pod: merged model",
            )
        if result.is_file():
            api.upload_file(
                repo_id=repo_id,
                repo_type="dataset",
                path_or_fileobj=str(result),
                path_in_repo=f"{RESULTS_DIR}/{stage}.json",
                commit_message=f"pod: {stage} {'done' if code == 0 else 'failed'}",
            )
        if code != 0:
            if status is not None:
                status.set_phase("failed", error=f"{stage} exited with status {code}")
            return code
    if status is not None:
        status.set_phase("done")
    return 0


def main() -> int:
    """Entry point on the pod; returns the exit status."""
    repo_id = os.environ[STAGING_REPO_ENV]
    workdir = Path(os.environ.get(WORKDIR_ENV, "/workspace")) / "tuneship" / "stage"
    token = os.environ.get(STATUS_TOKEN_ENV, "")
    if not token:
        return run_pod_plan(workdir, repo_id)
    status = PodStatus(workdir.parent / "progress.jsonl", workdir.parent / "stop-requested")
    serve_status(status, token, int(os.environ.get(STATUS_PORT_ENV, STATUS_PORT)))
    code = run_pod_plan(workdir, repo_id, status)
    if code == STOPPED_EXIT:
        # Keep answering so the flow reads where the checkpoint is; it terminates the pod.
        deadline = time.monotonic() + STOPPED_LINGER_S
        while time.monotonic() < deadline:
            time.sleep(5)
    return code


if __name__ == "__main__":
    sys.exit(main())
