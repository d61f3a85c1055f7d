"""Merge a LoRA adapter into its base model and prove the merge is faithful.

The adapter is merged into a freshly loaded, unquantised base in the base's own dtype
(also after QLoRA, whose adapter was trained against a 4-bit base). The merged model
is saved as sharded safetensors with the base's tokenizer files, chat template and
generation config, then reloaded from disk and compared with base + adapter (unmerged
PeftModel) on a few data rows. The folder only appears at ``output_dir`` once the
comparison passes, so a bad merge never looks like a valid model.
"""

from __future__ import annotations

import gc
import logging
import math
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneship.errors import MergeError, TuneshipError
from tuneship.training.checks import checkpoint_dtype, read_model_config
from tuneship.training.rows import read_rows, render_row_text
from tuneship.training.specs import MergeJobSpec, MergeResult

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

logger = logging.getLogger(__name__)

TOLERANCES: dict[str, tuple[float, float]] = {
    "float32": (1e-3, 1e-4),
    "float16": (1e-2, 5e-3),
    "bfloat16": (5e-2, 3e-2),
}
"""Per dtype: (absolute, relative to the largest reference logit) allowed logit difference.

float32 differences come only from summation order (~1e-6 relative); half-precision
merges round ``W + BA`` once to 8 (bf16) or 11 (fp16) mantissa bits, which moves logits
by a few per cent of their scale at most. A wrong or missing merge moves them by far more.
"""

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


def merge_tolerance(dtype: str, scale: float) -> float:
    """Return the allowed max abs logit difference for a merge saved in ``dtype``.

    Args:
        dtype: ``float32``, ``bfloat16`` or ``float16``.
        scale: The largest absolute reference logit.
    """
    absolute, relative = TOLERANCES.get(dtype, TOLERANCES["bfloat16"])
    return absolute + relative * scale


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


def run_merge(spec: MergeJobSpec) -> MergeResult:
    """Merge (or, for a full fine-tune, re-save) the trained model and verify it from disk.

    Args:
        spec: The merge job.

    Returns:
        Where the model went and how far its logits are from base + adapter.

    Raises:
        MergeError: The inputs are missing, or the reloaded model's logits differ from
            base + adapter by more than the tolerance (the output folder is removed).
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
        if spec.is_adapter:
            from peft import PeftModel

            base = _load_causal_lm(spec.base_model_path, dtype, spec)
            combined = PeftModel.from_pretrained(base, spec.adapter_path)
            combined.eval()
            reference = _logits(combined, tokenizer, texts, spec.max_length)
            model = merge_adapter(combined)
            del base, combined
        else:
            model = _load_causal_lm(spec.adapter_path, dtype, spec)
            reference = _logits(model, tokenizer, texts, spec.max_length)
        model.save_pretrained(str(staging), max_shard_size=spec.max_shard_size)
        del model
        _collect()
        carry_over_files(spec.base_model_path, staging)
        reloaded = _load_causal_lm(staging, dtype, spec)
        got = _logits(reloaded, tokenizer, texts, spec.max_length)
        del reloaded
        _collect()
        diff = max(float((a - b).abs().max()) for a, b in zip(reference, got, strict=True))
        scale = max(float(r.abs().max()) for r in reference)
        tolerance = spec.tolerance or merge_tolerance(dtype, scale)
        if not math.isfinite(diff) or diff > tolerance:
            raise MergeError(
                f"merged model differs from base + adapter: max abs logit difference {diff:.6g} "
                f"> tolerance {tolerance:.6g} ({dtype}, {len(texts)} rows, largest logit "
                f"{scale:.4g}); the merged folder was removed"
            )
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("merged %s rows check: max abs logit diff %.3g", len(texts), diff)
    return MergeResult(
        merged_dir=str(out),
        max_abs_logit_diff=diff,
        tolerance=tolerance,
        checked_rows=len(texts),
        dtype=dtype,
        merged=spec.is_adapter,
    )
