"""From ``training:`` settings to the keyword arguments of TRL's config classes.

One direction only: the typed fields of :class:`~tuneship.config.TrainingConfig` map to
TRL argument names through :data:`TYPED_TRAINER_ARGS`, tuneship adds the values it owns
(paths, precision, evaluation wiring), and ``training.trainer_args`` passes any other
field of the chosen method's config class (``SFTConfig``, ``DPOConfig``, ``ORPOConfig``)
straight through. Names are checked against that class's dataclass fields when the
config loads, so a typo fails before anything is downloaded.

TRL loads lazily (importing it takes seconds), and only when names must be checked or a
trainer built.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tuneship.config import LoraSettings
    from tuneship.training.specs import TrainJobSpec

TYPED_TRAINER_ARGS: dict[str, str] = {
    # training.<field>: TRL/transformers argument it sets
    "max_steps": "max_steps",
    "num_train_epochs": "num_train_epochs",
    "learning_rate": "learning_rate",
    "lr_scheduler_type": "lr_scheduler_type",
    # transformers 5 folded warmup_ratio into warmup_steps: a float below 1 is a ratio.
    "warmup_ratio": "warmup_steps",
    "per_device_train_batch_size": "per_device_train_batch_size",
    "gradient_accumulation_steps": "gradient_accumulation_steps",
    "save_strategy": "save_strategy",
    "save_steps": "save_steps",
    "save_total_limit": "save_total_limit",
    "logging_steps": "logging_steps",
    # transformers 5 renamed gradient_checkpointing; TRL's default for the old name is True.
    "gradient_checkpointing": "activation_checkpointing",
    "seed": "seed",
    "report_to": "report_to",
}
"""Typed ``training`` fields passed to every method's config class."""

TYPED_EVAL_ARGS: dict[str, str] = {
    "eval_strategy": "eval_strategy",
    "eval_steps": "eval_steps",
    "per_device_eval_batch_size": "per_device_eval_batch_size",
    "eval_accumulation_steps": "eval_accumulation_steps",
    "load_best_model_at_end": "load_best_model_at_end",
}
"""Typed ``training`` fields passed only when evaluation is on."""

TYPED_PREFERENCE_ARGS: dict[str, str] = {"beta": "beta"}
"""Typed ``training`` fields passed to DPO and ORPO (ORPO's beta is its lambda)."""

OWNED_ARGS: dict[str, str] = {
    # TRL argument: the setting that decides it
    "output_dir": "workdir (the run folder)",
    "max_length": "data.max_length",
    "bf16": "compute.device (bf16 where the GPU supports it)",
    "fp16": "compute.device (fp16 on GPUs without bf16)",
    "use_cpu": "compute.device",
    "metric_for_best_model": "training.load_best_model_at_end (eval loss)",
    "greater_is_better": "training.load_best_model_at_end (eval loss)",
    "resume_from_checkpoint": "training.resume_from_checkpoint",
}
"""Arguments tuneship sets from other settings; ``trainer_args`` may not name them."""

DEFAULT_ARGS: dict[str, Any] = {
    "logging_first_step": True,
    # Progress goes through tuneship's callback; tqdm bars garble Prefect logs.
    "disable_tqdm": True,
    "dataloader_num_workers": 0,
    # Rows are chat turns of mixed length; packing would change what the loss sees.
    "packing": False,
}
"""tuneship's own defaults, which ``trainer_args`` may override (when the class has them)."""


TRL_CLASSES: dict[str, tuple[str, str, str]] = {
    # method: (module, config class, trainer class); ORPO moved to trl.experimental in TRL 1.x.
    "sft": ("trl", "SFTConfig", "SFTTrainer"),
    "dpo": ("trl", "DPOConfig", "DPOTrainer"),
    "orpo": ("trl.experimental.orpo", "ORPOConfig", "ORPOTrainer"),
}


def trl_classes(method: str) -> tuple[type, Any]:
    """Return the TRL config class and trainer class of a method (``sft``, ``dpo``, ``orpo``)."""
    module_name, config_name, trainer_name = TRL_CLASSES[method]
    module = importlib.import_module(module_name)
    return getattr(module, config_name), getattr(module, trainer_name)


def trl_config_class(method: str) -> type:
    """Return the TRL config class of a method (``SFTConfig``, ``DPOConfig``, ``ORPOConfig``)."""
    return trl_classes(method)[0]


@functools.cache
def trl_config_fields(method: str) -> frozenset[str]:
    """Return the argument names the method's TRL config class accepts."""
    return frozenset(f.name for f in dataclasses.fields(trl_config_class(method)))


