"""Merge a LoRA adapter into its base model and prove the merge is faithful.

The adapter is merged into a freshly loaded, unquantised base in the base's own dtype
(also after QLoRA, whose adapter was trained against a 4-bit base). The merged model
is saved as sharded safetensors with the base's tokenizer files, chat template and
generation config, then reloaded from disk and compared on a few data rows with a
float32 reference: base + adapter (unmerged PeftModel) computed in float32.

A bf16 or fp16 model cannot match that reference exactly: the same base + adapter,
computed unmerged in the merged model's own dtype, already differs from it (for
SmolLM2-135M in bf16 by about 1.8 in the logits). That difference is the noise of the
dtype, measured on the same rows, and the merged model may differ from the reference by
no more than twice that noise (plus float32's own summation-order allowance). A merge
that lost the fine-tune, whose logits are closer to the base than to the reference,
fails whatever the noise. The folder only appears at ``output_dir`` once the check
passes, so a bad merge never looks like a valid model.
"""

from __future__ import annotations

import gc
import logging
import math
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from tuneship.errors import MergeError, TuneshipError
from tuneship.training.checks import checkpoint_dtype, read_model_config
from tuneship.training.rows import read_rows, render_row_text
from tuneship.training.specs import MergeJobSpec, MergeResult

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

logger = logging.getLogger(__name__)

FLOAT32_TOLERANCE = (1e-3, 1e-4)
"""(absolute, relative to the largest reference logit) difference float32 allows.

float32 differences come only from summation order (~1e-6 relative)."""
NOISE_FACTOR = 2.0
"""A merged model in a half dtype may be this many times as far from the float32
reference as the unmerged computation in that dtype is: merging rounds ``W + BA`` once
where the unmerged model rounds ``Wx`` and ``BAx`` separately, so the two are of the same
size (measured equal for SmolLM2 in bf16), never many times apart."""

CARRY_OVER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "spiece.model",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
    "generation_config.json",
)
FALLBACK_TEXT = "The quick brown fox jumps over the lazy dog."


def merge_tolerance(scale: float, noise: float = 0.0) -> float:
    """Return the allowed max abs logit difference from the float32 reference.

    Args:
        scale: The largest absolute reference logit.
        noise: Max abs difference of the unmerged model computed in the merged model's
            dtype from the float32 reference (0 for float32).
    """
    absolute, relative = FLOAT32_TOLERANCE
    return absolute + relative * scale + NOISE_FACTOR * noise


def merge_adapter(model: Any) -> PreTrainedModel:
    """Fold a PeftModel's LoRA weights into its base layers and return the plain model."""
    merged: PreTrainedModel = model.merge_and_unload()
    return merged


def _load_causal_lm(path: str | Path, dtype: str, spec: MergeJobSpec) -> PreTrainedModel:
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {
        "dtype": getattr(torch, dtype),
        "trust_remote_code": spec.trust_remote_code,
    }
    if spec.device == "cuda":
        kwargs["device_map"] = "auto"
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
    except (OSError, ValueError) as exc:
        raise MergeError(f"cannot load model from {path}: {exc}") from exc
    model.eval()
    return model


def _verification_texts(spec: MergeJobSpec, tokenizer: Any) -> list[str]:
    for field in ("eval_path", "train_path"):
        path = getattr(spec, field)
        if path:
            try:
                rows = read_rows(path, field, limit=spec.check_rows)
            except TuneshipError as exc:
                raise MergeError(str(exc)) from None
            texts = [render_row_text(row, tokenizer) for row in rows]
            if texts:
                return texts
    return [FALLBACK_TEXT]


def _logits(model: Any, tokenizer: Any, texts: list[str], max_length: int) -> list[torch.Tensor]:
    import torch

    device = next(model.parameters()).device
    outputs = []
    # One row at a time: no padding, so every position is a real token.
    with torch.inference_mode():
        for text in texts:
            enc = tokenizer(text, return_tensors="pt", truncation=True, max_length=max_length)
            enc = {k: v.to(device) for k, v in enc.items()}
            outputs.append(model(**enc).logits.float().cpu())
    return outputs


def _collect() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def carry_over_files(base_dir: str | Path, dest_dir: str | Path) -> None:
    """Copy tokenizer files, chat template and generation config from the base model.

    The generation config's ``eos_token_id`` is made to include the tokenizer's eos token
    (chat models end turns with it; generation would run on otherwise).

    Args:
        base_dir: The base model folder.
        dest_dir: The merged model folder.
    """
    from transformers import AutoTokenizer, GenerationConfig

    base, dest = Path(base_dir), Path(dest_dir)
    for name in CARRY_OVER_FILES:
        if (base / name).is_file():
            shutil.copy2(base / name, dest / name)
    tokenizer = AutoTokenizer.from_pretrained(str(dest))
    if (dest / "generation_config.json").is_file():
        generation = GenerationConfig.from_pretrained(str(dest))
    else:
        generation = GenerationConfig()
    eos = tokenizer.eos_token_id
    if eos is not None:
        current = generation.eos_token_id
        ids = [] if current is None else [current] if isinstance(current, int) else list(current)
        if eos not in ids:
            generation.eos_token_id = [eos, *ids] if ids else eos
    if generation.pad_token_id is None and tokenizer.pad_token_id is not None:
        generation.pad_token_id = tokenizer.pad_token_id
    generation.save_pretrained(str(dest))


