"""Check that a model folder is complete and loads, before anyone publishes or serves it.

Merged checkpoints commonly go out broken in ways that only show up at serving time: a
missing ``config.json`` or tokenizer, no chat template, a lost shard, or a
``generation_config.json`` whose eos token differs from the tokenizer's so vLLM never
stops. :func:`verify_model_folder` checks each of these and reports every problem at once.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from tuneship.errors import PackagingError

logger = logging.getLogger(__name__)

SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
SAMPLE_CONVERSATION = [
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "And of Italy?"},
]
_NO_TEMPLATE = (
    "chat_template.jinja: no chat template (neither chat_template.jinja nor a "
    "chat_template entry in tokenizer_config.json); copy the base model's"
)


class ModelFolderError(PackagingError):
    """A model folder failed verification; ``problems`` lists each thing missing or wrong."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"model folder {path} failed {len(problems)} check(s):\n{lines}")


class VerifyReport(BaseModel):
    """What :func:`verify_model_folder` checked and found."""

    path: str
    checks: list[str] = Field(default_factory=list, description="Checks that passed.")
    warnings: list[str] = Field(default_factory=list, description="Non-fatal oddities.")
    weight_files: list[str] = Field(default_factory=list, description="Weight files found.")
    loaded: bool = Field(default=False, description="Whether the model was loaded and generated.")
    generated: str | None = Field(
        default=None, description="The token generated in the load check."
    )


def _check_weights(folder: Path, problems: list[str]) -> list[str]:
    """Check the safetensors weights (single file or index + shards); return the files."""
    from safetensors import safe_open

    index_path = folder / SAFETENSORS_INDEX
    single = folder / SAFETENSORS_FILE
    if index_path.is_file():
        try:
            weight_map: dict[str, str] = json.loads(index_path.read_text())["weight_map"]
        except (ValueError, KeyError, TypeError) as exc:
            problems.append(f"{SAFETENSORS_INDEX}: unreadable or has no weight_map ({_brief(exc)})")
            return [SAFETENSORS_INDEX]
        shards = sorted(set(weight_map.values()))
        indexed: dict[str, set[str]] = {}
        for name, shard in weight_map.items():
            indexed.setdefault(shard, set()).add(name)
        for shard in shards:
            shard_path = folder / shard
            if not shard_path.is_file():
                problems.append(
                    f"{shard}: missing weight shard listed in {SAFETENSORS_INDEX} "
                    f"({len(indexed[shard])} tensors)"
                )
                continue
            try:
                with safe_open(str(shard_path), framework="pt") as handle:
                    keys = set(handle.keys())
            except Exception as exc:  # safetensors raises its own error types for bad headers
                problems.append(f"{shard}: not a readable safetensors file ({_brief(exc)})")
                continue
            absent = sorted(indexed[shard] - keys)
            if absent:
                problems.append(
                    f"{shard}: lacks {len(absent)} tensor(s) the index maps to it, "
                    f"e.g. {', '.join(absent[:3])}"
                )
            unindexed = sorted(k for k in keys if weight_map.get(k) != shard)
            if unindexed:
                problems.append(
                    f"{SAFETENSORS_INDEX}: does not map {len(unindexed)} tensor(s) of {shard} "
                    f"to it, e.g. {', '.join(unindexed[:3])}"
                )
        return [SAFETENSORS_INDEX, *shards]
    if single.is_file():
        try:
            with safe_open(str(single), framework="pt") as handle:
                if not list(handle.keys()):
                    problems.append(f"{SAFETENSORS_FILE}: holds no tensors")
        except Exception as exc:  # safetensors raises its own error types for bad headers
            problems.append(f"{SAFETENSORS_FILE}: not a readable safetensors file ({_brief(exc)})")
        return [SAFETENSORS_FILE]
    legacy = sorted(p.name for p in folder.glob("pytorch_model*.bin"))
    hint = f" (found only {', '.join(legacy)}; save with safe_serialization=True)" if legacy else ""
    problems.append(f"{SAFETENSORS_FILE} or {SAFETENSORS_INDEX}: no weights{hint}")
    return legacy


def _brief(exc: BaseException) -> str:
    """One line of an exception's message, short enough for a list of problems."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _has_chat_template_file(folder: Path) -> bool:
    """Whether the folder ships a chat template in any of the places transformers reads."""
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    config = folder / "tokenizer_config.json"
    try:
        return bool(config.is_file() and json.loads(config.read_text()).get("chat_template"))
    except ValueError:
        return False


def _eos_ids(value: Any) -> set[int]:
    if value is None:
        return set()
    if isinstance(value, int):
        return {value}
    return {int(v) for v in value}


def _check_tokenizer(
    folder: Path, problems: list[str], warnings: list[str], checks: list[str]
) -> Any:
    """Load the tokenizer and render the chat template; return the tokenizer or None."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except Exception as exc:  # any loader failure means the folder's tokenizer is unusable
        present = sorted(p.name for p in folder.glob("tokenizer*")) or ["none"]
        problems.append(
            "tokenizer.json / tokenizer_config.json: tokenizer does not load "
            f"(tokenizer files present: {', '.join(present)}; {type(exc).__name__}: {_brief(exc)})"
        )
        if not _has_chat_template_file(folder):
            problems.append(_NO_TEMPLATE)
        return None
    checks.append("tokenizer loads")
    if tokenizer.eos_token_id is None:
        problems.append("tokenizer_config.json: tokenizer has no eos_token")
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        problems.append(_NO_TEMPLATE)
        return tokenizer
    try:
        with_prompt = tokenizer.apply_chat_template(
            SAMPLE_CONVERSATION, tokenize=False, add_generation_prompt=True
        )
        without_prompt = tokenizer.apply_chat_template(
            SAMPLE_CONVERSATION, tokenize=False, add_generation_prompt=False
        )
    except Exception as exc:  # jinja errors surface as several exception types
        problems.append(f"chat_template.jinja: chat template does not render ({_brief(exc)})")
        return tokenizer
    if not isinstance(with_prompt, str) or SAMPLE_CONVERSATION[-1]["content"] not in with_prompt:
        problems.append("chat_template.jinja: rendered chat does not contain the user's message")
    elif with_prompt == without_prompt:
        warnings.append("chat template ignores add_generation_prompt")
    else:
        checks.append("chat template renders with add_generation_prompt")
    return tokenizer


