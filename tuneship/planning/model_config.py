"""Parsing a model's config.json: the one reader, and the facts memory planning reads from it.

Every part of tuneship that needs a model's ``config.json`` reads it with
:func:`read_model_config` (a folder or a file) or :func:`read_hub_config` (a Hub id).
The ``parse_*`` helpers turn the parsed dict into typed facts; spellings differ by family
(nested ``text_config`` for multimodal models, MoE and MLA keys, quantisation_config).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneship.errors import PlanningError, TransientError

DTYPE_BYTES: dict[str, float] = {
    "float32": 4,
    "float": 4,
    "fp32": 4,
    "bfloat16": 2,
    "float16": 2,
    "half": 2,
    "bf16": 2,
    "fp16": 2,
    "float8_e4m3fn": 1,
    "float8_e5m2": 1,
    "fp8": 1,
}
"""Bytes per element of the dtypes configs name."""

TIED_BY_DEFAULT = {"gemma", "gemma2", "gemma3", "gemma3_text"}
"""model_types whose transformers config defaults tie_word_embeddings to True."""

GEMMA3_TEXT_DEFAULTS: dict[str, Any] = {
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "head_dim": 256,
    "vocab_size": 262208,
    "max_position_embeddings": 131072,
    "sliding_window_pattern": 6,
    "tie_word_embeddings": True,
}
"""transformers Gemma3TextConfig defaults; gemma-3 configs omit these keys
(shared/model-configs README section 5: the official total_size matches only with them)."""


@dataclass(frozen=True)
class MoeFacts:
    """Mixture-of-experts facts (spellings differ by family)."""

    num_experts: int
    experts_per_token: int
    moe_intermediate_size: int
    num_shared_experts: int = 0
    shared_expert_intermediate_size: int = 0
    moe_layers: int = 0


@dataclass(frozen=True)
class MlaFacts:
    """Multi-head latent attention facts (DeepSeek V2/V3, Kimi)."""

    kv_lora_rank: int
    qk_rope_head_dim: int
    qk_nope_head_dim: int
    v_head_dim: int
    q_lora_rank: int | None

    @property
    def cache_width(self) -> int:
        """Values cached per token per layer: ``kv_lora_rank + qk_rope_head_dim``."""
        return self.kv_lora_rank + self.qk_rope_head_dim


@dataclass(frozen=True)
class QuantFacts:
    """A pre-quantised checkpoint's quantisation_config."""

    method: str
    bits: float
    group_size: int | None = None
    weight_block_size: tuple[int, int] | None = None
    modules_not_converted: tuple[str, ...] = ()


def config_value(cfg: dict[str, Any], *names: str, default: Any = None) -> Any:
    """First present, non-None value of several spellings."""
    for name in names:
        value = cfg.get(name)
        if value is not None:
            return value
    return default


def text_config(config: dict[str, Any]) -> dict[str, Any]:
    """The decoder's config: ``text_config`` (or ``language_config``) over the top level."""
    nested = config.get("text_config") or config.get("language_config") or config.get("llm_config")
    if not isinstance(nested, dict):
        return dict(config)
    merged = {k: v for k, v in config.items() if k not in ("text_config", "vision_config")}
    merged.update({k: v for k, v in nested.items() if v is not None})
    if nested.get("model_type") == "gemma3_text" or config.get("model_type") == "gemma3":
        for key, value in GEMMA3_TEXT_DEFAULTS.items():
            if nested.get(key) is None:
                merged[key] = value
        merged["model_type"] = "gemma3_text"
    elif "model_type" in nested:
        merged["model_type"] = nested["model_type"]
    return merged