def _check_inputs(spec: MergeJobSpec) -> None:
    try:
        read_model_config(spec.base_model_path)
    except TuneshipError as exc:
        raise MergeError(str(exc).replace("model_path", "base_model_path")) from None
    source = Path(spec.adapter_path)
    marker = "adapter_config.json" if spec.is_adapter else "config.json"
    if not (source / marker).is_file():
        kind = "LoRA adapter" if spec.is_adapter else "full model"
        raise MergeError(
            f"adapter_path: {source} has no {marker}, so it is not a {kind} folder "
            f"(is_adapter={spec.is_adapter})"
        )


class LogitComparison(BaseModel):
    """How far one set of logits is from another, over every checked position."""

    max_abs: float = Field(description="Largest absolute logit difference.")
    mean_abs: float = Field(description="Mean absolute logit difference.")
    top1_agreement: float = Field(description="Share of positions with the same top token.")


def compare_logits(got: list[torch.Tensor], want: list[torch.Tensor]) -> LogitComparison:
    """Compare per-row logits (``[1, tokens, vocab]`` each) position by position.

    Args:
        got: The logits under test.
        want: The reference logits, same shapes.

    Returns:
        Largest and mean absolute difference and top-1 agreement.
    """
    biggest, total, count, same, positions = 0.0, 0.0, 0, 0, 0
    for a, b in zip(got, want, strict=True):
        delta = (a.float() - b.float()).abs()
        biggest = max(biggest, float(delta.max()))
        total += float(delta.sum())
        count += delta.numel()
        same += int((a.argmax(-1) == b.argmax(-1)).sum())
        positions += a.shape[:-1].numel()
    return LogitComparison(
        max_abs=biggest,
        mean_abs=total / max(count, 1),
        top1_agreement=same / max(positions, 1),
    )


def lost_finetune(
    merged_to_reference: float, merged_to_base: float, effect: float, noise: float = 0.0
) -> bool:
    """Return whether a merged model looks like the base rather than base + adapter.

    Mean absolute differences are compared: when the adapter changes the logits more
    than the dtype's rounding does, a faithful merge is nearer the reference than the
    base, and a merge that dropped the adapter is nearer the base. An effect below the
    rounding noise cannot be told apart from it, so it is not judged.

    Args:
        merged_to_reference: Mean abs logit difference, merged vs float32 reference.
        merged_to_base: Mean abs logit difference, merged vs float32 base.
        effect: Mean abs logit difference, float32 reference vs float32 base.
        noise: Mean abs logit difference, unmerged in the saved dtype vs the reference.
    """
    return effect > noise and merged_to_base <= merged_to_reference


def describe_merge_check(result: MergeResult) -> str:
    """Say what the merge self-check compared and the figures it measured.

    One line for logs, the run summary and the demo's output: the difference from the
    float32 reference against its tolerance, the dtype's own rounding noise, how far the
    fine-tune moved the logits, and top-1 agreement with the reference (and the base's).
    """
    what = (
        "merged model vs float32 base + adapter"
        if result.merged
        else "re-saved model vs float32 trained model"
    )
    return (
        f"{what}: max abs logit difference {result.max_abs_logit_diff:.3g} "
        f"(tolerance {result.tolerance:.3g}, {result.dtype}, {result.checked_rows} rows; "
        f"unmerged {result.dtype} noise {result.unmerged_noise:.3g}, fine-tune effect "
        f"{result.finetune_effect:.3g}, top-1 agreement {result.top1_agreement:.1%}, "
        f"base alone {result.base_top1_agreement:.1%})"
    )


def _trained_logits(
    spec: MergeJobSpec, dtype: str, tokenizer: Any, texts: list[str]
) -> tuple[Any, list[torch.Tensor]]:
    """Load the trained model in ``dtype``; return it (a PeftModel for adapters) and logits."""
    model: Any
    if spec.is_adapter:
        from peft import PeftModel

        base = _load_causal_lm(spec.base_model_path, dtype, spec)
        model = PeftModel.from_pretrained(base, spec.adapter_path)
        model.eval()
    else:
        model = _load_causal_lm(spec.adapter_path, dtype, spec)
    return model, _logits(model, tokenizer, texts, spec.max_length)


