"""Tasks: every weight-touching stage on a rented RunPod pod (``compute.provider: runpod``).

``provision-gpu`` checks the run, stages its inputs to a private Hub dataset repo and rents
the cheapest fitting GPU; ``train-with-eval``, ``merge-adapter``, ``package-model``,
``load-check-with-vllm`` and ``publish-model`` each finish when the pod pushes that stage's
result; :class:`PodStages` replaces a lost pod and waits on the same stage again (the new
pod resumes there); :func:`release_training_pod` terminates the pod and removes the
staging repo. Credentials are loaded here and passed down; the pod gets the Hub token and
the run's status token as environment secrets only. While the pod trains, its status
endpoint's progress reaches the progress artifact and the log (at least once a minute),
and the budget (``max_usd``, ``max_hours``, over every pod of the run) is enforced.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any, TypeVar

from huggingface_hub import HfApi
from prefect.artifacts import create_markdown_artifact
from pydantic import SecretStr

from tuneship.compute.budget import CostEstimate, Spend, budget_exceeded, estimate_choice_cost
from tuneship.compute.pod_rental import rent_training_pod
from tuneship.compute.pod_status import STATUS_PORT, STATUS_TOKEN_ENV
from tuneship.compute.pod_watch import LiveProgress, PodHealth, watch_training_pod
from tuneship.compute.runpod import (
    PodLostError,
    TrainingPod,
    build_package_spec,
    build_publish_spec,
    container_disk_gb,
    delete_staging,
    pod_cost_usd,
    send_stage_spec,
    stage_training_inputs,
    staging_repo_id,
    terminate_training_pods,
    training_pod_command,
    training_pod_name,
    wait_for_stage,
)
from tuneship.compute.runpod_plan import check_runpod_training
from tuneship.compute.stage_jobs import LoadCheckResult
from tuneship.config import PipelineConfig
from tuneship.data import PreparedData
from tuneship.errors import ConfigError
from tuneship.hub.client import make_api
from tuneship.packaging import CardInfo, PackageResult
from tuneship.planning.training import TrainingOption
from tuneship.publishing.base import PublishResult
from tuneship.runpod.client import RunPodClient
from tuneship.secrets import register_secret
from tuneship.tasks._common import artifact_key, get_logger, pipeline_task
from tuneship.tasks.credentials import load_hf_token, load_runpod_client
from tuneship.tasks.training import ProgressArtifact
from tuneship.training.specs import MergeResult, TrainResult

T = TypeVar("T")

LIVE_LOG_EVERY_S = 60.0
"""A live progress line is logged at least this often (and on every phase change)."""

_STATUS_TOKENS: dict[str, str] = {}
"""Per-run status tokens of this flow process: random, never a parameter or in a log."""


def _status_token(run_name: str) -> str:
    token = _STATUS_TOKENS.get(run_name)
    if token is None:
        token = _STATUS_TOKENS[run_name] = secrets.token_urlsafe(32)
        register_secret(token)
    return token


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
    report_cost_estimate(config, estimate_choice_cost(config, base_model_dir, choice, prepared))
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
    env = {
        "HF_TOKEN": token.get_secret_value(),
        "TUNESHIP_STAGING_REPO": repo,
        STATUS_TOKEN_ENV: _status_token(config.name),
    }
    if config.publish.hub_endpoint:
        env["HF_ENDPOINT"] = config.publish.hub_endpoint
    settings = config.compute.runpod
    created, choice, gpu_count, usd_per_hour = rent_training_pod(
        client,
        name=name,
        options=options,
        settings=settings,
        docker_args=training_pod_command(),
        ports=f"{STATUS_PORT}/http",
        env=env,
        disk_gb=container_disk_gb(base_model_dir, settings),
        log=logger.info,
    )
    pod = TrainingPod(
        pod_id=str(created["id"]),
        name=name,
        gpu_type_id=choice.gpu_type_id,
        gpu_count=gpu_count,
        usd_per_hour=usd_per_hour,
        staging_repo=repo,
        started_at=time.time(),
        cloud_type=choice.cloud_type,
        interruptible=settings.interruptible,
    )
    logger.info(
        "rented %spod %s (%s x %s, %s cloud, at $%.2f/h)",
        "interruptible " if pod.interruptible else "",
        pod.pod_id,
        pod.gpu_count,
        pod.gpu_type_id,
        pod.cloud_type,
        pod.usd_per_hour,
    )
    return pod


def report_cost_estimate(config: PipelineConfig, estimates: list[CostEstimate]) -> None:
    """Log the estimated time and cost before renting and show them as an artifact."""
    logger = get_logger()
    settings = config.compute.runpod
    if not estimates:
        logger.warning("no cost estimate: the fitting GPUs' throughput is unknown")
        return
    logger.info("estimated: %s", estimates[0].describe())
    rows = [
        "| GPU | $/h | time (range) | cost (range) |",
        "|---|---|---|---|",
        *(
            f"| {e.gpu_count} x {e.gpu_type_id} | {e.usd_per_hour:.2f} | {e.hours:.2f} h "
            f"({e.hours_low:.2f}-{e.hours_high:.2f}) | ${e.usd:.2f} (${e.usd_low:.2f}-"
            f"${e.usd_high:.2f}) |"
            for e in estimates
        ),
    ]
    create_markdown_artifact(
        markdown=(
            f"Estimated before renting, for ~{estimates[0].tokens:,} training tokens (FLOP-based, "
            "30% model-FLOPs utilisation; the range is 45% to 15%, plus start-up and merge). "
            f"The first row is rented first. Budget: ${settings.max_usd:g} and "
            f"{settings.max_hours:g} h, enforced in every stage on the pod.\n\n" + "\n".join(rows)
        ),
        key=artifact_key(config.name, "cost-estimate"),
        description="RunPod training: estimated time and cost",
    )


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
            f"New pod {pod.pod_id} ({pod.gpu_count} x {pod.gpu_type_id}); it resumes at the "
            "stage that was running (training from the newest checkpoint pushed to the Hub; "
            "a finished training is not repeated)."
        ),
        key=artifact_key(config.name, f"pod-restart-{attempt}"),
        description="RunPod training pod replaced",
    )
    return pod


class _LiveReporter:
    """Pod progress to the progress artifact and, at least once a minute, the log."""

    def __init__(self, config: PipelineConfig) -> None:
        self.artifact = ProgressArtifact(config.name)
        self._logged_at = 0.0
        self._last: tuple[str, float | None] = ("", None)

    def __call__(self, progress: LiveProgress) -> None:
        if progress.percent is not None:
            self.artifact.set(progress.percent)
        now = time.monotonic()
        changed = (progress.phase, progress.eval_loss) != self._last
        if changed or now - self._logged_at >= LIVE_LOG_EVERY_S:
            get_logger().info("pod: %s", progress.describe())
            self._logged_at, self._last = now, (progress.phase, progress.eval_loss)


@pipeline_task("train-with-eval")
def train_on_pod(
    config: PipelineConfig,
    pod: TrainingPod,
    spent_usd: float = 0.0,
    spent_hours: float = 0.0,
    tokens_per_step: float | None = None,
) -> TrainResult:
    """Follow the pod's training live and return its result (raised as its own error).

    Args:
        config: The run's configuration.
        pod: The training pod.
        spent_usd: Cost of the run's earlier (lost) pods, counted against ``max_usd``.
        spent_hours: Their pod hours, counted against ``max_hours``.
        tokens_per_step: Training tokens per step, for the tokens/s figure.

    Raises:
        PodLostError: The pod went away, exited, did not start up in time or stopped
            answering (the flow rents a new one).
        BudgetExceededError: The budget was reached; a checkpoint was pushed first.
    """
    reporter = _LiveReporter(config)
    finished = False
    try:
        result: TrainResult = watch_training_pod(
            _runpod_client(config),
            _hub_api(config),
            pod,
            config,
            token=_status_token(config.name),
            spent_before=Spend(usd=spent_usd, hours=spent_hours),
            tokens_per_step=tokens_per_step,
            on_progress=reporter,
            log=get_logger().info,
        )
        finished = True
    finally:
        reporter.artifact.close(100.0 if finished else None)
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
def merge_on_pod(
    config: PipelineConfig, pod: TrainingPod, spent: Spend | None = None
) -> MergeResult:
    """Wait for the pod's merge (with its self-check); the merged weights stay on the pod."""
    result: MergeResult = _wait(config, pod, "merge", spent)
    get_logger().info(
        "merge on the pod: max |logit diff| %.2e on %d rows",
        result.max_abs_logit_diff,
        result.checked_rows,
    )
    return result


