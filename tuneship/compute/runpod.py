"""Training on a rented RunPod pod: stage the inputs, rent the pod, follow its stages, clean up.

The flow's side of ``compute.provider: runpod``. The inputs (prepared split, base model
folder, job specs with paths relative to the pod's work folder, and the running tuneship
source) go to a private dataset repo of the publish namespace; the pod downloads it with
the run's token (an environment secret), runs :mod:`tuneship.compute.pod_job`, and pushes
each stage's result back there. Every weight-touching stage (train, merge, package, vLLM
load check, push to the model repo) runs on the pod: no weights come back to the flow's
machine. Renting is :mod:`tuneship.compute.pod_rental`. Nothing here imports Prefect:
the tasks resolve the credentials and pass a client and an ``HfApi`` in.
"""

from __future__ import annotations

import json
import shlex
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tuneship.compute.budget import BudgetExceededError
from tuneship.compute.pod_job import (
    MERGED_DIR,
    PLAN_FILE,
    POD_STAGES,
    RESULTS_DIR,
    STAGE_OUTPUTS,
    STAGING_REPO_ENV,
)
from tuneship.compute.stage_jobs import (
    LoadCheckJobSpec,
    PackageJobSpec,
    PublishJobSpec,
    serving_vllm_version,
)
from tuneship.config import PipelineConfig, RunPodComputeConfig
from tuneship.errors import ComputeError
from tuneship.packaging import CardInfo
from tuneship.runpod.client import RunPodClient
from tuneship.training.specs import MergeJobSpec, TrainJobSpec


class TrainingPod(BaseModel):
    """A rented training pod."""

    pod_id: str
    name: str
    gpu_type_id: str
    gpu_count: int
    usd_per_hour: float
    staging_repo: str
    started_at: float
    cloud_type: str = "SECURE"
    interruptible: bool = False


class PodLostError(ComputeError):
    """The training pod went away (or exited) before pushing a stage's result."""


def training_pod_name(run_name: str) -> str:
    """The pod's name, found again by crash and cancellation hooks from another process."""
    return f"tuneship-{run_name}-train"


def staging_repo_id(config: PipelineConfig) -> str:
    """The private dataset repo the run's inputs are staged to (publish namespace)."""
    namespace = config.publish.repo_id.split("/", 1)[0]
    return f"{namespace}/tuneship-{config.name}-staging"


def _copy_source(dest: Path) -> None:
    """Copy the running tuneship package (and its pyproject.toml) for the pod to run."""
    import tuneship

    package = Path(tuneship.__file__).parent
    shutil.copytree(package, dest / "tuneship", ignore=shutil.ignore_patterns("__pycache__"))
    pyproject = package.parent / "pyproject.toml"
    if pyproject.is_file():
        shutil.copy2(pyproject, dest / "pyproject.toml")


def build_pod_specs(config: PipelineConfig) -> dict[str, Any]:
    """The specs staged with the inputs, with paths relative to the pod's work folder.

    (The package and publish specs follow from the flow: :func:`build_package_spec`,
    :func:`build_publish_spec`.)

    Returns:
        ``{"train": TrainJobSpec, "merge": MergeJobSpec, "load_check": LoadCheckJobSpec}``.
    """
    from tuneship.training.specs import MERGE_CHECK_MAX_LENGTH

    # The CUDA device is what the pod has; pod_job writes it in before each stage.
    train = TrainJobSpec(
        model_path="base",
        train_path="data/train.jsonl",
        eval_path="data/eval.jsonl" if config.training.evaluates else None,
        trainer_format="messages",
        output_dir="out/train",
        # A replacement pod continues from the newest checkpoint pushed to the Hub.
        training=config.training.model_copy(update={"resume_from_checkpoint": "auto"}),
        max_length=config.data.max_length,
        model_dtype=config.model.dtype,
        device="cuda",
        trust_remote_code=config.model.trust_remote_code,
    )
    merge = MergeJobSpec(
        base_model_path="base",
        adapter_path="out/train/final",
        is_adapter=config.training.adapter != "full",
        output_dir=f"out/{MERGED_DIR}",
        eval_path=train.eval_path,
        train_path=train.train_path,
        dtype=config.model.dtype,
        device="cuda",
        trust_remote_code=config.model.trust_remote_code,
        max_length=min(config.data.max_length, MERGE_CHECK_MAX_LENGTH),
    )
    load_check = LoadCheckJobSpec(
        package_dir=STAGE_OUTPUTS["package"],
        name=config.name,
        serve=config.serve,
        eval_path=train.eval_path,
        mode=config.publish.vllm_load_check,
        max_gib=config.publish.vllm_load_check_max_gib,
        serving_vllm=serving_vllm_version(config),
    )
    return {"train": train, "merge": merge, "load_check": load_check}