def _base_logits(
    spec: MergeJobSpec, model: Any, tokenizer: Any, texts: list[str]
) -> list[torch.Tensor]:
    """Return the float32 base model's logits (the adapter switched off where there is one)."""
    if spec.is_adapter:
        with model.disable_adapter():
            return _logits(model, tokenizer, texts, spec.max_length)
    base = _load_causal_lm(spec.base_model_path, "float32", spec)
    try:
        return _logits(base, tokenizer, texts, spec.max_length)
    finally:
        del base
        _collect()


def run_merge(spec: MergeJobSpec) -> MergeResult:
    """Merge (or, for a full fine-tune, re-save) the trained model and verify it from disk.

    The reloaded model is compared with a float32 reference (the trained model computed
    in float32), within the noise of the same computation in the saved dtype, and must
    keep the fine-tune's effect (be nearer the reference than the base).

    Args:
        spec: The merge job.

    Returns:
        Where the model went and the check's figures.

    Raises:
        MergeError: The inputs are missing, the reloaded model's logits differ from the
            float32 reference by more than the tolerance, or the merge lost the fine-tune
            (the output folder is removed).
    """
    from transformers import AutoTokenizer

    _check_inputs(spec)
    dtype = spec.dtype if spec.dtype != "auto" else checkpoint_dtype(spec.base_model_path)
    out = Path(spec.output_dir)
    staging = out.parent / f".{out.name}.partial"
    for stale in (out, staging):
        if stale.exists():
            shutil.rmtree(stale)
    staging.mkdir(parents=True)
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            spec.base_model_path, trust_remote_code=spec.trust_remote_code
        )
        texts = _verification_texts(spec, tokenizer)
        model, reference = _trained_logits(spec, "float32", tokenizer, texts)
        base_logits = _base_logits(spec, model, tokenizer, texts)
        noise = LogitComparison(max_abs=0.0, mean_abs=0.0, top1_agreement=1.0)
        if dtype != "float32":
            # The float32 copy is freed before the dtype copy loads: peak memory stays one
            # model (plus logits) as before.
            del model
            _collect()
            model, unmerged = _trained_logits(spec, dtype, tokenizer, texts)
            noise = compare_logits(unmerged, reference)
            del unmerged
        if spec.is_adapter:
            model = merge_adapter(model)
        model.save_pretrained(str(staging), max_shard_size=spec.max_shard_size)
        del model
        _collect()
        carry_over_files(spec.base_model_path, staging)
        reloaded = _load_causal_lm(staging, dtype, spec)
        got = _logits(reloaded, tokenizer, texts, spec.max_length)
        del reloaded
        _collect()
        to_reference = compare_logits(got, reference)
        to_base = compare_logits(got, base_logits)
        effect = compare_logits(reference, base_logits)
        base_vs_reference = compare_logits(base_logits, reference)
        scale = max(float(r.abs().max()) for r in reference)
        tolerance = spec.tolerance or merge_tolerance(scale, noise.max_abs)
        figures = (
            f"({dtype}, {len(texts)} rows; unmerged {dtype} noise {noise.max_abs:.4g}, fine-tune "
            f"effect {effect.max_abs:.4g}, top-1 agreement with the reference "
            f"{to_reference.top1_agreement:.1%}, base alone "
            f"{base_vs_reference.top1_agreement:.1%})"
        )
        if lost_finetune(to_reference.mean_abs, to_base.mean_abs, effect.mean_abs, noise.mean_abs):
            raise MergeError(
                f"the merged model lost the fine-tune: its logits are nearer the base model "
                f"(mean abs difference {to_base.mean_abs:.4g}) than base + adapter "
                f"({to_reference.mean_abs:.4g}) {figures}; the merged folder was removed"
            )
        diff = to_reference.max_abs
        if not math.isfinite(diff) or diff > tolerance:
            raise MergeError(
                f"merged model differs from base + adapter: max abs logit difference "
                f"{diff:.6g} from the float32 reference > tolerance {tolerance:.6g} "
                f"{figures}; the merged folder was removed"
            )
        if effect.mean_abs <= noise.mean_abs:
            logger.warning(
                "the fine-tune changes the logits less than %s rounding does (mean %.3g vs "
                "%.3g): the merged model can barely differ from the base",
                dtype,
                effect.mean_abs,
                noise.mean_abs,
            )
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    result = MergeResult(
        merged_dir=str(out),
        max_abs_logit_diff=diff,
        tolerance=tolerance,
        checked_rows=len(texts),
        dtype=dtype,
        merged=spec.is_adapter,
        unmerged_noise=noise.max_abs,
        finetune_effect=effect.max_abs,
        top1_agreement=to_reference.top1_agreement,
        base_top1_agreement=base_vs_reference.top1_agreement,
    )
    logger.info("merge check: %s", describe_merge_check(result))
    return result
