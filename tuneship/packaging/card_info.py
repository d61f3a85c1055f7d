"""What a run's model card says, from the config and the training result.

Only facts that hold for *this* model go into the card's metadata: its own eval results,
named for what they measure; Hub dataset ids only when the data came from the Hub; the
hyperparameters that applied to the method and adapter used. The base model's score and
the data fingerprint are context, so they go in the card's text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuneship.config import DataConfig, PipelineConfig, TrainingConfig
from tuneship.data.sources import looks_like_hub_id, resolve_path
from tuneship.packaging.card import CardInfo, CardResult
from tuneship.training.specs import TrainResult

_PREFERENCE_RESULTS = {
    # TRL's eval metric -> (model-index type, what it measures)
    "eval_rewards/accuracies": ("accuracy", "reward accuracy (chosen preferred over rejected)"),
    "eval_rewards/margins": ("reward_margin", "reward margin (chosen minus rejected)"),
}


def hub_dataset_ids(data: DataConfig) -> list[str]:
    """Return ``[data.path]`` when the training data was read from the Hub, else ``[]``.

    Args:
        data: The data config.

    Returns:
        The Hub dataset id, or nothing for local files, folders and URLs.
    """
    path = resolve_path(data.path)
    if "://" in path or Path(path).exists() or not looks_like_hub_id(path):
        return []
    return [path]


def describe_eval_loss(training: TrainingConfig, trainer_format: str) -> str:
    """Name the eval loss for what it measures, e.g. ``loss on assistant tokens``.

    Args:
        training: The training config (method and ``train_on_inputs``).
        trainer_format: ``messages``, ``prompt_completion`` or ``preference``.

    Returns:
        A short lower-case description.
    """
    if training.method != "sft":
        return f"{training.method.upper()} loss"
    if training.train_on_inputs:
        return "loss on all tokens"
    if trainer_format == "prompt_completion":
        return "loss on completion tokens"
    return "loss on assistant tokens"


def card_results(
    training: TrainingConfig, trainer_format: str, trained: TrainResult
) -> list[CardResult]:
    """Return this model's eval results for the model-index.

    SFT reports its eval loss (named for the tokens it covers). DPO/ORPO losses depend on
    beta and the reference model, so a preference run reports what a reader can compare:
    reward accuracy and margin on the eval pairs, when they were evaluated.

    Args:
        training: The training config.
        trainer_format: The trainer's row format.
        trained: The training result.

    Returns:
        The results, empty when nothing was evaluated.
    """
    method = training.method.upper()
    if training.method == "sft":
        if trained.eval_loss is None:
            return []
        name = "Eval " + describe_eval_loss(training, trainer_format)
        return [CardResult(type="loss", name=name, value=trained.eval_loss)]
    return [
        CardResult(type=kind, name=f"Eval {method} {label}", value=trained.eval_metrics[key])
        for key, (kind, label) in _PREFERENCE_RESULTS.items()
        if key in trained.eval_metrics
    ]


def applied_hyperparameters(
    training: TrainingConfig, trained: TrainResult, max_length: int
) -> dict[str, Any]:
    """Return the training settings that applied to this run's method and adapter.

    Args:
        training: The training config.
        trained: The training result (for the steps really run).
        max_length: The token length rows were truncated to.

    Returns:
        Setting name to value; no LoRA settings for a full fine-tune, no quantisation
        unless QLoRA, no beta unless DPO/ORPO.
    """
    values: dict[str, Any] = {
        "method": training.method,
        "adapter": training.adapter,
        "learning_rate": training.learning_rate,
        "lr_scheduler_type": training.lr_scheduler_type,
        "warmup_ratio": training.warmup_ratio,
        "steps": trained.global_step,
        "per_device_train_batch_size": training.per_device_train_batch_size,
        "gradient_accumulation_steps": training.gradient_accumulation_steps,
        "max_length": max_length,
        "seed": training.seed,
    }
    if training.method == "sft":
        values["train_on_inputs"] = training.train_on_inputs
    else:
        values["beta"] = training.beta
    if training.adapter in ("lora", "qlora"):
        lora = training.lora
        values.update(
            lora_r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            lora_target_modules=lora.target_modules,
        )
    if training.adapter == "qlora":
        values["quantization"] = "4-bit NF4, double quantisation (bitsandbytes)"
    return values


def build_card_info(
    config: PipelineConfig,
    trained: TrainResult,
    *,
    trainer_format: str,
    dataset_fingerprint: str,
    base_label: str,
    license: str | None,
    version: str,
) -> CardInfo:
    """Collect what the model card of this run says.

    Args:
        config: The pipeline config.
        trained: The training result.
        trainer_format: The row format the trainer saw.
        dataset_fingerprint: SHA-256 of the prepared split.
        base_label: How the base model is named (a Hub id or a label).
        license: The model's license id, if known.
        version: The tuneship version.

    Returns:
        The card's contents.
    """
    training = config.training
    store_repo_dir = None
    if config.publish.target == "local":
        store_repo_dir = str((config.store_dir() / config.publish.repo_id).resolve())
    return CardInfo(
        repo_id=config.publish.repo_id,
        base_model=base_label,
        method=training.method,
        adapter=training.adapter,
        datasets=hub_dataset_ids(config.data),
        license=license,
        results=card_results(training, trainer_format, trained),
        eval_loss_name=describe_eval_loss(training, trainer_format),
        base_eval_loss=trained.base_eval_loss,
        eval_loss=trained.eval_loss,
        hyperparameters=applied_hyperparameters(training, trained, config.data.max_length),
        dataset_fingerprint=dataset_fingerprint,
        store_repo_dir=store_repo_dir,
        tuneship_version=version,
    )
