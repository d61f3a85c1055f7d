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
from tuneship.training.loss_mask import mask_chat_dataset, plan_sft_loss
from tuneship.training.rows import read_rows
from tuneship.training.series import downsample_series
from tuneship.training.specs import TrainJobSpec, TrainProgress, TrainResult
from tuneship.training.trainer_args import build_trainer_args, peft_lora_config, trl_classes

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


def _lora_extras(model: Any, lora: Any) -> dict[str, Any]:
    """Return the PEFT ``LoraConfig`` keywords that depend on the loaded model."""
    to_save = check_modules_to_save(model, lora.modules_to_save)
    embedding = _input_embedding_name(model)
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    saves_embedding = embedding is not None and any(_matches(embedding, name) for name in to_save)
    extras: dict[str, Any] = {}
    if to_save:
        extras["modules_to_save"] = to_save
    if tied and saves_embedding:
        # With tied input and output embeddings, a trained copy of embed_tokens alone would
        # untie them: training would see the new embeddings and the old output layer, and the
        # merged model (saved tied) something else again. PEFT keeps the copies tied.
        extras["ensure_weight_tying"] = True
    return extras


def _matches(module_path: str, name: str) -> bool:
    # PEFT matches modules_to_save entries against the end of a module's dotted path.
    return module_path == name or module_path.endswith("." + name)


def _input_embedding_name(model: Any) -> str | None:
    embedding = model.get_input_embeddings()
    return next((n for n, m in model.named_modules() if m is embedding), None)


def check_modules_to_save(model: Any, names: list[str]) -> list[str]:
    """Return ``names`` after checking that each one names a module of ``model``.

    Args:
        model: The loaded base model.
        names: ``training.lora.modules_to_save``.

    Returns:
        The names, unchanged.

    Raises:
        TrainingError: A name matches no module; the message lists the model's modules
            that are not inside a transformer layer (embeddings, final norm, output layer).
    """
    paths = [n for n, _ in model.named_modules() if n]
    missing = [name for name in names if not any(_matches(p, name) for p in paths)]
    if missing:
        # Modules outside the repeated layers are what one saves in practice.
        candidates = sorted(
            {p.rsplit(".", 1)[-1] for p in paths if not re.search(r"\.\d+(\.|$)", p)}
        )
        raise TrainingError(
            f"training.lora.modules_to_save: {missing} match no module of the base model; "
            f"modules outside its layers: {candidates}"
        )
    return list(names)


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
    peft_config = (
        peft_lora_config(t.lora, **_lora_extras(model, t.lora))
        if t.adapter in ("lora", "qlora")
        else None
    )
    trl_kwargs = build_trainer_args(spec)
    if t.method == "sft":
        loss = plan_sft_loss(spec.trainer_format, tokenizer, train_on_inputs=t.train_on_inputs)
        logger.info("SFT loss on %s", loss.description)
        if loss.mask_in_tuneship:
            train_dataset = mask_chat_dataset(train_dataset, tokenizer)
            if eval_dataset is not None:
                # The same mask for the eval set: base and fine-tuned eval losses compare.
                eval_dataset = mask_chat_dataset(eval_dataset, tokenizer)
        trl_kwargs.update(
            assistant_only_loss=loss.assistant_only_loss,
            completion_only_loss=loss.completion_only_loss,
        )
    config_class, trainer_class = trl_classes(t.method)
    # The TRL trainers take peft_config, which transformers' Trainer type does not declare.
    trainer: Any = trainer_class(
        model=model,
        args=config_class(**trl_kwargs),
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
    )
    return trainer


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


_EVAL_TIMING = ("_runtime", "_samples_per_second", "_steps_per_second")


def _last_eval_metrics(trainer: Trainer) -> dict[str, float]:
    # DPO/ORPO add their reward metrics to the logged entry, not to evaluate()'s return value.
    for entry in reversed(trainer.state.log_history):
        if "eval_loss" in entry:
            return {
                key: float(value)
                for key, value in entry.items()
                if key.startswith("eval_")
                and not key.endswith(_EVAL_TIMING)
                and isinstance(value, int | float)
                and not isinstance(value, bool)
            }
    return {}


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
        eval_metrics: dict[str, float] = {}
        if spec.training.evaluates:
            eval_loss = float(trainer.evaluate()["eval_loss"])
            eval_metrics = _last_eval_metrics(trainer)
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
            eval_metrics=eval_metrics,
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