def parse_layer_types(cfg: dict[str, Any], num_layers: int) -> tuple[tuple[str, ...], int | None]:
    """Per-layer attention kind and the sliding window.

    Sources: transformers configs. An explicit ``layer_types`` list wins (gpt-oss, newer
    configs). Gemma 2 slides on even layers (Gemma2Config.layer_types). Gemma 3 is
    ``sliding_window_pattern - 1`` local layers then one global (default pattern 6). Qwen2
    style slides only when ``use_sliding_window`` is true, from ``max_window_layers`` on.
    A bare ``sliding_window`` with none of these (Mistral v0.1, Phi-3) is treated as full
    attention: it only over-estimates the KV cache, never under-estimates it.
    """
    window = cfg.get("sliding_window")
    full = tuple("full_attention" for _ in range(num_layers))
    if not window:
        return full, None
    explicit = cfg.get("layer_types")
    if isinstance(explicit, list) and len(explicit) == num_layers:
        kinds = tuple(
            "sliding_attention" if "sliding" in str(t) else "full_attention" for t in explicit
        )
        return kinds, (int(window) if "sliding_attention" in kinds else None)
    model_type = cfg.get("model_type", "")
    if model_type == "gemma2":
        kinds = tuple(
            "sliding_attention" if i % 2 == 0 else "full_attention" for i in range(num_layers)
        )
        return kinds, int(window)
    if model_type in ("gemma3", "gemma3_text"):
        pattern = int(cfg.get("sliding_window_pattern") or 6)
        kinds = tuple(
            "full_attention" if (i + 1) % pattern == 0 else "sliding_attention"
            for i in range(num_layers)
        )
        return kinds, int(window)
    if cfg.get("use_sliding_window") is True:
        start = int(cfg.get("max_window_layers") or 0)
        kinds = tuple(
            "sliding_attention" if i >= start else "full_attention" for i in range(num_layers)
        )
        return kinds, (int(window) if "sliding_attention" in kinds else None)
    return full, None


def parse_moe(cfg: dict[str, Any], num_layers: int) -> MoeFacts | None:
    """MoE facts of a text config, or None for a dense model."""
    experts = config_value(
        cfg, "num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts"
    )
    if not experts:
        return None
    per_token = int(
        config_value(cfg, "num_experts_per_tok", "experts_per_token", "moe_topk", default=1)
    )
    moe_width = int(config_value(cfg, "moe_intermediate_size", "intermediate_size"))
    shared = int(config_value(cfg, "n_shared_experts", "num_shared_experts", default=0))
    shared_width = int(cfg.get("shared_expert_intermediate_size") or 0)
    return MoeFacts(
        num_experts=int(experts),
        experts_per_token=per_token,
        moe_intermediate_size=moe_width,
        num_shared_experts=shared,
        shared_expert_intermediate_size=shared_width,
        moe_layers=sum(_is_moe_layer(cfg, i) for i in range(num_layers)),
    )


def _is_moe_layer(cfg: dict[str, Any], index: int) -> bool:
    """Whether decoder layer ``index`` has experts, across the families' spellings."""
    if "first_k_dense_replace" in cfg or "moe_layer_freq" in cfg:  # DeepSeek
        first = int(cfg.get("first_k_dense_replace") or 0)
        freq = int(cfg.get("moe_layer_freq") or 1)
        return index >= first and index % freq == 0
    if "decoder_sparse_step" in cfg or "mlp_only_layers" in cfg:  # Qwen2/3-MoE
        step = int(cfg.get("decoder_sparse_step") or 1)
        return index not in (cfg.get("mlp_only_layers") or []) and (index + 1) % step == 0
    return True  # Mixtral, gpt-oss: every layer


def parse_mla(cfg: dict[str, Any]) -> MlaFacts | None:
    """MLA facts of a text config (DeepSeek V2/V3, Kimi), or None."""
    if cfg.get("kv_lora_rank") is None:
        return None
    return MlaFacts(
        kv_lora_rank=int(cfg["kv_lora_rank"]),
        qk_rope_head_dim=int(cfg.get("qk_rope_head_dim") or 64),
        qk_nope_head_dim=int(cfg.get("qk_nope_head_dim") or 128),
        v_head_dim=int(cfg.get("v_head_dim") or 128),
        q_lora_rank=(int(cfg["q_lora_rank"]) if cfg.get("q_lora_rank") else None),
    )


