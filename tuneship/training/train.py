"""Run one training job (SFT, DPO or ORPO; LoRA, QLoRA or full) from a :class:`TrainJobSpec`.

The job measures the eval loss of the starting model before training (with LoRA the
untrained adapter is the identity, so this is the base model's loss) and of the final
(best) model after it, on the same eval set, so the pipeline can gate on improvement.
The adapter (or full model) and tokenizer are saved to ``<output_dir>/final``.
"""

from __future__ import annotations

import gc
import logging
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneship.errors import TrainingError
from tuneship.training.checks import check_training_spec, resolve_train_dtype
from tuneship.training.rows import read_rows
from tuneship.training.series import downsample_series
from tuneship.training.specs import TrainJobSpec, TrainProgress, TrainResult
from tuneship.training.trainer_args import build_trl_config, peft_lora_config, trl_classes

if TYPE_CHECKING:
    from transformers import PreTrainedModel, Trainer, TrainerCallback

logger = logging.getLogger(__name__)

FINAL_DIRNAME = "final"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


def find_latest_checkpoint(output_dir: str | Path) -> Path | None:
    """Return the newest complete ``checkpoint-<step>`` folder in ``output_dir``, if any.

    A checkpoint counts as complete when it holds ``trainer_state.json`` (written last),
    so a folder left by a run killed mid-save is skipped.
    """
    folder = Path(output_dir)
    if not folder.is_dir():
        return None
    found: list[tuple[int, Path]] = []
    for child in folder.iterdir():
        match = _CHECKPOINT_RE.match(child.name)
        if match and child.is_dir() and (child / "trainer_state.json").is_file():
            found.append((int(match.group(1)), child))
    return max(found)[1] if found else None


def _prepare_environment(spec: TrainJobSpec) -> None:
    # Expandable segments cut fragmentation OOMs on long runs; respect a user's own setting.
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    if spec.device == "cuda" and spec.cuda_devices:
        import torch

        wanted = ",".join(str(i) for i in spec.cuda_devices)
        if os.environ.get("CUDA_VISIBLE_DEVICES") == wanted:
            return
        if torch.cuda.is_initialized():
            raise TrainingError(
                f"cuda_devices={spec.cuda_devices}: CUDA is already initialised in this process; "
                "run the job in a fresh process (python -m tuneship.training.job train ...)"
            )
        os.environ["CUDA_VISIBLE_DEVICES"] = wanted


def _load_dataset(path: str, field: str) -> Any:
    from datasets import Dataset

    return Dataset.from_list(read_rows(path, field))


def _load_model(spec: TrainJobSpec) -> PreTrainedModel:
    import torch
    from transformers import AutoModelForCausalLM

    dtype = getattr(torch, resolve_train_dtype(spec))
    kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": spec.trust_remote_code}
    if spec.training.adapter == "qlora":
        from transformers import BitsAndBytesConfig

        # Pre-Ampere GPUs (T4, V100) have no fast bf16: compute in fp16 there.
        compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        kwargs["dtype"] = compute
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute,
        )
    if spec.device == "cuda":
        # Load straight onto the GPU: no full CPU copy, and 4-bit weights cannot move later.
        kwargs["device_map"] = {"": torch.cuda.current_device()}
    try:
        model = AutoModelForCausalLM.from_pretrained(spec.model_path, **kwargs)
    except (OSError, ValueError) as exc:
        raise TrainingError(f"model_path: cannot load {spec.model_path}: {exc}") from exc
    return model


