"""Everything that can be checked before training: ``tuneship validate`` and the flow's pre-flight."""

from __future__ import annotations

import tempfile
from pathlib import Path

from pydantic import BaseModel

from tuneship.config import PipelineConfig
from tuneship.errors import ConfigError, TrainingError, TuneshipError


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
    if config.compute.device == "cpu":
        raise TrainingError(
            "training.adapter=qlora needs a CUDA GPU (4-bit bitsandbytes), but "
            "compute.device=cpu; use training.adapter=lora on the CPU"
        )
    from tuneship.compute.local import get_provider

    handle = get_provider(config.compute.provider).provision(
        device=config.compute.device, gpu_count=config.compute.gpu_count
    )
    if handle.device != "cuda":
        raise TrainingError(
            "training.adapter=qlora needs a CUDA GPU (4-bit bitsandbytes), and this machine "
            "has none; use training.adapter=lora, or run on a GPU machine"
        )
    return "qlora on CUDA"


def _check_publish(config: PipelineConfig) -> str:
    if config.publish.target != "hub":
        store = config.store_dir()
        store.mkdir(parents=True, exist_ok=True)
        return f"local store {store}"
    from tuneship.blocks.credentials import resolve_hf_token
    from tuneship.hub.preflight import check_hub_access

    token = resolve_hf_token(config.publish.hf_credentials_block)
    if token is None:
        raise ConfigError(
            "publish.target=hub needs a Hugging Face token: set publish.hf_credentials_block "
            "to a HuggingFaceCredentials block name, or set HF_TOKEN for local use"
        )
    base = config.model.base if "://" not in config.model.base else None
    check_hub_access(token, config.publish.hub_endpoint, config.publish.repo_id, base)
    return f"hub write access to {config.publish.repo_id}"


def check_before_training(config: PipelineConfig, base_model_dir: Path) -> list[CheckResult]:
    """Run the cheap checks that must pass before any GPU is used.

    Args:
        config: The run's configuration.
        base_model_dir: Local folder of the base model.

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
    if not (base_model_dir / "config.json").is_file():
        raise ConfigError(f"model.base: {base_model_dir} has no config.json")
    results.append(CheckResult(name="base model", ok=True, detail=str(base_model_dir)))
    for name, check in (
        ("compute", _check_qlora),
        ("publish", _check_publish),
        ("registry", _check_registry),
    ):
        results.append(CheckResult(name=name, ok=True, detail=check(config)))
    return results


def validate_run(config: PipelineConfig) -> list[CheckResult]:
    """Check everything that can be checked before training; start nothing.

    The data is read, validated, converted and split into a temporary folder, the
    training job spec is built and checked, and credentials and the registry are tried.

    Args:
        config: The run's configuration.

    Returns:
        One result per check; the first failure raises instead.

    Raises:
        TuneshipError: A check failed; the message says what to fix.
    """
    from transformers import AutoTokenizer

    from tuneship.base_model import resolve_base_model
    from tuneship.data import prepare_dataset
    from tuneship.training import TrainJobSpec, check_training_spec

    base_dir = resolve_base_model(config.model)
    results = check_before_training(config, base_dir)
    with tempfile.TemporaryDirectory(prefix="tuneship-validate-") as tmp:
        prepared = prepare_dataset(
            config.data,
            config.training.method,
            config.training.evaluates,
            Path(tmp) / "data",
            tokenizer=AutoTokenizer.from_pretrained(base_dir),
        )
        detail = f"{prepared.n_train} train / {prepared.n_eval} eval rows ({prepared.eval_source})"
        if prepared.report.warnings:
            detail += "; warnings: " + "; ".join(prepared.report.warnings)
        results.append(CheckResult(name="data", ok=True, detail=detail))
        spec = TrainJobSpec(
            model_path=str(base_dir),
            train_path=prepared.train_path,
            eval_path=prepared.eval_path,
            trainer_format=prepared.trainer_format,
            output_dir=str(Path(tmp) / "train"),
            training=config.training,
            max_length=config.data.max_length,
            model_dtype=config.model.dtype,
            device="cpu" if config.compute.device == "cpu" else _probe_device(config),
            cuda_devices=[],
        )
        check_training_spec(spec)
        results.append(CheckResult(name="training", ok=True, detail=f"{config.training.method} "
                                   f"with {config.training.adapter} on {spec.device}"))
    return results


def _probe_device(config: PipelineConfig) -> str:
    from tuneship.compute.local import get_provider

    try:
        return get_provider(config.compute.provider).provision(
            device=config.compute.device, gpu_count=config.compute.gpu_count
        ).device
    except TuneshipError:
        raise