def send_package_spec(config: PipelineConfig, pod: TrainingPod, card: CardInfo) -> None:
    """Send the package stage its card (the pod merges meanwhile, then packages)."""
    send_stage_spec(_hub_api(config), pod.staging_repo, "package", build_package_spec(config, card))


@pipeline_task("package-model", run_name="package-on-pod-{config.name}")
def package_on_pod(
    config: PipelineConfig, pod: TrainingPod, spent: Spend | None = None
) -> PackageResult:
    """Wait for the pod to package the merged model (card, .gitattributes, verification)."""
    result: PackageResult = _wait(config, pod, "package", spent)
    get_logger().info(
        "package on the pod: %d files, %d bytes", len(result.files), result.total_bytes
    )
    return result


@pipeline_task("load-check-with-vllm", run_name="vllm-load-check-on-pod-{config.name}")
def load_check_on_pod(
    config: PipelineConfig, pod: TrainingPod, spent: Spend | None = None
) -> LoadCheckResult:
    """Wait for the pod's vLLM load check (or its reason for skipping it)."""
    result: LoadCheckResult = _wait(config, pod, "load_check", spent)
    log = get_logger()
    (log.info if result.ran else log.warning)("vLLM load check on the pod: %s", result.note)
    return result


@pipeline_task("publish-model", run_name="publish-from-pod-{config.publish.repo_id}")
def publish_on_pod(
    config: PipelineConfig, pod: TrainingPod, run_label: str, spent: Spend | None = None
) -> PublishResult:
    """Give the pod its go (the publish spec) and wait for its push to the model repo."""
    send_stage_spec(
        _hub_api(config), pod.staging_repo, "publish", build_publish_spec(config, run_label)
    )
    result: PublishResult = _wait(config, pod, "publish", spent)
    get_logger().info("the pod pushed %s@%s", result.repo_id, result.revision[:12])
    return result