def build_package_spec(config: PipelineConfig, card: CardInfo) -> PackageJobSpec:
    """The package stage's spec (sent once training reported, as the card needs it)."""
    return PackageJobSpec(
        merged_dir=STAGE_OUTPUTS["merge"],
        output_dir=STAGE_OUTPUTS["package"],
        card=card,
        load_check=config.publish.load_check,
    )


def build_publish_spec(config: PipelineConfig, run_label: str) -> PublishJobSpec:
    """The publish stage's spec: the flow's go, sent after its publish gate passed."""
    publish = config.publish
    return PublishJobSpec(
        package_dir=STAGE_OUTPUTS["package"],
        repo_id=publish.repo_id,
        endpoint=publish.hub_endpoint,
        private=publish.private,
        branch=publish.branch,
        tags=list(publish.tags),
        commit_message=f"tuneship: {run_label}",
    )


def send_stage_spec(api: Any, repo_id: str, stage: str, spec: BaseModel) -> None:
    """Upload a stage's spec to the staging repo, where the pod waits for it."""
    api.upload_file(
        repo_id=repo_id,
        repo_type="dataset",
        path_or_fileobj=spec.model_dump_json(indent=2).encode("utf-8"),
        path_in_repo=f"specs/{stage}-spec.json",
        commit_message=f"tuneship: {stage} spec",
    )


def stage_training_inputs(
    api: Any,
    config: PipelineConfig,
    base_model_dir: str | Path,
    train_path: str,
    eval_path: str | None,
    trainer_format: str,
) -> str:
    """Upload what the pod needs to a private dataset repo and return its id.

    Args:
        api: An ``HfApi`` with the run's token.
        config: The run's configuration.
        base_model_dir: Local folder of the base model.
        train_path: The prepared training rows (JSONL).
        eval_path: The prepared eval rows, or None.
        trainer_format: Row format of the prepared files.

    Returns:
        The staging repo id.
    """
    repo_id = staging_repo_id(config)
    specs = build_pod_specs(config)
    train = specs["train"].model_copy(
        update={
            "trainer_format": trainer_format,
            "eval_path": "data/eval.jsonl" if eval_path else None,
        }
    )
    merge = specs["merge"].model_copy(update={"eval_path": train.eval_path})
    load_check = specs["load_check"].model_copy(update={"eval_path": train.eval_path})
    with tempfile.TemporaryDirectory(prefix="tuneship-stage-") as tmp:
        stage = Path(tmp)
        (stage / "specs").mkdir()
        (stage / "data").mkdir()
        base_repo = hub_base_model(config)
        if base_repo is None:  # a local folder or a demo model: staged with the inputs
            shutil.copytree(base_model_dir, stage / "base")
        shutil.copy2(train_path, stage / "data" / "train.jsonl")
        if eval_path:
            shutil.copy2(eval_path, stage / "data" / "eval.jsonl")
        (stage / "specs" / "train-spec.json").write_text(train.model_dump_json(indent=2))
        (stage / "specs" / "merge-spec.json").write_text(merge.model_dump_json(indent=2))
        (stage / "specs" / "load_check-spec.json").write_text(load_check.model_dump_json(indent=2))
        plan = {
            "stages": list(POD_STAGES),
            "checkpoint_repo": config.publish.repo_id,
            "base_repo": base_repo,
        }
        (stage / PLAN_FILE).write_text(json.dumps(plan, indent=2))
        _copy_source(stage / "src")
        api.create_repo(repo_id, repo_type="dataset", private=True, exist_ok=True)
        api.upload_folder(
            repo_id=repo_id,
            repo_type="dataset",
            folder_path=str(stage),
            commit_message=f"tuneship: inputs of run {config.name}",
        )
    return repo_id


def hub_base_model(config: PipelineConfig) -> dict[str, str | None] | None:
    """The base model's Hub repo and revision when the pod can fetch it from the Hub itself.

    A Hub base is downloaded by the pod (data centre to data centre), so its weights are
    not uploaded from this machine; a local folder or a demo model is staged instead.
    """
    from tuneship.config import is_demo_model
    from tuneship.hub.ids import is_hub_id

    base = config.model.base
    if is_demo_model(base) or Path(base).expanduser().is_dir() or not is_hub_id(base):
        return None
    return {"repo_id": base, "revision": config.model.revision}


