"""Tasks: train and merge on a rented RunPod pod (``compute.provider: runpod``).

``provision-gpu`` checks the run, stages its inputs to a private Hub dataset repo and rents
the cheapest fitting GPU; ``train-with-eval`` and ``merge-adapter`` each finish when the pod
pushes that stage's result; :func:`release_training_pod` terminates the pod and removes the
staging repo. Credentials are loaded here and passed down; the pod gets the Hub token as
an environment secret only.
"""

from __future__ import annotations

import time
from pathlib import Path

from huggingface_hub import HfApi
from prefect.artifacts import create_markdown_artifact
from pydantic import SecretStr

from tuneship.compute.runpod import (
    TrainingPod,
    container_disk_gb,
    delete_staging,
    download_merged_model,
    pod_cost_usd,
    rent_training_pod,
    stage_training_inputs,
    staging_repo_id,
    terminate_training_pods,
    training_pod_name,
    wait_for_stage,
)
from tuneship.compute.runpod_plan import check_runpod_training
from tuneship.config import PipelineConfig
from tuneship.data import PreparedData
from tuneship.errors import ConfigError
from tuneship.hub.client import make_api
from tuneship.planning.training import TrainingOption
from tuneship.runpod.client import RunPodClient
from tuneship.tasks._common import artifact_key, get_logger, pipeline_task
from tuneship.tasks.credentials import load_hf_token, load_runpod_client
from tuneship.training.specs import MergeResult, TrainResult


def _runpod_client(config: PipelineConfig) -> RunPodClient:
    return load_runpod_client(
        config.compute.runpod.credentials_block or config.serve.runpod.credentials_block
    )


def _hub_api(config: PipelineConfig) -> HfApi:
    return make_api(load_hf_token(config.publish.hf_credentials_block), config.publish.hub_endpoint)


@pipeline_task("provision-gpu")
def provision_runpod_gpu(
    config: PipelineConfig, base_model_dir: str, prepared: PreparedData
) -> TrainingPod:
    """Stage the run's inputs and rent the cheapest fitting GPU that has capacity.

    Args:
        config: The run's configuration.
        base_model_dir: Local folder of the base model.
        prepared: The prepared train/eval split.

    Returns:
        The rented pod.

    Raises:
        ConfigError: The run cannot train on RunPod (nothing is rented then).
        RunPodCapacityError: No fitting GPU type had capacity.
    """
    logger = get_logger()
    client = _runpod_client(config)
    token = load_hf_token(config.publish.hf_credentials_block)
    if token is None:
        raise ConfigError(
            "compute.provider=runpod: the pod fetches its inputs and pushes the model with the "
            "run's Hub token; set publish.hf_credentials_block or HF_TOKEN"
        )
    choice = check_runpod_training(config, base_model_dir, client.api_key, client)
    settings = config.compute.runpod
    logger.info(
        "RunPod training: %s; budget $%.2f / %.1f h",
        choice.describe(),
        settings.max_usd,
        settings.max_hours,
    )
    api = make_api(token, config.publish.hub_endpoint)
    repo = stage_training_inputs(
        api,
        config,
        base_model_dir,
        prepared.train_path,
        prepared.eval_path,
        prepared.trainer_format,
    )
    logger.info("inputs staged to the private dataset repo %s", repo)
    return _rent(config, client, token, base_model_dir, repo, choice.options)


def _rent(
    config: PipelineConfig,
    client: RunPodClient,
    token: SecretStr,
    base_model_dir: str,
    repo: str,
    options: list[TrainingOption],
) -> TrainingPod:
    logger = get_logger()
    name = training_pod_name(config.name)
    env = {"HF_TOKEN": token.get_secret_value(), "TUNESHIP_STAGING_REPO": repo}
    if config.publish.hub_endpoint:
        env["HF_ENDPOINT"] = config.publish.hub_endpoint
    created, option = rent_training_pod(
        client,
        name=name,
        options=options,
        settings=config.compute.runpod,
        env=env,
        disk_gb=container_disk_gb(base_model_dir, config.compute.runpod),
        log=logger.info,
    )
    pod = TrainingPod(
        pod_id=str(created["id"]),
        name=name,
        gpu_type_id=str(option.runpod_gpu_id),
        gpu_count=option.gpu_count,
        usd_per_hour=float(option.usd_per_hour or 0.0),
        staging_repo=repo,
        started_at=time.time(),
    )
    logger.info(
        "rented pod %s (%s x %s at $%.2f/h)",
        pod.pod_id,
        pod.gpu_count,
        pod.gpu_type_id,
        pod.usd_per_hour,
    )
    return pod


