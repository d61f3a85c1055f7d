"""Model facts for memory planning, read from a config.json and the checkpoint's weight sizes.

A model can be a local folder, a bare ``config.json`` file, or a Hugging Face Hub id. The
facts cover what serving and training memory depend on: layers, attention and KV heads,
head_dim, vocab, tied embeddings, dtype, context length, sliding-window layers, MoE, MLA
(DeepSeek), nested ``text_config`` (multimodal models) and pre-quantised checkpoints.

Weight bytes come, in order of preference, from the safetensors index's ``total_size``,
from the safetensors file headers, or from a parameter count computed from the config.
"""

from __future__ import annotations

import json
import os
import re
import struct
from dataclasses import dataclass, field
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

_TIED_BY_DEFAULT = {"gemma", "gemma2", "gemma3", "gemma3_text"}
"""model_types whose transformers config defaults tie_word_embeddings to True."""

_QKV_BIAS_TYPES = {"qwen2", "qwen2_moe", "qwen2_vl", "qwen2_5_vl"}
"""Qwen2 models always have q/k/v biases (transformers Qwen2Attention), not o_proj."""

_QK_NORM_TYPES = {"qwen3", "qwen3_moe", "gemma3", "gemma3_text", "olmo2"}
"""Models with per-head q_norm/k_norm weights (head_dim parameters each)."""

_FOUR_NORM_TYPES = {"gemma2", "gemma3", "gemma3_text"}
"""Gemma 2/3 have four RMSNorms per layer (pre/post attention and feed-forward)."""

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

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


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


@dataclass(frozen=True)
class ModelFacts:
    """What memory planning needs to know about a model.

    Attributes:
        source: The id, folder or file the facts were read from.
        model_type: ``model_type`` of the (text) config.
        num_layers: Decoder layers.
        hidden_size: Hidden width.
        num_attention_heads: Query heads.
        num_kv_heads: Key/value heads (GQA/MQA); nominal for MLA models.
        head_dim: Per-head width (``head_dim`` when present, else hidden / heads).
        intermediate_size: Dense MLP width.
        vocab_size: Vocabulary size.
        tie_word_embeddings: Whether lm_head shares the embedding matrix.
        dtype: Declared dtype (``torch_dtype`` or ``dtype``), None when absent.
        max_position_embeddings: The model's own maximum context, when declared.
        sliding_window: Window size of sliding-window layers, when any layer slides.
        layer_types: ``"full_attention"`` or ``"sliding_attention"`` per layer.
        moe: MoE facts, or None for dense models.
        mla: MLA facts, or None.
        quantization: Pre-quantisation facts, or None.
        param_count: Parameters computed from the config (including any vision tower).
        weight_bytes: Bytes of the weights as stored.
        weight_bytes_source: Where ``weight_bytes`` came from.
        multimodal: Whether the config has a vision tower.
        notes: Assumptions made while reading (e.g. dtype absent).
    """

    source: str
    model_type: str | None
    architectures: tuple[str, ...]
    num_layers: int
    hidden_size: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool
    dtype: str | None
    max_position_embeddings: int | None
    sliding_window: int | None
    layer_types: tuple[str, ...]
    moe: MoeFacts | None
    mla: MlaFacts | None
    quantization: QuantFacts | None
    param_count: int
    weight_bytes: int
    weight_bytes_source: str
    multimodal: bool = False
    attention_bias: bool = False
    mtp_layers: int = 0
    notes: tuple[str, ...] = ()
    config: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def sliding_layers(self) -> int:
        """Number of sliding-window layers."""
        return sum(t == "sliding_attention" for t in self.layer_types)

    @property
    def full_layers(self) -> int:
        """Number of full-attention layers."""
        return self.num_layers - self.sliding_layers

    @property
    def dtype_bytes(self) -> float:
        """Bytes per element of the declared dtype (bf16 when absent)."""
        return DTYPE_BYTES.get((self.dtype or "bfloat16").lower(), 2)

    @property
    def weight_gib(self) -> float:
        """Weights in GiB."""
        return self.weight_bytes / 1024**3


def _get(cfg: dict[str, Any], *names: str, default: Any = None) -> Any:
    """First present, non-None value of several spellings."""
    for name in names:
        value = cfg.get(name)
        if value is not None:
            return value
    return default