def build_trainer(spec: TrainJobSpec, callbacks: list[TrainerCallback] | None = None) -> Trainer:
    """Load the model, tokenizer and data and build the TRL trainer for the spec's method.

    Args:
        spec: The training job (already checked).
        callbacks: Extra trainer callbacks.

    Returns:
        A ready-to-train SFTTrainer, DPOTrainer or ORPOTrainer.
    """
    from transformers import AutoTokenizer

    t = spec.training
    tokenizer = AutoTokenizer.from_pretrained(
        spec.model_path, trust_remote_code=spec.trust_remote_code
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    train_dataset = _load_dataset(spec.train_path, "train_path")
    eval_dataset = (
        _load_dataset(spec.eval_path, "eval_path") if t.evaluates and spec.eval_path else None
    )
    model = _load_model(spec)
    peft_config = peft_lora_config(t.lora) if t.adapter in ("lora", "qlora") else None
    # The TRL trainers take peft_config, which transformers' Trainer type does not declare.
    trainer_class: Any = trl_classes(t.method)[1]
    return trainer_class(
        model=model,
        args=build_trl_config(spec),
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
    )


def _resolve_resume(spec: TrainJobSpec, notes: list[str]) -> str | None:
    resume = spec.training.resume_from_checkpoint
    if not resume:
        return None
    if resume == "auto":
        latest = find_latest_checkpoint(spec.output_dir)
        if latest is None:
            notes.append(
                f"resume_from_checkpoint=auto: no checkpoint in {spec.output_dir}; started fresh"
            )
            return None
        return str(latest)
    return resume


def _history(trainer: Trainer, key: str) -> list[tuple[int, float]]:
    points = [
        (int(entry["step"]), float(entry[key]))
        for entry in trainer.state.log_history
        if key in entry and "step" in entry
    ]
    return downsample_series(points)


def run_training(
    spec: TrainJobSpec,
    on_progress: Callable[[TrainProgress], None] | None = None,
    callbacks: list[TrainerCallback] | None = None,
) -> TrainResult:
    """Train as the spec says and save the result to ``<output_dir>/final``.

    Args:
        spec: The training job.
        on_progress: Called with the step, step count and latest logs as training runs.
        callbacks: Extra transformers trainer callbacks.

    Returns:
        Paths, losses (before and after) and downsampled loss curves.

    Raises:
        TrainingError: The spec cannot work (raised before the model loads) or loading failed.
    """
    # Before any CUDA query: torch caches the device count it first sees.
    _prepare_environment(spec)
    check_training_spec(spec)
    notes: list[str] = []
    resume = _resolve_resume(spec, notes)
    all_callbacks = list(callbacks or [])
    if on_progress is not None:
        from tuneship.training.progress import ProgressCallback

        all_callbacks.append(ProgressCallback(on_progress))
    Path(spec.output_dir).mkdir(parents=True, exist_ok=True)
    trainer = build_trainer(spec, all_callbacks)
    from transformers.trainer_callback import PrinterCallback

    # With tqdm off, transformers prints every log dict to stdout; progress goes through
    # on_progress (Prefect logs, or the job runner's progress lines) instead.
    trainer.remove_callback(PrinterCallback)
    try:
        base_eval_loss = None
        if spec.training.evaluates:
            base_eval_loss = float(trainer.evaluate()["eval_loss"])
        output = trainer.train(resume_from_checkpoint=resume)
        # Read the curves now: the final evaluate() below appends a duplicate eval point.
        loss_history = _history(trainer, "loss")
        eval_loss_history = _history(trainer, "eval_loss")
        eval_loss = None
        if spec.training.evaluates:
            eval_loss = float(trainer.evaluate()["eval_loss"])
        final_dir = Path(spec.output_dir) / FINAL_DIRNAME
        if final_dir.exists():
            # A previous run in the same folder (say, LoRA before a full fine-tune) must not
            # leave files that change how this result loads (adapter_config.json does).
            shutil.rmtree(final_dir)
        trainer.save_model(str(final_dir))
        if trainer.processing_class is not None:
            trainer.processing_class.save_pretrained(str(final_dir))
        return TrainResult(
            output_path=str(final_dir),
            is_adapter=spec.training.adapter != "full",
            method=spec.training.method,
            adapter=spec.training.adapter,
            global_step=trainer.state.global_step,
            train_loss=float(output.training_loss) if output.training_loss is not None else None,
            base_eval_loss=base_eval_loss,
            eval_loss=eval_loss,
            best_checkpoint=trainer.state.best_model_checkpoint,
            resumed_from=resume,
            notes=notes,
            loss_history=loss_history,
            eval_loss_history=eval_loss_history,
        )
    finally:
        _release(trainer)


def _release(trainer: Trainer) -> None:
    import torch

    trainer.model = None  # type: ignore[assignment]
    trainer.model_wrapped = None  # type: ignore[assignment]
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