def parse_quantization(config: dict[str, Any], cfg: dict[str, Any]) -> QuantFacts | None:
    """A pre-quantised checkpoint's facts (top-level or text config), or None."""
    quant = config.get("quantization_config") or cfg.get("quantization_config")
    if not isinstance(quant, dict):
        return None
    method = str(quant.get("quant_method") or quant.get("quant_type") or "unknown").lower()
    skipped = tuple(str(m) for m in quant.get("modules_to_not_convert") or ())
    block = quant.get("weight_block_size")
    block_size = (int(block[0]), int(block[1])) if isinstance(block, list | tuple) else None
    if method == "fp8" or method == "fbgemm_fp8":
        return QuantFacts(method, 8, weight_block_size=block_size, modules_not_converted=skipped)
    if method == "mxfp4":
        # MXFP4: 4-bit values plus one 8-bit scale per 32 (OCP MX spec) = 4.25 bits.
        return QuantFacts(method, 4.25, group_size=32, modules_not_converted=skipped)
    if method == "bitsandbytes":
        bnb_bits = 4 if quant.get("load_in_4bit") else 8
        return QuantFacts(method, bnb_bits, group_size=64, modules_not_converted=skipped)
    bits: Any = quant.get("bits") or quant.get("w_bit") or quant.get("weight_bits")
    group: Any = quant.get("group_size") or quant.get("q_group_size")
    if method == "compressed-tensors":
        groups = quant.get("config_groups") or {}
        for group_cfg in groups.values():
            weights = (group_cfg or {}).get("weights") or {}
            bits = bits or weights.get("num_bits")
            group = group or weights.get("group_size")
    return QuantFacts(
        method,
        float(bits or 4),
        group_size=int(group) if group and int(group) > 0 else None,
        modules_not_converted=skipped,
    )


def read_model_config(source: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a model's ``config.json`` from a model folder or the file itself.

    Args:
        source: A model folder (holding ``config.json``) or a ``config.json`` path.

    Returns:
        The parsed config.

    Raises:
        PlanningError: The folder or file is missing, or the file is not a JSON object.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        path = path / "config.json"
        if not path.is_file():
            raise PlanningError(f"{path.parent} has no config.json; is it a model folder?")
    elif not path.exists():
        raise PlanningError(f"{path}: no such model folder or config.json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise PlanningError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    except OSError as exc:
        raise PlanningError(f"{path}: cannot read ({exc.strerror})") from None
    if not isinstance(data, dict):
        raise PlanningError(f"{path}: a config.json must hold a JSON object")
    return data


def read_hub_config(repo_id: str, revision: str | None, token: str | None) -> dict[str, Any]:
    """Download and read a Hub model's ``config.json`` (honours HF_ENDPOINT and HF_TOKEN).

    Raises:
        PlanningError: The repo, revision or file does not exist or is gated, or it is
            not cached while offline.
        TransientError: The Hub could not be reached.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    try:
        config_path = hf_hub_download(repo_id, "config.json", revision=revision, token=token)
    except GatedRepoError:
        raise PlanningError(
            f"{repo_id} is gated on {endpoint}: accept its licence on the model page and set "
            "HF_TOKEN, or pass a local folder or config.json"
        ) from None
    except RepositoryNotFoundError:
        raise PlanningError(
            f"model {repo_id!r} not found on {endpoint} (or it is private: set HF_TOKEN); "
            "check the id, or pass a local folder or config.json"
        ) from None
    except RevisionNotFoundError:
        raise PlanningError(f"revision {revision!r} of {repo_id} not found on {endpoint}") from None
    except LocalEntryNotFoundError:  # a subclass of EntryNotFoundError: test it first
        if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
            raise PlanningError(
                f"config.json of {repo_id} is not cached and HF_HUB_OFFLINE is set; "
                "pass a local folder or config.json"
            ) from None
        raise TransientError(
            f"{endpoint} is unreachable and config.json of {repo_id} is not cached"
        ) from None
    except EntryNotFoundError:
        raise PlanningError(f"{repo_id} on {endpoint} has no config.json") from None
    return read_model_config(Path(config_path))