def training_pod_command() -> str:
    """The pod's start command: fetch the staging repo, then run the staged tuneship.

    Nothing secret is on it: the Hub token is the pod's ``HF_TOKEN`` variable.
    """
    fetch = (
        "import os; from huggingface_hub import snapshot_download; "
        f"snapshot_download(os.environ['{STAGING_REPO_ENV}'], repo_type='dataset', "
        "local_dir='stage')"
    )
    script = (
        "set -e; W=${TUNESHIP_POD_WORKDIR:-/workspace}/tuneship; mkdir -p $W; cd $W; "
        "pip install -q 'huggingface_hub>=0.30'; "
        f"python -c {shlex.quote(fetch)}; "
        "pip install -q ./stage/src; "
        "export PYTHONPATH=$W/stage/src; "
        "exec python -m tuneship.compute.pod_job"
    )
    return f"bash -c {shlex.quote(script)}"


def container_disk_gb(base_model_dir: str | Path, settings: RunPodComputeConfig) -> int:
    """Container disk for the pod: the base x 3 (base, checkpoints, merged) + 30 GB."""
    if settings.container_disk_gb is not None:
        return settings.container_disk_gb
    folder = Path(base_model_dir)
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        # The weights stayed on the Hub (the pod downloads them): size them from the config.
        from tuneship.planning import load_model_facts

        size += int(load_model_facts(folder).weight_gib * 2**30)
    return int(size * 3 / 1e9) + 30


def _result_file(api: Any, repo_id: str, stage: str) -> Path | None:
    from huggingface_hub.utils import EntryNotFoundError

    try:
        return Path(
            api.hf_hub_download(repo_id, f"{RESULTS_DIR}/{stage}.json", repo_type="dataset")
        )
    except EntryNotFoundError:
        return None


def read_stage_result(api: Any, pod: TrainingPod, stage: str) -> Any | None:
    """The stage's result if the pod pushed it (its error raised), else None."""
    from tuneship.training.job import read_job_result

    found = _result_file(api, pod.staging_repo, stage)
    return None if found is None else read_job_result(found, stage)


def wait_for_stage(
    client: RunPodClient,
    api: Any,
    pod: TrainingPod,
    stage: str,
    *,
    timeout_s: float,
    poll_s: float = 5.0,
    over_budget: Callable[[], str | None] | None = None,
    watch: Callable[[], object] | None = None,
) -> Any:
    """Wait until the pod pushed ``stage``'s result; return it (or raise its error).

    Args:
        client: RunPod client (the pod's state).
        api: Hugging Face API of the run's staging repo (the results).
        pod: The training pod.
        stage: The stage's name in the job (``merge``, ``package``, ...).
        timeout_s: Longest wait.
        poll_s: Seconds between looks.
        over_budget: Says which budget limit the run reached, or None; asked at every
            look, so a stage that hangs on the pod cannot spend past ``max_usd`` or
            ``max_hours``.
        watch: Looks at the pod's own health at every look (its status endpoint: start-up
            time, silence) and raises :class:`PodLostError` when it is lost.

    Raises:
        BudgetExceededError: ``over_budget`` said a limit was reached (the caller's clean-up
            terminates the pod).
        ComputeError: The pod went away or exited without the result, or the time ran out.
        TuneshipError: The stage failed on the pod (its own error type and message).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        found = read_stage_result(api, pod, stage)
        if found is not None:
            return found
        reached = over_budget() if over_budget is not None else None
        if reached is not None:
            raise BudgetExceededError(
                f"stopped waiting for the {stage} stage on pod {pod.name}: {reached}; the pod "
                "is terminated, so nothing more is spent (raise the limit to let it finish)"
            )
        state = client.get_pod(pod.pod_id)
        if state is None or state.get("desiredStatus") in ("EXITED", "TERMINATED"):
            # The result may have landed between the two reads.
            found = read_stage_result(api, pod, stage)
            if found is not None:
                return found
            gone = "is gone" if state is None else "exited"
            raise PodLostError(
                f"training pod {pod.name} ({pod.pod_id}) {gone} before the {stage} stage "
                "finished; see the pod's logs in the RunPod console"
            )
        if watch is not None:
            watch()
        if time.monotonic() > deadline:
            raise ComputeError(
                f"the {stage} stage on pod {pod.name} did not finish within {timeout_s:.0f} s"
            )
        time.sleep(poll_s)


def pod_cost_usd(pod: TrainingPod, now: float | None = None) -> float:
    """Price x time since rental (all GPUs): the cost so far."""
    hours = ((now or time.time()) - pod.started_at) / 3600
    return round(pod.usd_per_hour * hours, 4)


def terminate_training_pods(client: RunPodClient, run_name: str) -> list[str]:
    """Terminate every pod named ``tuneship-<run>-train`` (idempotent; hooks use it)."""
    from tuneship.serving.runpod_base import terminate_pods

    return terminate_pods(client, training_pod_name(run_name))


def delete_staging(api: Any, repo_id: str) -> None:
    """Delete the staging dataset repo (idempotent)."""
    api.delete_repo(repo_id, repo_type="dataset", missing_ok=True)