@pipeline_task("restart-pod")
def replace_training_pod(
    config: PipelineConfig, base_model_dir: str, lost: TrainingPod, reason: str, attempt: int
) -> TrainingPod:
    """Terminate a lost pod and rent a new one on the same staged inputs.

    The new pod's training resumes from the newest checkpoint pushed to the Hub, so at
    most one save interval of steps is repeated.

    Args:
        config: The run's configuration.
        base_model_dir: Local folder of the base model (for the plan and the disk size).
        lost: The pod that went away.
        reason: Why it is replaced (shown in the UI).
        attempt: 1 for the first restart, and so on.

    Returns:
        The new pod.
    """
    logger = get_logger()
    client = _runpod_client(config)
    logger.warning(
        "restart %d of %d: %s; renting a new pod",
        attempt,
        config.compute.runpod.max_restarts,
        reason,
    )
    terminate_training_pods(client, config.name)
    token = load_hf_token(config.publish.hf_credentials_block)
    assert token is not None  # provision-gpu refused the run without one
    choice = check_runpod_training(config, base_model_dir, client.api_key, client)
    pod = _rent(config, client, token, base_model_dir, lost.staging_repo, choice.options)
    create_markdown_artifact(
        markdown=(
            f"Restart {attempt} of {config.compute.runpod.max_restarts}: {reason}\n\n"
            f"New pod {pod.pod_id} ({pod.gpu_count} x {pod.gpu_type_id}); training resumes "
            "from the newest checkpoint pushed to the Hub."
        ),
        key=artifact_key(config.name, f"pod-restart-{attempt}"),
        description="RunPod training pod replaced",
    )
    return pod


@pipeline_task("train-with-eval")
def train_on_pod(config: PipelineConfig, pod: TrainingPod) -> TrainResult:
    """Wait for the pod's training stage and return its result (raised as its own error)."""
    client = _runpod_client(config)
    limit = config.compute.runpod.startup_timeout_s + config.compute.runpod.max_hours * 3600
    result: TrainResult = wait_for_stage(client, _hub_api(config), pod, "train", timeout_s=limit)
    create_markdown_artifact(
        markdown=(
            "| metric | value |\n|---|---|\n"
            f"| pod | {pod.name} ({pod.gpu_count} x {pod.gpu_type_id}) |\n"
            f"| steps | {result.global_step} |\n"
            f"| base eval loss | {result.base_eval_loss} |\n"
            f"| fine-tuned eval loss | {result.eval_loss} |"
        ),
        key=artifact_key(config.name, "training-summary"),
        description="Training summary (RunPod pod)",
    )
    get_logger().info(
        "pod training done: %d steps, eval loss %s", result.global_step, result.eval_loss
    )
    return result


@pipeline_task("merge-adapter")
def merge_on_pod(config: PipelineConfig, pod: TrainingPod) -> MergeResult:
    """Wait for the pod's merge stage and fetch the merged model into the run folder."""
    api = _hub_api(config)
    result: MergeResult = wait_for_stage(
        _runpod_client(config), api, pod, "merge", timeout_s=config.compute.runpod.max_hours * 3600
    )
    local = download_merged_model(api, pod.staging_repo, Path(config.run_dir()) / "merged")
    get_logger().info(
        "merge on the pod: max |logit diff| %.2e on %d rows",
        result.max_abs_logit_diff,
        result.checked_rows,
    )
    return result.model_copy(update={"merged_dir": str(local)})


def release_training_pod(config: PipelineConfig, pod: TrainingPod | None) -> float | None:
    """Terminate the run's training pod(s) and remove the staging repo (unless kept).

    Returns:
        The pod's cost so far (price x time since rental), or None without a pod.
    """
    logger = get_logger()
    for gone in terminate_training_pods(_runpod_client(config), config.name):
        logger.info("terminated %s", gone)
    if not config.compute.runpod.keep_staging:
        delete_staging(_hub_api(config), staging_repo_id(config))
    if pod is None:
        return None
    cost = pod_cost_usd(pod)
    logger.info(
        "RunPod training cost: $%.4f (%s at $%.2f/h)", cost, pod.gpu_type_id, pod.usd_per_hour
    )
    return cost
