"""What a RunPod training pod runs: every stage of the staged plan, results pushed to the Hub.

The pod's command (:func:`tuneship.compute.runpod.training_pod_command`) downloads the
staging dataset repo, puts the staged tuneship source first on ``PYTHONPATH`` and runs::

    python -m tuneship.compute.pod_job

Each stage (train, merge, package, load_check, publish) runs as ``python -m
tuneship.training.job STAGE SPEC RESULT`` (the entry point the local path serialises to),
with the staged specs' relative paths resolved in the work folder. After each stage its
result file (and, after training, the adapter) is committed to the staging repo, where the
flow's waiting task finds it. The merged and packaged weights stay on the pod; the publish
stage pushes the package to the model repo itself. The package and publish specs come from
the flow while the pod runs (the card needs the training metrics; the publish spec is the
flow's go after its publish gate). The Hub token comes from the pod's ``HF_TOKEN``
environment variable, never from the command line.

With ``TUNESHIP_STATUS_TOKEN`` set, the status endpoint of :mod:`tuneship.compute.pod_status`
serves live progress (and a stop action) on ``TUNESHIP_STATUS_PORT`` (default 8765) from
the start: the flow's start-up phase ends when it first answers. After a requested stop,
training pushes a checkpoint, the endpoint says which, and the pod waits to be terminated.

Environment: ``TUNESHIP_STAGING_REPO`` (dataset repo id), ``HF_TOKEN``, optionally
``HF_ENDPOINT``, ``TUNESHIP_POD_WORKDIR`` (default ``/workspace``) and
``TUNESHIP_POD_ALLOW_CPU`` (tests only: train on the CPU when the pod has no GPU),
``TUNESHIP_POD_SPEC_TIMEOUT_S`` (how long to wait for the flow's next spec, 3600 s).
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
SPEC_TIMEOUT_ENV = "TUNESHIP_POD_SPEC_TIMEOUT_S"
RESULTS_DIR = "results"
MERGED_DIR = "merged"
TRAINED_DIR = "out/train/final"
SPEC_POLL_S = 3.0
# The stages a pod runs, in order; the flow waits on each one's result.
POD_STAGES = ("train", "merge", "package", "load_check", "publish")
DEVICE_STAGES = ("train", "merge")
# Stage output folders later stages read (relative to the work folder).
STAGE_OUTPUTS = {"merge": f"out/{MERGED_DIR}", "package": "out/package"}
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


def _result_ok(result: Path) -> bool:
    if not result.is_file():
        return False
    try:
        return bool(json.loads(result.read_text(encoding="utf-8")).get("ok"))
    except ValueError:
        return False


def _wait_for_spec(api: Any, repo_id: str, workdir: Path, stage: str) -> Path:
    """The stage's spec: staged with the inputs, or uploaded by the flow when it is ready.

    The package spec (its card holds the training metrics) and the publish spec (the
    flow's go after its publish gate) arrive while the pod runs; the pod polls for them.
    """
    from huggingface_hub.utils import EntryNotFoundError

    spec = workdir / "specs" / f"{stage}-spec.json"
    deadline = time.monotonic() + float(os.environ.get(SPEC_TIMEOUT_ENV, "3600"))
    while not spec.is_file():
        try:
            found = api.hf_hub_download(
                repo_id, f"specs/{stage}-spec.json", repo_type="dataset", local_dir=workdir
            )
            return Path(found)
        except EntryNotFoundError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the flow sent no {stage} spec in time; stopping")
        time.sleep(SPEC_POLL_S)
    return spec


def _push_result(api: Any, repo_id: str, workdir: Path, stage: str, ok: bool) -> None:
    """One commit: the stage's result file, plus the trained adapter after training.

    The adapter lands in the same commit as the train result, so a replacement pod that
    sees the result also gets the adapter and goes on to the merge without retraining.
    """
    from huggingface_hub import CommitOperationAdd

    operations = [
        CommitOperationAdd(
            path_in_repo=f"{RESULTS_DIR}/{stage}.json",
            path_or_fileobj=str(workdir / RESULTS_DIR / f"{stage}.json"),
        )
    ]
    trained = workdir / TRAINED_DIR
    if stage == "train" and ok and trained.is_dir():
        operations += [
            CommitOperationAdd(
                path_in_repo=f"{TRAINED_DIR}/{f.relative_to(trained).as_posix()}",
                path_or_fileobj=str(f),
            )
            for f in sorted(trained.rglob("*"))
            if f.is_file()
        ]
    api.create_commit(
        repo_id,
        operations,
        repo_type="dataset",
        commit_message=f"pod: {stage} {'done' if ok else 'failed'}",
    )


def _fetch_base(base_repo: dict[str, Any] | None, dest: Path) -> None:
    """Download a Hub base model into ``base`` (not staged: fetched here, not uploaded)."""
    if base_repo is None or (dest / "config.json").is_file():
        return
    from huggingface_hub import snapshot_download

    print(f"pod: fetching the base model {base_repo['repo_id']} from the Hub", flush=True)
    snapshot_download(
        base_repo["repo_id"],
        revision=base_repo.get("revision"),
        local_dir=str(dest),
        allow_patterns=["*.json", "*.safetensors", "*.jinja", "*.model", "*.txt", "*.md"],
    )


def _newest_checkpoint(output_dir: Path) -> str | None:
    steps = [
        int(m.group(1))
        for p in output_dir.glob("checkpoint-*")
        if (m := re.fullmatch(r"checkpoint-(\d+)", p.name)) and p.is_dir()
    ]
    return f"checkpoint-{max(steps)}" if steps else None


def run_pod_plan(workdir: Path, repo_id: str, status: PodStatus | None = None) -> int:
    """Run the staged stages in ``workdir`` (the downloaded staging repo) and push results.

    A stage whose result is already in the staging repo (pushed by a pod that was lost
    later) is not run again: a replacement pod resumes at the stage that was running.
    Only a merge or package whose output folder a later stage needs, and which this new
    pod does not have, is rebuilt (quietly: its result was reported already).

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
    stages: list[str] = plan["stages"]
    device = _device_for_pod()
    _fetch_base(plan.get("base_repo"), workdir / "base")
    done = {s for s in stages if _result_ok(workdir / RESULTS_DIR / f"{s}.json")}
    if done:
        print(f"pod: stages already done by an earlier pod: {sorted(done)}", flush=True)
    for index, stage in enumerate(stages):
        output = STAGE_OUTPUTS.get(stage)
        later = [s for s in stages[index + 1 :] if s not in done]
        if stage in done:
            needed = output is not None and later and not (workdir / output).is_dir()
            if not needed:
                continue
            print(f"pod: rebuilding the {stage} output for {later[0]}", flush=True)
        spec = _wait_for_spec(api, repo_id, workdir, stage)
        if stage in DEVICE_STAGES:
            _with_device(spec, device)
        result = workdir / RESULTS_DIR / f"{stage}.json"
        scratch = workdir / "rebuild" / f"{stage}.json" if stage in done else result
        command = [sys.executable, "-m", "tuneship.training.job", stage, str(spec), str(scratch)]
        if stage == "train" and plan.get("checkpoint_repo"):
            # A replacement pod resumes from the newest checkpoint pushed here.
            command += ["--push-checkpoints", str(plan["checkpoint_repo"])]
        if stage == "train" and status is not None:
            command += ["--progress-file", str(status.progress_file)]
            command += ["--stop-file", str(status.stop_file)]
        if status is not None:
            status.set_phase(stage)
        print(f"pod: stage {stage} starts", flush=True)
        code = subprocess.call(command, cwd=workdir)
        if stage == "train" and status is not None and status.stop_requested:
            # Stopped on request (the budget): the checkpoint is pushed; no result, no merge.
            status.set_phase(
                "stopped",
                checkpoint=_newest_checkpoint(workdir / "out" / "train"),
                checkpoint_repo=plan.get("checkpoint_repo"),
            )
            return STOPPED_EXIT
        if stage not in done and result.is_file():
            _push_result(api, repo_id, workdir, stage, code == 0)
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
