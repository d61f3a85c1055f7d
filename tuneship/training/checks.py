"""Checks that run before a training job loads anything heavy.

Every problem that can be found from the spec, the files and the machine is reported
here, naming the field to change, so a run fails in seconds instead of after a model
download or an hour of training.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from tuneship.data.formats import FORMAT_SHAPES, match_format
from tuneship.errors import PlanningError, TrainingError
from tuneship.planning import model_config as planning_config
from tuneship.training.rows import is_conversational, read_rows
from tuneship.training.specs import TrainJobSpec

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")
SFT_FORMATS = ("messages", "prompt_completion")


def read_model_config(model_path: str | Path) -> dict[str, Any]:
    """Return a model folder's ``config.json`` (read by the planner's one reader).

    Raises:
        TrainingError: The folder or its config.json is missing or unreadable; the
            message starts with ``model_path:``.
    """
    folder = Path(model_path)
    if not folder.is_dir():
        raise TrainingError(f"model_path: model folder not found: {folder}")
    try:
        return planning_config.read_model_config(folder)
    except PlanningError as exc:
        raise TrainingError(f"model_path: {exc}") from None


def checkpoint_dtype(model_path: str | Path) -> str:
    """Return the dtype a checkpoint was saved in (``float32`` when it does not say)."""
    config = read_model_config(model_path)
    for source in (config, config.get("text_config") or {}):
        value = source.get("dtype") or source.get("torch_dtype")
        if isinstance(value, str) and value in ("float32", "bfloat16", "float16"):
            return value
    return "float32"


def has_chat_template(model_path: str | Path) -> bool:
    """Whether a model folder ships a chat template (file or tokenizer_config entry)."""
    folder = Path(model_path)
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    tokenizer_config = folder / "tokenizer_config.json"
    if tokenizer_config.is_file():
        try:
            data = json.loads(tokenizer_config.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            return False
        return isinstance(data, dict) and bool(data.get("chat_template"))
    return False


def resolve_train_dtype(spec: TrainJobSpec) -> str:
    """Return the dtype the model is loaded in for training.

    The CPU always trains in float32 (bf16 on CPU is slow and imprecise); on CUDA,
    ``auto`` keeps the checkpoint's dtype and QLoRA computes in bfloat16.
    """
    if spec.device == "cpu":
        return "float32"
    if spec.training.adapter == "qlora":
        return "bfloat16"
    if spec.model_dtype != "auto":
        return spec.model_dtype
    return checkpoint_dtype(spec.model_path)


def _check_compute(spec: TrainJobSpec) -> None:
    adapter = spec.training.adapter
    if adapter == "qlora" and spec.device != "cuda":
        raise TrainingError(
            "training.adapter=qlora needs a CUDA GPU (4-bit bitsandbytes layers do not run on "
            f"device={spec.device!r}); use training.adapter=lora on the CPU, or train on a GPU"
        )
    if adapter == "qlora" and importlib.util.find_spec("bitsandbytes") is None:
        raise TrainingError(
            "training.adapter=qlora needs the bitsandbytes package: pip install bitsandbytes"
        )
    if spec.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise TrainingError(
                "device=cuda but PyTorch sees no CUDA GPU (torch.cuda.is_available() is False; "
                f"cuda_devices={spec.cuda_devices}); use device=cpu, fix cuda_devices, or "
                "install a CUDA build of torch"
            )
        count = torch.cuda.device_count()
        bad = [i for i in spec.cuda_devices if i < 0 or i >= count]
        if bad and not _cuda_devices_already_applied(spec):
            raise TrainingError(f"cuda_devices: {bad} not among the {count} visible GPUs")
    if adapter == "full" and resolve_train_dtype(spec) == "float16":
        raise TrainingError(
            "training.adapter=full with float16 weights cannot train (fp16 mixed precision "
            "needs float32 master weights); set model_dtype to bfloat16 or float32"
        )


def _cuda_devices_already_applied(spec: TrainJobSpec) -> bool:
    import os

    wanted = ",".join(str(i) for i in spec.cuda_devices)
    return os.environ.get("CUDA_VISIBLE_DEVICES", "") == wanted


def _check_data(spec: TrainJobSpec) -> None:
    training = spec.training
    if training.method == "sft" and spec.trainer_format not in SFT_FORMATS:
        raise TrainingError(
            f"trainer_format={spec.trainer_format!r} does not fit training.method=sft: "
            "SFT needs messages or prompt/completion rows"
        )
    if training.method in ("dpo", "orpo") and spec.trainer_format != "preference":
        raise TrainingError(
            f"training.method={training.method} needs preference rows (prompt, chosen, "
            f"rejected), but trainer_format={spec.trainer_format!r}"
        )
    files = [("train_path", spec.train_path)]
    if training.evaluates:
        if not spec.eval_path:
            raise TrainingError(
                f"eval_path: training.eval_strategy={training.eval_strategy!r} needs an eval set; "
                "give eval_path or set training.eval_strategy=no"
            )
        files.append(("eval_path", spec.eval_path))
    conversational = False
    for field, path in files:
        rows = read_rows(path, field, limit=1)
        if not rows:
            raise TrainingError(f"{field}: {path} has no rows")
        found = match_format(rows[0])
        if found != spec.trainer_format:
            raise TrainingError(
                f"{field}: first row of {path} has keys {sorted(rows[0])}, but "
                f"trainer_format={spec.trainer_format!r} needs "
                f"{FORMAT_SHAPES[spec.trainer_format]}"
            )
        conversational = conversational or is_conversational(rows[0])
    if conversational and not has_chat_template(spec.model_path):
        raise TrainingError(
            f"model_path: the tokenizer in {spec.model_path} has no chat template, but the data "
            "holds chat messages; use a chat (instruct) model or prompt/completion string rows"
        )


def _check_schedule(spec: TrainJobSpec) -> None:
    training = spec.training
    if training.max_steps == 0 or training.max_steps < -1:
        raise TrainingError(
            f"training.max_steps={training.max_steps}: use a positive number, or -1 for epochs"
        )
    resume = training.resume_from_checkpoint
    if resume and resume != "auto" and not Path(resume).is_dir():
        raise TrainingError(
            f"training.resume_from_checkpoint: checkpoint folder not found: {resume} "
            "(use 'auto' to resume from the newest checkpoint in output_dir if there is one)"
        )


def _check_report_to(spec: TrainJobSpec) -> None:
    wanted = [name for name in spec.training.report_to if name not in ("none", "all")]
    if not wanted:
        return
    # transformers knows which integrations it has and how each one is detected.
    from transformers.integrations import get_available_reporting_integrations

    available = set(get_available_reporting_integrations())
    missing = [name for name in wanted if name not in available]
    if missing:
        raise TrainingError(
            f"training.report_to: {', '.join(missing)} not installed (pip install "
            f"{' '.join(missing)}); installed: {', '.join(sorted(available)) or 'none'}"
        )


def check_training_spec(spec: TrainJobSpec) -> None:
    """Check everything about a training job that can be checked before loading the model.

    Args:
        spec: The training job.

    Raises:
        TrainingError: A setting cannot work; the message names the field to change.
    """
    _check_compute(spec)
    read_model_config(spec.model_path)
    folder = Path(spec.model_path)
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise TrainingError(
            f"model_path: {folder} has no tokenizer files (expected one of "
            f"{', '.join(TOKENIZER_FILES)})"
        )
    _check_schedule(spec)
    _check_report_to(spec)
    _check_data(spec)
