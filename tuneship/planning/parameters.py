"""Parameter counts computed from a model's config, by role (embedding, Linear, experts).

The formulas follow the transformers modelling code of each family; the tests check them
against the official sizes of 20 real models. LoRA sizes come from the same walk
(``lora_params_per_rank``: the sum of ``d_in + d_out`` over every decoder Linear).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tuneship.planning.model_config import MlaFacts, MoeFacts, text_config

if TYPE_CHECKING:
    from tuneship.planning.model_facts import ModelFacts

_QKV_BIAS_TYPES = {"qwen2", "qwen2_moe", "qwen2_vl", "qwen2_5_vl"}
"""Qwen2 models always have q/k/v biases (transformers Qwen2Attention), not o_proj."""

_QK_NORM_TYPES = {"qwen3", "qwen3_moe", "gemma3", "gemma3_text", "olmo2"}
"""Models with per-head q_norm/k_norm weights (head_dim parameters each)."""

_FOUR_NORM_TYPES = {"gemma2", "gemma3", "gemma3_text"}
"""Gemma 2/3 have four RMSNorms per layer (pre/post attention and feed-forward)."""


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
class ParamBreakdown:
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

    def scaled(self, factor: int) -> ParamBreakdown:
        return ParamBreakdown(
            self.embedding * factor,
            self.linear * factor,
            self.expert_linear * factor,
            self.other * factor,
            self.lora_params_per_rank * factor,
        )

    def __add__(self, other: ParamBreakdown) -> ParamBreakdown:
        return ParamBreakdown(
            self.embedding + other.embedding,
            self.linear + other.linear,
            self.expert_linear + other.expert_linear,
            self.other + other.other,
            self.lora_params_per_rank + other.lora_params_per_rank,
        )


def _attention_layer(cfg: dict[str, Any], f: dict[str, Any]) -> ParamBreakdown:
    """One decoder layer's attention and norms."""
    p = ParamBreakdown()
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


def _dense_mlp(cfg: dict[str, Any], f: dict[str, Any]) -> ParamBreakdown:
    """One gated (SwiGLU/GeGLU) MLP: gate and up projections, then down."""
    p = ParamBreakdown()
    h, inter = f["hidden_size"], f["intermediate_size"]
    p.add_linear(h, inter, 2)
    p.add_linear(inter, h)
    if cfg.get("mlp_bias"):
        p.other += 2 * inter + h
    return p


def _moe_mlp(cfg: dict[str, Any], f: dict[str, Any]) -> ParamBreakdown:
    """One MoE block: routed experts, router, shared experts."""
    p = ParamBreakdown()
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


def count_parameters(cfg: dict[str, Any], f: dict[str, Any]) -> ParamBreakdown:
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


def parameter_breakdown(facts: ModelFacts) -> dict[str, int]:
    """Parameters by role: embedding, linear, expert_linear, other and lora_per_rank.

    ``lora_per_rank`` is the LoRA parameter count at rank 1 over every decoder Linear
    (PEFT's ``all-linear``); multiply by the rank.
    """
    cfg = text_config(facts.config) if facts.config else {}
    cfg["__full_config__"] = facts.config
    b = count_parameters(
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
