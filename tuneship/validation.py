"""Everything checkable before training: ``tuneship validate`` and the flow's pre-flight."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, SecretStr

from tuneship.config import (
    DEMO_BASE_MODEL,
    DEMO_PRETRAINED_BASE_MODEL,
    PipelineConfig,
)
from tuneship.data.sources import DEMO_DATA

if TYPE_CHECKING:
    from tuneship.data import PreparedData
from tuneship.errors import ConfigError, TrainingError, TuneshipError


@dataclass(frozen=True)
class RunSecrets:
    """The credentials a run uses, resolved once by the caller.

    The Prefect layer loads them from the config's blocks
    (``tuneship.tasks.credentials.load_run_secrets``); without a caller's secrets the
    checks read ``HF_TOKEN`` and ``RUNPOD_API_KEY``. Domain code never loads a block.
    """

    hf_token: SecretStr | None = None
    runpod_api_key: SecretStr | None = None
    serve_api_key: SecretStr | None = None

    @classmethod
    def from_environment(cls) -> RunSecrets:
        """``HF_TOKEN`` and ``RUNPOD_API_KEY`` (registered with the log masker)."""
        from tuneship.secrets import register_secret

        values = [os.environ.get(k, "").strip() for k in ("HF_TOKEN", "RUNPOD_API_KEY")]
        for value in values:
            register_secret(value or None)
        hf, runpod = (SecretStr(v) if v else None for v in values)
        return cls(hf_token=hf, runpod_api_key=runpod)


class CheckResult(BaseModel):
    """One pre-flight check: what was checked and whether it passed."""

    name: str
    ok: bool
    detail: str


def _check_registry(config: PipelineConfig) -> str:
    from tuneship.registry import Registry

    Registry(config.registry_url()).list_models()
    return "registry reachable"


def _check_qlora(config: PipelineConfig) -> str:
    if config.training.adapter != "qlora":
        return f"adapter {config.training.adapter}"
    if config.compute.provider == "runpod":
        return "qlora on a rented CUDA GPU"
    if config.compute.device == "cpu":
        raise TrainingError(
            "training.adapter=qlora needs a CUDA GPU (4-bit bitsandbytes), but "
            "compute.device=cpu; use training.adapter=lora on the CPU"
        )
    if _probe_device(config) != "cuda":
        raise TrainingError(
            "training.adapter=qlora needs a CUDA GPU (4-bit bitsandbytes), and this machine "
            "has none; use training.adapter=lora, or run on a GPU machine"
        )
    return "qlora on CUDA"


def _check_demo_split(config: PipelineConfig) -> None:
    """Refuse the pre-trained demo base on the demo data split another way.

    That base learnt the train split of the demo's own data settings; split differently,
    some of the run's eval rows would be sentences the base was trained on.
    """
    if config.model.base != DEMO_PRETRAINED_BASE_MODEL or config.data.path != DEMO_DATA:
        return
    from tuneship.demo.pretrained import demo_data_config

    # max_length truncates rows but does not change which rows land in which split.
    ignore = {"max_length"}
    expected = demo_data_config().model_dump(exclude=ignore)
    changed = sorted(
        k for k, v in config.data.model_dump(exclude=ignore).items() if expected[k] != v
    )
    if changed:
        raise ConfigError(
            f"model.base={DEMO_PRETRAINED_BASE_MODEL!r} was pre-trained on the train split of "
            f"the demo data as tuneship/demo/demo.yaml splits it, but this run changes "
            f"data.{', data.'.join(changed)}: its eval rows could be sentences the base has "
            f"learnt. Keep the demo's data settings or use model.base={DEMO_BASE_MODEL!r}."
        )


def _check_publish(config: PipelineConfig) -> str:
    if config.publish.target == "hub":
        return f"hub repo {config.publish.repo_id} (access checked with the credentials)"
    store = config.store_dir()
    store.mkdir(parents=True, exist_ok=True)
    return f"local store {store}"


def _check_serving(config: PipelineConfig, secrets: RunSecrets) -> str:
    if config.serve.target in ("runpod-serverless", "runpod-pod"):
        if config.publish.target != "hub":
            raise ConfigError(
                f"serve.target={config.serve.target} pulls the model from the Hugging Face "
                "Hub, so publish.target must be 'hub' (it is 'local')"
            )
        if secrets.runpod_api_key is None:
            raise ConfigError(
                f"serve.target={config.serve.target} needs a RunPod API key: set "
                "serve.runpod.credentials_block to a RunPodCredentials block, or "
                "RUNPOD_API_KEY for local use"
            )
        return f"{config.serve.target} (RunPod key found)"
    found = []
    if config.serve.target == "docker":
        from tuneship.serving.docker import check_docker_serving

        found.append(check_docker_serving(config.serve))
    needs_engine = config.serve.target == "local" or config.publish.vllm_load_check == "on"
    if not needs_engine:
        return "; ".join(found) or f"serve.target={config.serve.target}"
    from tuneship.serving.engine import find_engine_python

    engine = find_engine_python(config.serve.engine_python)
    return "; ".join([*found, f"vLLM engine {engine}"])


def base_model_hub_id(config: PipelineConfig) -> str | None:
    """Return ``model.base`` when it names a Hub model (not the demo or a local folder)."""
    from tuneship.hub.ids import is_hub_id

    return config.model.base if is_hub_id(config.model.base) else None


def fetch_base_model(config: PipelineConfig, secrets: RunSecrets | None = None) -> Path:
    """Return a local folder of ``model.base``, downloading a Hub model with the run's token.

    Args:
        config: The run's configuration.
        secrets: The run's credentials (the Hub token is used only when the base is a Hub
            model); None reads the environment.

    Returns:
        A folder with the base model's config and tokenizer, and its weights unless they
        stay on the Hub (:func:`base_weights_stay_remote`).
    """
    from tuneship.base_model import resolve_base_model

    token = None
    if base_model_hub_id(config):
        secret = (secrets or RunSecrets.from_environment()).hf_token
        token = secret.get_secret_value() if secret else None
    return resolve_base_model(
        config.model, token=token, weights=not base_weights_stay_remote(config)
    )


def base_weights_stay_remote(config: PipelineConfig) -> bool:
    """Whether a Hub base model's weights are never needed on this machine.

    With ``compute.provider: runpod`` every weight-touching stage runs on the pod, which
    downloads the base from the Hub itself (data centre to data centre); this machine
    needs only its config, weight index and tokenizer.
    """
    return config.compute.provider == "runpod" and base_model_hub_id(config) is not None


def check_credentials(config: PipelineConfig, secrets: RunSecrets | None = None) -> CheckResult:
    """Check Hub credentials before anything is downloaded or trained.

    The token must be valid (``whoami``), may write to ``publish.repo_id``'s namespace when
    publishing to the Hub, and must be able to read a gated or private base model.

    Args:
        config: The run's configuration.
        secrets: The run's credentials; None reads the environment.

    Returns:
        What was checked.

    Raises:
        TuneshipError: A token is missing, invalid, read-only, or cannot read the base model.
    """
    base = base_model_hub_id(config)
    publishing = config.publish.target == "hub"
    if not publishing and base is None:
        return CheckResult(name="credentials", ok=True, detail="none needed")
    from tuneship.hub.preflight import check_hub_access

    token = (secrets or RunSecrets.from_environment()).hf_token
    access = check_hub_access(
        token,
        config.publish.hub_endpoint,
        config.publish.repo_id if publishing else None,
        base,
        base_revision=config.model.revision,
    )
    parts = []
    if access.user:
        parts.append(f"token of {access.user}")
    if access.write_namespace:
        parts.append(f"can write to {access.write_namespace}")
    if access.base_model:
        parts.append(f"can read {access.base_model}")
    return CheckResult(name="credentials", ok=True, detail=", ".join(parts) or "ok")


def check_base_model_folder(config: PipelineConfig, base_model_dir: Path) -> str:
    """Check the base model folder (config, weights unless they stay on the Hub, tokenizer).

    Returns:
        A one-line summary.

    Raises:
        ConfigError: What is missing or broken, in one line.
    """
    from tuneship.model_folder import check_model_folder

    return check_model_folder(
        base_model_dir,
        trust_remote_code=config.model.trust_remote_code,
        weights=not base_weights_stay_remote(config),
    )


def check_before_training(
    config: PipelineConfig,
    base_model_dir: Path,
    secrets: RunSecrets | None = None,
    *,
    base_model_detail: str | None = None,
) -> list[CheckResult]:
    """Run the cheap checks that must pass before any GPU is used.

    Args:
        config: The run's configuration.
        base_model_dir: Local folder of the base model.
        secrets: The run's credentials; None reads the environment.
        base_model_detail: The summary of :func:`check_base_model_folder` when the caller
            checked the folder already; None checks it here.

    Returns:
        One result per check (all passed).

    Raises:
        TuneshipError: The first failing check, with a message naming the field.
    """
    if config.training.require_improvement and not config.training.evaluates:
        raise ConfigError(
            "training.require_improvement is true but training.eval_strategy is 'no': "
            "there is no eval loss to compare"
        )
    results = [CheckResult(name="config", ok=True, detail="valid")]
    detail = base_model_detail or check_base_model_folder(config, base_model_dir)
    _check_demo_split(config)
    results.append(CheckResult(name="base model", ok=True, detail=detail))
    for name, check in (
        ("compute", _check_qlora),
        ("publish", _check_publish),
        ("registry", _check_registry),
    ):
        results.append(CheckResult(name=name, ok=True, detail=check(config)))
    secrets = secrets or RunSecrets.from_environment()
    if config.compute.provider == "runpod":
        results.append(check_runpod_compute(config, base_model_dir, secrets))
    serving = _check_serving(config, secrets)
    results.append(CheckResult(name="serving", ok=True, detail=serving))
    return results


def check_runpod_compute(
    config: PipelineConfig, base_model_dir: Path, secrets: RunSecrets
) -> CheckResult:
    """Check a ``compute.provider: runpod`` run and say which GPU it would rent.

    The live GPU list is read when a RunPod key is set (a read, not a rental).

    Raises:
        ConfigError: Every problem found, one per line (nothing is rented).
    """
    from tuneship.compute.runpod_plan import check_runpod_training

    catalog = None
    if secrets.runpod_api_key is not None:
        from tuneship.runpod.client import RunPodClient

        catalog = RunPodClient.from_environment(secrets.runpod_api_key)
    choice = check_runpod_training(config, base_model_dir, secrets.runpod_api_key, catalog)
    return CheckResult(name="runpod training", ok=True, detail=choice.describe())


class ValidationFailedError(ConfigError):
    """``tuneship validate`` found problems; each is on its own line.

    Attributes:
        problems: Every problem found, as the error each check raised.
        passed: The checks that passed (the GPU, the cost estimate...), shown before them.
    """

    def __init__(self, problems: list[TuneshipError], passed: list[CheckResult]) -> None:
        self.problems = problems
        self.passed = passed
        if len(problems) == 1:
            message = str(problems[0])
        else:
            message = f"{len(problems)} problems:\n" + "\n".join(
                f"{n}. {p}" for n, p in enumerate(problems, 1)
            )
        super().__init__(message)


def validate_run(config: PipelineConfig, secrets: RunSecrets | None = None) -> list[CheckResult]:
    """Check everything that can be checked before training; start nothing.

    The data is read, validated, converted and split into a temporary folder, the
    training job spec is built and checked, and credentials and the registry are tried.
    For ``compute.provider: runpod`` the GPU that would be rented and the estimated time
    and cost are reported (RunPod's GPU list is read; nothing is rented). A failing check
    does not hide the others: every problem is collected (checks that need a base model or
    data that could not be read are skipped).

    Args:
        config: The run's configuration.
        secrets: The run's credentials (the CLI loads them); None reads the environment.

    Returns:
        One result per check.

    Raises:
        ValidationFailedError: Every problem found; the message says what to fix.
    """
    from transformers import AutoTokenizer

    from tuneship.data import prepare_dataset
    from tuneship.training import TrainJobSpec, check_training_spec

    secrets = secrets or RunSecrets.from_environment()
    results: list[CheckResult] = []
    problems: list[TuneshipError] = []

    def add_problem(exc: TuneshipError) -> None:
        # One cause (no network, say) can fail two checks with the same message.
        if str(exc) not in {str(p) for p in problems}:
            problems.append(exc)

    def attempt(check: Callable[[], list[CheckResult]]) -> bool:
        try:
            results.extend(check())
        except TuneshipError as exc:
            add_problem(exc)
            return False
        return True

    attempt(lambda: [check_credentials(config, secrets)])
    try:
        base_dir = fetch_base_model(config, secrets)
        base_detail = check_base_model_folder(config, base_dir)
    except TuneshipError as exc:  # every later check needs a usable base model
        add_problem(exc)
        raise ValidationFailedError(problems, results) from None
    before_ok = attempt(
        lambda: check_before_training(config, base_dir, secrets, base_model_detail=base_detail)
    )
    with tempfile.TemporaryDirectory(prefix="tuneship-validate-") as tmp:
        prepared_list: list[PreparedData] = []

        def check_data() -> list[CheckResult]:
            prepared = prepare_dataset(
                config.data,
                config.training.method,
                config.training.evaluates,
                Path(tmp) / "data",
                tokenizer=AutoTokenizer.from_pretrained(base_dir),
            )
            prepared_list.append(prepared)
            detail = (
                f"{prepared.n_train} train / {prepared.n_eval} eval rows ({prepared.eval_source})"
            )
            if prepared.report.warnings:
                detail += "; warnings: " + "; ".join(prepared.report.warnings)
            return [CheckResult(name="data", ok=True, detail=detail)]

        if attempt(check_data):
            prepared = prepared_list[0]
            if before_ok and config.compute.provider == "runpod":  # else already reported
                attempt(lambda: [estimate_runpod_cost(config, base_dir, prepared, secrets)])

            def check_spec() -> list[CheckResult]:
                spec = TrainJobSpec(
                    model_path=str(base_dir),
                    train_path=prepared.train_path,
                    eval_path=prepared.eval_path,
                    trainer_format=prepared.trainer_format,
                    output_dir=str(Path(tmp) / "train"),
                    training=config.training,
                    max_length=config.data.max_length,
                    model_dtype=config.model.dtype,
                    device=_spec_check_device(config),
                    cuda_devices=[],
                )
                if config.compute.provider == "runpod" and config.training.adapter == "qlora":
                    pass  # 4-bit loading is checked on the pod's GPU; the CPU here cannot.
                else:
                    check_training_spec(spec)
                detail = f"{config.training.method} with {config.training.adapter} on {spec.device}"
                return [CheckResult(name="training", ok=True, detail=detail)]

            attempt(check_spec)
    if problems:
        raise ValidationFailedError(problems, results)
    return results


def estimate_runpod_cost(
    config: PipelineConfig, base_model_dir: Path, prepared: PreparedData, secrets: RunSecrets
) -> CheckResult:
    """The estimated time and cost of a RunPod training run on the GPU it would rent.

    Raises:
        ConfigError: The run cannot train on RunPod (see :func:`check_runpod_compute`).
    """
    from tuneship.compute.budget import estimate_choice_cost
    from tuneship.compute.runpod_plan import check_runpod_training

    catalog = None
    if secrets.runpod_api_key is not None:
        from tuneship.runpod.client import RunPodClient

        catalog = RunPodClient.from_environment(secrets.runpod_api_key)
    choice = check_runpod_training(config, base_model_dir, secrets.runpod_api_key, catalog)
    estimates = estimate_choice_cost(config, base_model_dir, choice, prepared, top=1)
    detail = estimates[0].describe() if estimates else "unknown (no throughput figure for the GPU)"
    settings = config.compute.runpod
    detail += f"; budget ${settings.max_usd:g} / {settings.max_hours:g} h"
    return CheckResult(name="runpod cost", ok=True, detail=detail)


def _spec_check_device(config: PipelineConfig) -> Literal["cpu", "cuda"]:
    # A RunPod run trains on the pod's GPU; here the spec is only checked on the CPU.
    if config.compute.device == "cpu" or config.compute.provider == "runpod":
        return "cpu"
    return "cuda" if _probe_device(config) == "cuda" else "cpu"


def _probe_device(config: PipelineConfig) -> str:
    from tuneship.compute.local import get_provider

    return (
        get_provider(config.compute.provider)
        .provision(device=config.compute.device, gpu_count=config.compute.gpu_count)
        .device
    )