def _check_generation_config(
    folder: Path, tokenizer: Any, problems: list[str], checks: list[str]
) -> None:
    from transformers import GenerationConfig

    if not (folder / "generation_config.json").is_file():
        problems.append("generation_config.json: missing (servers read stop tokens from it)")
        return
    try:
        gen = GenerationConfig.from_pretrained(folder)
    except Exception as exc:  # invalid generation configs raise ValueError or OSError
        problems.append(f"generation_config.json: does not load ({_brief(exc)})")
        return
    gen_eos = _eos_ids(gen.eos_token_id)
    if not gen_eos:
        problems.append("generation_config.json: has no eos_token_id, so generation never stops")
        return
    if tokenizer is None or tokenizer.eos_token_id is None:
        return
    if tokenizer.eos_token_id not in gen_eos:
        problems.append(
            f"generation_config.json: eos_token_id {sorted(gen_eos)} does not include the "
            f"tokenizer's eos {tokenizer.eos_token!r} (id {tokenizer.eos_token_id})"
        )
        return
    checks.append("generation_config eos matches tokenizer eos")


def _load_and_generate(folder: Path, tokenizer: Any, problems: list[str]) -> str | None:
    import torch
    from transformers import AutoModelForCausalLM

    try:
        # With output_loading_info the call returns (model, info); the stubs do not say so.
        loaded: Any = AutoModelForCausalLM.from_pretrained(
            folder, dtype="auto", output_loading_info=True
        )
        model, info = loaded
    except Exception as exc:  # any load failure is reported with its cause
        problems.append(f"model does not load with AutoModelForCausalLM ({_brief(exc)})")
        return None
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        keys = sorted(str(k) for k in info.get(kind) or [])
        if keys:
            problems.append(
                f"weights: {len(keys)} {kind.replace('_', ' ')} when loading, e.g. "
                f"{', '.join(keys[:3])}"
            )
    if problems:
        return None
    model.eval()
    inputs = tokenizer.apply_chat_template(
        SAMPLE_CONVERSATION, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    try:
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=1, do_sample=False)
    except Exception as exc:  # a forward-pass failure (shape, dtype) is a broken checkpoint
        problems.append(f"model loads but does not generate ({type(exc).__name__}: {_brief(exc)})")
        return None
    new = out[0][inputs["input_ids"].shape[1] :]
    if len(new) != 1:
        problems.append(f"model generated {len(new)} tokens instead of 1")
        return None
    return str(tokenizer.decode(new))


def verify_model_folder(path: str | Path, *, load_weights: bool = True) -> VerifyReport:
    """Check that ``path`` holds a complete, loadable causal-LM folder.

    Checks config.json, the safetensors weights (every shard of an index present and
    every tensor mapped), the tokenizer, the chat template (rendered with
    ``add_generation_prompt``), generation_config.json and its eos token, and, with
    ``load_weights``, that the model loads without missing keys and generates a token.

    Args:
        path: The model folder.
        load_weights: Also load the model on CPU and generate one token (skip for big
            models on small machines).

    Returns:
        The report of passed checks.

    Raises:
        ModelFolderError: (a PackagingError) listing every problem found, by file name.
    """
    from transformers import AutoConfig

    folder = Path(path)
    if not folder.is_dir():
        raise ModelFolderError(folder, [f"{folder}: not a folder"])
    problems: list[str] = []
    warnings: list[str] = []
    checks: list[str] = []

    config = None
    if not (folder / "config.json").is_file():
        problems.append("config.json: missing")
    else:
        try:
            config = AutoConfig.from_pretrained(folder)
            checks.append("config.json loads")
        except Exception as exc:  # unknown model_type, bad JSON, ...: all make it unusable
            problems.append(f"config.json: does not load ({_brief(exc)})")

    known = len(problems)
    weight_files = _check_weights(folder, problems)
    if len(problems) == known:
        checks.append("weights present")

    tokenizer = _check_tokenizer(folder, problems, warnings, checks)
    _check_generation_config(folder, tokenizer, problems, checks)
    if config is not None and tokenizer is not None and tokenizer.eos_token_id is not None:
        config_eos = _eos_ids(getattr(config, "eos_token_id", None))
        if config_eos and tokenizer.eos_token_id not in config_eos:
            warnings.append(
                f"config.json eos_token_id {sorted(config_eos)} differs from the tokenizer's "
                f"eos id {tokenizer.eos_token_id}"
            )

    generated = None
    if load_weights and not problems:
        generated = _load_and_generate(folder, tokenizer, problems)
        if generated is not None:
            checks.append("model loads and generates")
    if problems:
        raise ModelFolderError(folder, problems)
    for warning in warnings:
        logger.warning("%s: %s", folder, warning)
    return VerifyReport(
        path=str(folder),
        checks=checks,
        warnings=warnings,
        weight_files=weight_files,
        loaded=generated is not None,
        generated=generated,
    )
