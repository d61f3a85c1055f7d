"""A model's facts for memory planning: its parsed config, parameter count and weight size.

A model can be a local folder, a bare ``config.json`` file, or a Hugging Face Hub id. The
facts cover what serving and training memory depend on: layers, attention and KV heads,
head_dim, vocab, tied embeddings, dtype, context length, sliding-window layers, MoE, MLA
(DeepSeek), nested ``text_config`` (multimodal models) and pre-quantised checkpoints.
This module assembles them from :mod:`~tuneship.planning.model_config` (parsing),
:mod:`~tuneship.planning.parameters` (counting) and :mod:`~tuneship.planning.weights`
(sizes).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneship.errors import PlanningError
from tuneship.planning.model_config import (
    DTYPE_BYTES,
    TIED_BY_DEFAULT,
    MlaFacts,
    MoeFacts,
    QuantFacts,
    config_value,
    parse_layer_types,
    parse_mla,
    parse_moe,
    parse_quantization,
    read_hub_config,
    read_model_config,
    text_config,
)
from tuneship.planning.parameters import count_parameters
from tuneship.planning.weights import (
    weight_bytes_from_config,
    weight_bytes_from_folder,
    weight_bytes_from_hub,
)


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
    cfg = text_config(config)
    cfg["__full_config__"] = config
    notes: list[str] = []

    def need(*names: str) -> int:
        value = config_value(cfg, *names)
        if value is None:
            raise PlanningError(
                f"{source}: config has no {' / '.join(names)}; is this a decoder LLM config?"
            )
        return int(value)

    layers = need("num_hidden_layers", "n_layer", "num_layers")
    hidden = need("hidden_size", "n_embd", "d_model")
    heads = need("num_attention_heads", "n_head")
    kv_heads = int(config_value(cfg, "num_key_value_heads", "num_kv_heads", default=heads))
    head_dim = int(cfg.get("head_dim") or hidden // heads)
    vocab = need("vocab_size")
    mla = parse_mla(cfg)
    if mla is not None and not cfg.get("head_dim"):
        head_dim = mla.qk_nope_head_dim + mla.qk_rope_head_dim  # query/key head width
    model_type = cfg.get("model_type")
    tie_default = model_type in TIED_BY_DEFAULT
    tie = bool(config_value(cfg, "tie_word_embeddings", default=tie_default))
    dtype = config_value(cfg, "torch_dtype", "dtype")
    if dtype is None:
        notes.append("config declares no dtype; assumed bfloat16")
    moe = parse_moe(cfg, layers)
    quant = parse_quantization(config, cfg)
    layer_types, window = parse_layer_types(cfg, layers)
    inter = int(config_value(cfg, "intermediate_size", "n_inner", "ffn_dim", default=4 * hidden))
    max_pos = config_value(cfg, "max_position_embeddings", "max_sequence_length", "n_positions")
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
    breakdown = count_parameters(cfg, facts_dict)
    cfg.pop("__full_config__", None)
    dtype_bytes = DTYPE_BYTES.get(str(dtype or "bfloat16").lower(), 2)
    if weight_bytes is None:
        size = weight_bytes_from_config(breakdown, dtype_bytes, quant)
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
    if path.exists():
        config = read_model_config(path)
        # Sizes from safetensors beside the config; a renamed bare .json has none to read.
        folder = path if path.is_dir() else path.parent
        local = path.is_dir() or path.name == "config.json"
        return facts_from_config(config, text, weight_bytes_from_folder(folder) if local else None)
    from tuneship.hub.ids import is_hub_id  # lazy: huggingface_hub is slow to import

    if not is_hub_id(text):
        raise PlanningError(f"{text}: no such file or folder, and not a Hub model id")
    config = read_hub_config(text, revision, token)
    return facts_from_config(config, text, weight_bytes_from_hub(text, revision, token))
