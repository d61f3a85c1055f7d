"""Tasks: the checks that run before anything is downloaded or paid for, and the base model."""

from __future__ import annotations

from pathlib import Path

from tuneship.config import PipelineConfig
from tuneship.tasks._common import HUB_RETRY, NO_RETRY, get_logger, pipeline_task
from tuneship.tasks.credentials import load_run_secrets
from tuneship.validation import check_before_training, check_credentials, fetch_base_model


@pipeline_task(
    "check-credentials",
    HUB_RETRY,
    run_name="check-credentials-publish-{config.publish.target}-serve-{config.serve.target}",
)
def check_credentials_task(config: PipelineConfig) -> str:
    """Check Hub tokens, write access and base-model access before anything is downloaded."""
    result = check_credentials(config, load_run_secrets(config))
    get_logger().info("credentials: %s", result.detail)
    return result.detail


@pipeline_task("resolve-base-model", HUB_RETRY, run_name="resolve-{config.model.base}")
def resolve_base_model_task(config: PipelineConfig) -> str:
    """Return a local folder of the base model (downloading or building it as needed)."""
    return str(fetch_base_model(config, load_run_secrets(config)))


@pipeline_task("check-before-training", NO_RETRY, run_name="check-before-training-{config.name}")
def check_before_training_task(config: PipelineConfig, base_model_dir: str) -> None:
    """Run every check that needs no GPU, so a bad run fails before anything is paid for."""
    check_before_training(config, Path(base_model_dir), load_run_secrets(config))
