"""What a RunPod training pod runs: every stage of the staged plan, results pushed to the Hub.

The pod's command (:func:`tuneship.compute.runpod.training_pod_command`) downloads the
staging dataset repo, puts the staged tuneship source first on ``PYTHONPATH`` and runs::

    python -m tuneship.compute.pod_job

Each stage runs as ``python -m tuneship.training.job STAGE SPEC RESULT`` (the entry point the
local path serialises to), with the staged specs' relative paths resolved in the work
folder. After each stage its result file (and, after the merge, the merged model) is
uploaded to the staging repo, where the flow's waiting task finds it. The Hub token comes
from the pod's ``HF_TOKEN`` environment variable, never from the command line.

Environment: ``TUNESHIP_STAGING_REPO`` (dataset repo id), ``HF_TOKEN``, optionally
``HF_ENDPOINT``, ``TUNESHIP_POD_WORKDIR`` (default ``/workspace``) and
``TUNESHIP_POD_ALLOW_CPU`` (tests only: train on the CPU when the pod has no GPU).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

STAGING_REPO_ENV = "TUNESHIP_STAGING_REPO"
WORKDIR_ENV = "TUNESHIP_POD_WORKDIR"
ALLOW_CPU_ENV = "TUNESHIP_POD_ALLOW_CPU"
PLAN_FILE = "pod-plan.json"
RESULTS_DIR = "results"
MERGED_DIR = "merged"


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


def run_pod_plan(workdir: Path, repo_id: str) -> int:
    """Run the staged stages in ``workdir`` (the downloaded staging repo) and push results.

    Returns:
        0 when every stage succeeded, else the failing stage's exit status (its result
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
        status = subprocess.call(command, cwd=workdir)
        if stage == "merge" and status == 0:
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
                commit_message=f"pod: {stage} {'done' if status == 0 else 'failed'}",
            )
        if status != 0:
            return status
    return 0


def main() -> int:
    """Entry point on the pod; returns the exit status."""
    repo_id = os.environ[STAGING_REPO_ENV]
    workdir = Path(os.environ.get(WORKDIR_ENV, "/workspace")) / "tuneship" / "stage"
    return run_pod_plan(workdir, repo_id)


if __name__ == "__main__":
    sys.exit(main())