@pipeline_task("fetch-published-model", run_name="fetch-{published.repo_id}")
def fetch_published_model(config: PipelineConfig, published: PublishResult, dest: str) -> str:
    """Download the revision the pod pushed, for ``serve.target`` local or docker.

    Only then do the weights come to this machine: the user asked to serve them here.
    """
    from huggingface_hub import snapshot_download

    token = load_hf_token(config.publish.hf_credentials_block)
    folder = snapshot_download(
        published.repo_id,
        revision=published.revision,
        local_dir=dest,
        token=token.get_secret_value() if token else None,
        endpoint=config.publish.hub_endpoint,
    )
    get_logger().warning(
        "serve.target=%s: downloaded %s@%s to serve it on this machine (use "
        "serve.target=runpod-pod or runpod-serverless to keep the weights off it)",
        config.serve.target,
        published.repo_id,
        published.revision[:12],
    )
    return str(folder)


def _wait(config: PipelineConfig, pod: TrainingPod, stage: str, spent: Spend | None) -> Any:
    """Wait for ``stage`` on ``pod``, within the budget (this pod plus ``spent`` before it)."""
    before = spent or Spend(usd=0.0, hours=0.0)

    def over_budget() -> str | None:
        now = time.time()
        return budget_exceeded(
            config,
            Spend(
                usd=before.usd + pod_cost_usd(pod, now),
                hours=before.hours + (now - pod.started_at) / 3600,
            ),
        )

    client = _runpod_client(config)
    # A pod rented to replace one lost in this stage must start up and stay responsive too.
    health = PodHealth(
        client, pod, config.compute.runpod, _status_token(config.name), get_logger().info
    )
    return wait_for_stage(
        client,
        _hub_api(config),
        pod,
        stage,
        timeout_s=config.compute.runpod.startup_timeout_s + config.compute.runpod.max_hours * 3600,
        over_budget=over_budget,
        watch=health.check,
    )


class PodStages:
    """The run's training pod and its restarts: runs each stage task, replacing a lost pod.

    A stage task that raises :class:`PodLostError` gets a new pod (``restart-pod``, same
    ranking) and is waited on again; the new pod skips the stages already reported, so it
    resumes at the one that was running. Every pod's cost is kept.
    """

    def __init__(self, config: PipelineConfig, base_dir: str, pod: TrainingPod) -> None:
        self.config = config
        self.base_dir = base_dir
        self.pod = pod
        self.restarts = 0
        self.lost: list[tuple[TrainingPod, float]] = []
        self._lost_hours = 0.0

    def spent(self) -> Spend:
        """Cost and pod hours of the run's lost pods so far (they count against the budget)."""
        return Spend(usd=sum(cost for _, cost in self.lost), hours=self._lost_hours)

    def run(self, stage: Callable[..., T], *args: Any) -> T:
        """Run ``stage(config, pod, *args, spent=...)`` until it returns (at most
        max_restarts pods); ``spent`` (the lost pods) counts against the budget."""
        return self._retry(lambda: stage(self.config, self.pod, *args, spent=self.spent()))

    def train(self, tokens_per_step: float | None = None) -> TrainResult:
        """Run ``train-with-eval``, live, until it returns (at most max_restarts pods).

        Each attempt is given what the lost pods before it cost, so ``max_usd`` and
        ``max_hours`` hold for the run as a whole, not per pod.
        """

        def attempt() -> TrainResult:
            spent = self.spent()
            return train_on_pod(self.config, self.pod, spent.usd, spent.hours, tokens_per_step)

        return self._retry(attempt)

    def _retry(self, call: Callable[[], T]) -> T:
        while True:
            try:
                return call()
            except PodLostError as exc:
                if self.restarts >= self.config.compute.runpod.max_restarts:
                    raise
                self.restarts += 1
                self.lost.append((self.pod, pod_cost_usd(self.pod)))
                self._lost_hours += (time.time() - self.pod.started_at) / 3600
                self.pod = replace_training_pod(
                    self.config, self.base_dir, self.pod, str(exc), self.restarts
                )


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