def typed_args_for(method: str, evaluates: bool) -> dict[str, str]:
    """Return the typed ``training`` fields (and their TRL names) a run of ``method`` uses."""
    table = dict(TYPED_TRAINER_ARGS)
    if evaluates:
        table.update(TYPED_EVAL_ARGS)
    if method in ("dpo", "orpo"):
        table.update(TYPED_PREFERENCE_ARGS)
    return table


def find_trainer_args_problems(method: str, names: Iterable[str]) -> list[str]:
    """Return one message per ``trainer_args`` name the method's TRL config cannot take.

    Args:
        method: ``sft``, ``dpo`` or ``orpo``.
        names: The keys of ``training.trainer_args``.

    Returns:
        Messages naming the typed field to use instead, or the closest valid names; empty
        when every name is fine.
    """
    names = list(names)
    if not names:
        return []
    fields = trl_config_fields(method)
    typed = {
        arg: field
        for table in (TYPED_TRAINER_ARGS, TYPED_EVAL_ARGS, TYPED_PREFERENCE_ARGS)
        for field, arg in table.items()
    }
    problems = []
    for name in names:
        if name in typed:
            problems.append(
                f"trainer_args.{name}: set it with the typed field training.{typed[name]}"
            )
        elif name in OWNED_ARGS:
            problems.append(f"trainer_args.{name}: tuneship sets it from {OWNED_ARGS[name]}")
        elif name not in fields:
            close = difflib.get_close_matches(name, sorted(fields), n=3, cutoff=0.6)
            hint = f"; closest: {', '.join(close)}" if close else ""
            cls = trl_config_class(method).__name__
            problems.append(f"trainer_args.{name}: not a field of TRL's {cls}{hint}")
    return problems


def _precision(device: str) -> dict[str, bool]:
    if device == "cpu":
        return {"bf16": False, "fp16": False, "use_cpu": True}
    import torch

    bf16 = torch.cuda.is_bf16_supported()
    return {"bf16": bf16, "fp16": not bf16, "use_cpu": False}


def _typed_value(field: str, value: Any) -> Any:
    # An empty report_to means "no integrations"; transformers' own default differs by version.
    if field == "report_to" and not value:
        return "none"
    return value


def build_trainer_args(spec: TrainJobSpec) -> dict[str, Any]:
    """Return the keyword arguments for the spec's TRL config class.

    Order of precedence, lowest first: tuneship's defaults, the typed fields, the values
    tuneship owns, then ``training.trainer_args`` (whose names never clash with the two
    before it: the config rejects those).

    Args:
        spec: The training job.

    Returns:
        Keyword arguments for ``trl_config_class(spec.training.method)``.
    """
    t = spec.training
    fields = trl_config_fields(t.method)
    kwargs: dict[str, Any] = {k: v for k, v in DEFAULT_ARGS.items() if k in fields}
    for field, arg in typed_args_for(t.method, t.evaluates).items():
        kwargs[arg] = _typed_value(field, getattr(t, field))
    kwargs.update(output_dir=spec.output_dir, max_length=spec.max_length)
    kwargs.update(_precision(spec.device))
    if t.evaluates:
        kwargs.update(metric_for_best_model="eval_loss", greater_is_better=False)
    else:
        kwargs.update(eval_strategy="no", load_best_model_at_end=False)
    if t.gradient_checkpointing:
        kwargs["activation_checkpointing_kwargs"] = {"use_reentrant": False}
    kwargs.update(t.trainer_args)
    return kwargs


def build_trl_config(spec: TrainJobSpec) -> Any:
    """Return the TRL config object (``SFTConfig``, ``DPOConfig`` or ``ORPOConfig``) of a job."""
    return trl_config_class(spec.training.method)(**build_trainer_args(spec))


def peft_lora_config(lora: LoraSettings, **model_extras: Any) -> Any:
    """Build PEFT's ``LoraConfig`` from ``training.lora``.

    The only place a LoRA setting becomes a PEFT argument
    (YAML -> ``LoraSettings`` -> here -> ``peft.LoraConfig``).

    Args:
        lora: ``training.lora``.
        **model_extras: Keywords that depend on the loaded model (``modules_to_save``
            checked against it, ``ensure_weight_tying`` for tied embeddings).
    """
    from peft import LoraConfig

    target = (
        lora.target_modules if isinstance(lora.target_modules, str) else list(lora.target_modules)
    )
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=target,
        bias="none",
        task_type="CAUSAL_LM",
        **model_extras,
    )