def _text_config(config: dict[str, Any]) -> dict[str, Any]:
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


def _layer_types(cfg: dict[str, Any], num_layers: int) -> tuple[tuple[str, ...], int | None]:
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


def _moe_facts(cfg: dict[str, Any], num_layers: int) -> MoeFacts | None:
    experts = _get(cfg, "num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts")
    if not experts:
        return None
    per_token = int(_get(cfg, "num_experts_per_tok", "experts_per_token", "moe_topk", default=1))
    moe_width = int(_get(cfg, "moe_intermediate_size", "intermediate_size"))
    shared = int(_get(cfg, "n_shared_experts", "num_shared_experts", default=0))
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


def _mla_facts(cfg: dict[str, Any]) -> MlaFacts | None:
    if cfg.get("kv_lora_rank") is None:
        return None
    return MlaFacts(
        kv_lora_rank=int(cfg["kv_lora_rank"]),
        qk_rope_head_dim=int(cfg.get("qk_rope_head_dim") or 64),
        qk_nope_head_dim=int(cfg.get("qk_nope_head_dim") or 128),
        v_head_dim=int(cfg.get("v_head_dim") or 128),
        q_lora_rank=(int(cfg["q_lora_rank"]) if cfg.get("q_lora_rank") else None),
    )


def _quant_facts(config: dict[str, Any], cfg: dict[str, Any]) -> QuantFacts | None:
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


def _vision_params(config: dict[str, Any], text_hidden: int) -> int:
    """Parameters of a SigLIP/ViT vision tower plus Gemma 3's projector, from vision_config.

    Counts patch embedding, position embedding, per-layer norms, attention (with biases)
    and MLP (with biases), the post-layernorm, and a linear projector to the text width.
    """
    vision = config.get("vision_config")
    if not isinstance(vision, dict) or not vision.get("hidden_size"):
        return 0
    width = int(vision["hidden_size"])
    mlp = int(vision.get("intermediate_size") or 4 * width)
    layers = int(vision.get("num_hidden_layers") or 0)
    patch = int(vision.get("patch_size") or 14)
    image = int(vision.get("image_size") or 224)
    channels = int(vision.get("num_channels") or 3)
    positions = (image // patch) ** 2
    per_layer = 2 * 2 * width + 4 * (width * width + width) + 2 * width * mlp + mlp + width
    tower = channels * patch * patch * width + width + positions * width + layers * per_layer
    tower += 2 * width  # post-layernorm
    projector = width * text_hidden + width  # Gemma 3: projection + soft-embedding norm
    return tower + projector


@dataclass
class _ParamBreakdown:
    """Parameters by role, for weight bytes and for LoRA/QLoRA accounting."""

    embedding: int = 0  # embed_tokens + untied lm_head (+ MTP copies)
    linear: int = 0  # decoder Linear weights (attention, MLPs, experts, routers)
    expert_linear: int = 0  # of which in routed experts
    other: int = 0  # norms, biases, sinks, vision tower
    lora_params_per_rank: int = 0  # sum over decoder Linears of (d_in + d_out)

    @property
    def total(self) -> int:
        return self.embedding + self.linear + self.other

    def add_linear(self, d_in: int, d_out: int, count: int = 1, expert: bool = False) -> None:
        self.linear += d_in * d_out * count
        self.lora_params_per_rank += (d_in + d_out) * count
        if expert:
            self.expert_linear += d_in * d_out * count

    def scaled(self, factor: int) -> _ParamBreakdown:
        return _ParamBreakdown(
            self.embedding * factor,
            self.linear * factor,
            self.expert_linear * factor,
            self.other * factor,
            self.lora_params_per_rank * factor,
        )

    def __add__(self, other: _ParamBreakdown) -> _ParamBreakdown:
        return _ParamBreakdown(
            self.embedding + other.embedding,
            self.linear + other.linear,
            self.expert_linear + other.expert_linear,
            self.other + other.other,
            self.lora_params_per_rank + other.lora_params_per_rank,
        )


def _attention_layer(cfg: dict[str, Any], f: dict[str, Any]) -> _ParamBreakdown:
    """One decoder layer's attention and norms."""
    p = _ParamBreakdown()
    h, heads, kv, hd = f["hidden_size"], f["num_attention_heads"], f["num_kv_heads"], f["head_dim"]
    model_type = cfg.get("model_type", "")
    mla: MlaFacts | None = f["mla"]
    if mla is not None:
        qk = mla.qk_nope_head_dim + mla.qk_rope_head_dim
        if mla.q_lora_rank:
            p.add_linear(h, mla.q_lora_rank)
            p.add_linear(mla.q_lora_rank, heads * qk)
            p.other += mla.q_lora_rank  # q_a_layernorm
        else:
            p.add_linear(h, heads * qk)
        p.add_linear(h, mla.kv_lora_rank + mla.qk_rope_head_dim)
        p.add_linear(mla.kv_lora_rank, heads * (mla.qk_nope_head_dim + mla.v_head_dim))
        p.add_linear(heads * mla.v_head_dim, h)
        p.other += mla.kv_lora_rank  # kv_a_layernorm
    else:
        p.add_linear(h, heads * hd)
        p.add_linear(h, kv * hd, 2)
        p.add_linear(heads * hd, h)
        if f["attention_bias"]:
            p.other += heads * hd + 2 * kv * hd + h
        elif model_type in _QKV_BIAS_TYPES:
            p.other += heads * hd + 2 * kv * hd
        if model_type in _QK_NORM_TYPES:
            p.other += 2 * hd
        if model_type == "gpt_oss":
            p.other += heads  # attention sinks
    p.other += (4 if model_type in _FOUR_NORM_TYPES else 2) * h
    return p


def _dense_mlp(cfg: dict[str, Any], f: dict[str, Any]) -> _ParamBreakdown:
    """One gated (SwiGLU/GeGLU) MLP: gate and up projections, then down."""
    p = _ParamBreakdown()
    h, inter = f["hidden_size"], f["intermediate_size"]
    p.add_linear(h, inter, 2)
    p.add_linear(inter, h)
    if cfg.get("mlp_bias"):
        p.other += 2 * inter + h
    return p


def _moe_mlp(cfg: dict[str, Any], f: dict[str, Any]) -> _ParamBreakdown:
    """One MoE block: routed experts, router, shared experts."""
    p = _ParamBreakdown()
    moe: MoeFacts = f["moe"]
    h, e, w = f["hidden_size"], moe.num_experts, moe.moe_intermediate_size
    p.add_linear(h, w, 2 * e, expert=True)
    p.add_linear(w, h, e, expert=True)
    p.add_linear(h, e)  # router
    if cfg.get("model_type") == "gpt_oss":
        p.other += e * (2 * w + h) + e  # expert and router biases
    if cfg.get("topk_method") == "noaux_tc":
        p.other += e  # DeepSeek-V3 e_score_correction_bias
    if moe.num_shared_experts:
        shared = moe.num_shared_experts * w
        p.add_linear(h, shared, 2)
        p.add_linear(shared, h)
    if moe.shared_expert_intermediate_size:
        s = moe.shared_expert_intermediate_size
        p.add_linear(h, s, 2)
        p.add_linear(s, h)
        p.add_linear(h, 1)  # shared_expert_gate
    return p


def _count_parameters(cfg: dict[str, Any], f: dict[str, Any]) -> _ParamBreakdown:
    """Count parameters from the config, family by family.

    The formulas follow the transformers modelling code of each family; the tests check
    them against the official sizes of 20 real models.
    """
    h, layers, vocab = f["hidden_size"], f["num_layers"], f["vocab_size"]
    moe: MoeFacts | None = f["moe"]
    moe_layers = moe.moe_layers if moe else 0
    attention = _attention_layer(cfg, f)
    total = attention.scaled(layers) + _dense_mlp(cfg, f).scaled(layers - moe_layers)
    if moe is not None and moe_layers:
        total = total + _moe_mlp(cfg, f).scaled(moe_layers)
    total.other += h  # final norm
    total.embedding += vocab * h * (1 if f["tie_word_embeddings"] else 2)
    mtp = f["mtp_layers"]
    if mtp:
        # DeepSeek multi-token prediction: a full MoE decoder layer plus enorm, hnorm,
        # eh_proj (2h -> h), a final norm, and its own embedding and head copies. It
        # ships in the checkpoint but is not in num_hidden_layers.
        block = attention + (_moe_mlp(cfg, f) if moe is not None else _dense_mlp(cfg, f))
        block.linear += 2 * h * h
        block.other += 3 * h
        block.embedding += 2 * vocab * h
        total = total + block.scaled(mtp)
    total.other += _vision_params(cfg.get("__full_config__", {}), h)
    return total


def _weight_bytes_from_config(
    breakdown: _ParamBreakdown, dtype_bytes: float, quant: QuantFacts | None
) -> int:
    """Bytes of the weights as a checkpoint would store them.

    Unquantised: every parameter at the declared dtype. fp8 (DeepSeek style): decoder
    Linear weights at 1 byte plus one fp32 scale per weight block; everything else 16-bit.
    MXFP4 (gpt-oss): routed-expert weights at 4.25 bits, the rest 16-bit. AWQ/GPTQ and
    similar: Linear weights at ``bits`` plus a 16-bit scale and a packed zero point per
    group; embeddings and lm_head stay 16-bit.
    """
    if quant is None:
        return int(breakdown.total * dtype_bytes)
    half = 2.0  # the non-quantised parts of quantised checkpoints are 16-bit
    if quant.method in ("fp8", "fbgemm_fp8"):
        per_weight = 1.0
        if quant.weight_block_size:
            per_weight += 4.0 / (quant.weight_block_size[0] * quant.weight_block_size[1])
        rest = breakdown.total - breakdown.linear
        return int(breakdown.linear * per_weight + rest * half)
    if quant.method == "mxfp4":
        quantised = breakdown.expert_linear
        return int(quantised * quant.bits / 8 + (breakdown.total - quantised) * half)
    group = quant.group_size or 128
    per_weight = quant.bits / 8 + 2.0 / group + quant.bits / 8 / group
    return int(breakdown.linear * per_weight + (breakdown.total - breakdown.linear) * half)


def _read_safetensors_header(path: Path) -> dict[str, Any]:
    """Read a safetensors file's JSON header (8-byte little-endian length, then JSON)."""
    with path.open("rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise PlanningError(f"{path}: not a safetensors file (shorter than 8 bytes)")
        (length,) = struct.unpack("<Q", raw)
        if length > 100 * 1024**2:
            raise PlanningError(f"{path}: safetensors header of {length} bytes is not plausible")
        header = json.loads(fh.read(length))
    if not isinstance(header, dict):
        raise PlanningError(f"{path}: safetensors header is not a JSON object")
    return header


def safetensors_payload_bytes(header: dict[str, Any]) -> int:
    """Sum of the tensor byte ranges in a safetensors header."""
    total = 0
    for name, info in header.items():
        if name == "__metadata__" or not isinstance(info, dict):
            continue
        start, end = info["data_offsets"]
        total += int(end) - int(start)
    return total


def _weight_files(folder: Path) -> list[Path]:
    """Safetensors files holding the model (``model*`` when present, e.g. not consolidated)."""
    files = sorted(folder.glob("*.safetensors"))
    preferred = [f for f in files if f.name.startswith("model")]
    return preferred or files


def _weight_bytes_from_folder(folder: Path) -> tuple[int, str] | None:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            data = json.loads(index.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise PlanningError(f"{index}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
        total = (data.get("metadata") or {}).get("total_size")
        if total:
            return int(total), "safetensors index total_size"
        shards = sorted({folder / s for s in (data.get("weight_map") or {}).values()})
        if shards and all(s.is_file() for s in shards):
            size = sum(safetensors_payload_bytes(_read_safetensors_header(s)) for s in shards)
            return size, "safetensors headers"
    files = _weight_files(folder)
    if files:
        size = sum(safetensors_payload_bytes(_read_safetensors_header(f)) for f in files)
        return size, "safetensors headers"
    return None


def facts_from_config(
    config: dict[str, Any],
    source: str,
    weight_bytes: tuple[int, str] | None = None,
) -> ModelFacts:
    """Build :class:`ModelFacts` from a parsed config.json.

    Args:
        config: The parsed ``config.json``.
        source: What the config was read from, for messages.
        weight_bytes: ``(bytes, source)`` measured from the checkpoint, if known.

    Returns:
        The facts.

    Raises:
        PlanningError: A required field is missing; the message names it and the source.
    """
    cfg = _text_config(config)
    cfg["__full_config__"] = config
    notes: list[str] = []

    def need(*names: str) -> int:
        value = _get(cfg, *names)
        if value is None:
            raise PlanningError(
                f"{source}: config has no {' / '.join(names)}; is this a decoder LLM config?"
            )
        return int(value)

    layers = need("num_hidden_layers", "n_layer", "num_layers")
    hidden = need("hidden_size", "n_embd", "d_model")
    heads = need("num_attention_heads", "n_head")
    kv_heads = int(_get(cfg, "num_key_value_heads", "num_kv_heads", default=heads))
    head_dim = int(cfg.get("head_dim") or hidden // heads)
    vocab = need("vocab_size")
    mla = _mla_facts(cfg)
    if mla is not None and not cfg.get("head_dim"):
        head_dim = mla.qk_nope_head_dim + mla.qk_rope_head_dim  # query/key head width
    model_type = cfg.get("model_type")
    tie_default = model_type in _TIED_BY_DEFAULT
    tie = bool(_get(cfg, "tie_word_embeddings", default=tie_default))
    dtype = _get(cfg, "torch_dtype", "dtype")
    if dtype is None:
        notes.append("config declares no dtype; assumed bfloat16")
    moe = _moe_facts(cfg, layers)
    quant = _quant_facts(config, cfg)
    layer_types, window = _layer_types(cfg, layers)
    inter = int(_get(cfg, "intermediate_size", "n_inner", "ffn_dim", default=4 * hidden))
    max_pos = _get(cfg, "max_position_embeddings", "max_sequence_length", "n_positions")
    facts_dict: dict[str, Any] = {
        "hidden_size": hidden,
        "num_attention_heads": heads,
        "num_kv_heads": kv_heads,
        "head_dim": head_dim,
        "num_layers": layers,
        "vocab_size": vocab,
        "intermediate_size": inter,
        "tie_word_embeddings": tie,
        "mla": mla,
        "moe": moe,
        "attention_bias": bool(cfg.get("attention_bias")),
        "mtp_layers": int(cfg.get("num_nextn_predict_layers") or 0),
    }
    breakdown = _count_parameters(cfg, facts_dict)
    cfg.pop("__full_config__", None)
    dtype_bytes = DTYPE_BYTES.get(str(dtype or "bfloat16").lower(), 2)
    if weight_bytes is None:
        size = _weight_bytes_from_config(breakdown, dtype_bytes, quant)
        weight_bytes = (size, "computed from config")
    return ModelFacts(
        source=source,
        model_type=model_type,
        architectures=tuple(config.get("architectures") or ()),
        num_layers=layers,
        hidden_size=hidden,
        num_attention_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate_size=inter,
        vocab_size=vocab,
        tie_word_embeddings=tie,
        dtype=str(dtype) if dtype is not None else None,
        max_position_embeddings=int(max_pos) if max_pos else None,
        sliding_window=window,
        layer_types=layer_types,
        moe=moe,
        mla=mla,
        quantization=quant,
        param_count=breakdown.total,
        weight_bytes=int(weight_bytes[0]),
        weight_bytes_source=weight_bytes[1],
        multimodal=isinstance(config.get("vision_config"), dict),
        attention_bias=facts_dict["attention_bias"],
        mtp_layers=facts_dict["mtp_layers"],
        notes=tuple(notes),
        config=config,
    )


def parameter_breakdown(facts: ModelFacts) -> dict[str, int]:
    """Parameters by role: embedding, linear, expert_linear, other and lora_per_rank.

    ``lora_per_rank`` is the LoRA parameter count at rank 1 over every decoder Linear
    (PEFT's ``all-linear``); multiply by the rank.
    """
    cfg = _text_config(facts.config) if facts.config else {}
    cfg["__full_config__"] = facts.config
    b = _count_parameters(
        cfg,
        {
            "hidden_size": facts.hidden_size,
            "num_attention_heads": facts.num_attention_heads,
            "num_kv_heads": facts.num_kv_heads,
            "head_dim": facts.head_dim,
            "num_layers": facts.num_layers,
            "vocab_size": facts.vocab_size,
            "intermediate_size": facts.intermediate_size,
            "tie_word_embeddings": facts.tie_word_embeddings,
            "mla": facts.mla,
            "moe": facts.moe,
            "attention_bias": facts.attention_bias,
            "mtp_layers": facts.mtp_layers,
        },
    )
    return {
        "embedding": b.embedding,
        "linear": b.linear,
        "expert_linear": b.expert_linear,
        "other": b.other,
        "lora_per_rank": b.lora_params_per_rank,
    }


def _read_config(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise PlanningError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    except OSError as exc:
        raise PlanningError(f"{path}: cannot read ({exc.strerror})") from None
    if not isinstance(data, dict):
        raise PlanningError(f"{path}: a config.json must hold a JSON object")
    return data


def _load_from_hub(repo_id: str, revision: str | None, token: str | None) -> ModelFacts:
    """Read config.json and weight sizes from the Hub (honours HF_ENDPOINT and HF_TOKEN)."""
    from huggingface_hub import get_safetensors_metadata, hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        NotASafetensorsRepoError,
        OfflineModeIsEnabled,
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
    except HfHubHTTPError as exc:
        raise TransientError(f"reading {repo_id} from {endpoint} failed: {exc}") from None
    config = _read_config(Path(config_path))

    weight: tuple[int, str] | None = None
    try:
        index_path = hf_hub_download(
            repo_id, "model.safetensors.index.json", revision=revision, token=token
        )
        total = (json.loads(Path(index_path).read_text("utf-8")).get("metadata") or {}).get(
            "total_size"
        )
        if total:
            weight = (int(total), "safetensors index total_size")
    except (EntryNotFoundError, OfflineModeIsEnabled, json.JSONDecodeError):
        weight = None  # no index (single-file or non-safetensors repo)
    except HfHubHTTPError as exc:
        raise TransientError(f"reading {repo_id}'s safetensors index failed: {exc}") from None
    if weight is None:
        try:
            meta = get_safetensors_metadata(repo_id, revision=revision, token=token)
            size = 0
            for file_meta in meta.files_metadata.values():
                for tensor in file_meta.tensors.values():
                    start, end = tensor.data_offsets
                    size += end - start
            if size:
                weight = (size, "safetensors headers")
        except (NotASafetensorsRepoError, EntryNotFoundError, OfflineModeIsEnabled):
            weight = None  # sizes come from the config instead
        except HfHubHTTPError as exc:
            raise TransientError(f"reading {repo_id}'s safetensors headers failed: {exc}") from None
    return facts_from_config(config, repo_id, weight)


def load_model_facts(
    source: str | os.PathLike[str], revision: str | None = None, token: str | None = None
) -> ModelFacts:
    """Read a model's facts from a local folder, a bare config.json, or a Hub id.

    Args:
        source: A model folder (with ``config.json``), a ``config.json`` path, or a Hub id.
        revision: Hub revision (ignored for local sources).
        token: Hub token; ``HF_TOKEN`` is used when None.

    Returns:
        The facts, with weight bytes from the checkpoint when it has safetensors.

    Raises:
        PlanningError: The source does not exist, is not a model, or cannot be read.
        TransientError: The Hub could not be reached.
    """
    text = os.fspath(source)
    path = Path(text).expanduser()
    if path.is_dir():
        config_file = path / "config.json"
        if not config_file.is_file():
            raise PlanningError(f"{path} has no config.json; is it a model folder?")
        config = _read_config(config_file)
        return facts_from_config(config, text, _weight_bytes_from_folder(path))
    if path.is_file():
        config = _read_config(path)
        folder = path.parent
        weights = _weight_bytes_from_folder(folder) if path.name == "config.json" else None
        return facts_from_config(config, text, weights)
    if text.endswith(".json") or not HUB_ID.match(text):
        raise PlanningError(f"{text}: no such file or folder, and not a Hub model id")
    return _load_from_hub(text, revision, token)


def ceil_div(a: int, b: int) -> int:
    """Integer ceiling division."""
    return -(-a // b)
