"""Model facts from real configs, local folders and safetensors files."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from _planning_helpers import FIXTURES, fixture_facts, fixture_path, official_sizes

from tuneship.errors import PlanningError
from tuneship.planning.model_facts import facts_from_config, load_model_facts
from tuneship.planning.parameters import parameter_breakdown

ALL_FIXTURES = sorted(official_sizes())


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_weights_match_official_sizes_within_one_percent(name: str) -> None:
    official = official_sizes()[name]
    facts = fixture_facts(name)
    assert facts.weight_bytes_source == "computed from config"
    assert facts.weight_bytes == pytest.approx(official["weight_bytes"], rel=0.01)


@pytest.mark.parametrize("name", [n for n in ALL_FIXTURES if n != "deepseek-ai--DeepSeek-V3"])
def test_parameter_count_is_exact(name: str) -> None:
    assert fixture_facts(name).param_count == official_sizes()[name]["params"]


def test_deepseek_v3_counts_the_mtp_layer() -> None:
    facts = fixture_facts("deepseek-ai--DeepSeek-V3")
    assert facts.mtp_layers == 1
    # HF card "685B" = 671B main model + the multi-token-prediction layer
    assert facts.param_count == pytest.approx(684.5e9, rel=0.001)


@pytest.mark.parametrize(
    ("name", "head_dim"),
    [
        ("Qwen--Qwen3-30B-A3B", 128),  # hidden/heads would be 64
        ("google--gemma-2-9b-it", 256),  # 224
        ("google--gemma-3-27b-it", 128),  # 168
        ("openai--gpt-oss-20b", 64),  # 45
        ("meta-llama--Llama-3.1-8B-Instruct", 128),  # no key: hidden/heads
        ("microsoft--Phi-3-mini-4k-instruct", 96),  # no key: 3072/32
    ],
)
def test_head_dim_is_read_when_present_else_derived(name: str, head_dim: int) -> None:
    assert fixture_facts(name).head_dim == head_dim


def test_gemma3_nested_text_config_takes_transformers_defaults() -> None:
    facts = fixture_facts("google--gemma-3-4b-it")
    assert facts.model_type == "gemma3_text"
    assert (facts.num_attention_heads, facts.num_kv_heads, facts.head_dim) == (8, 4, 256)
    assert facts.vocab_size == 262208
    assert facts.max_position_embeddings == 131072
    assert facts.tie_word_embeddings is True
    assert facts.multimodal is True


def test_gemma2_alternates_sliding_and_full_layers() -> None:
    facts = fixture_facts("google--gemma-2-9b-it")
    assert facts.sliding_window == 4096
    assert facts.layer_types[:4] == (
        "sliding_attention",
        "full_attention",
        "sliding_attention",
        "full_attention",
    )
    assert (facts.sliding_layers, facts.full_layers) == (21, 21)
    assert facts.tie_word_embeddings is True  # key absent, Gemma default


def test_gemma3_has_five_local_layers_per_global_one() -> None:
    facts = fixture_facts("google--gemma-3-27b-it")
    full = [i for i, t in enumerate(facts.layer_types) if t == "full_attention"]
    assert full == [5, 11, 17, 23, 29, 35, 41, 47, 53, 59]
    assert facts.sliding_layers == 52
    assert facts.sliding_window == 1024


def test_gpt_oss_layer_types_list_and_absent_dtype() -> None:
    facts = fixture_facts("openai--gpt-oss-20b")
    assert (facts.sliding_layers, facts.full_layers, facts.sliding_window) == (12, 12, 128)
    assert facts.dtype is None
    assert any("no dtype" in note for note in facts.notes)
    assert facts.quantization is not None
    assert facts.quantization.method == "mxfp4"
    assert facts.quantization.bits == pytest.approx(4.25)


@pytest.mark.parametrize(
    "name",
    [
        "Qwen--Qwen2.5-7B-Instruct",  # sliding_window set, use_sliding_window false
        "mistralai--Mistral-7B-Instruct-v0.3",  # sliding_window null
        "microsoft--Phi-3-mini-4k-instruct",  # bare window: planned as full attention
        "meta-llama--Llama-3.1-8B-Instruct",
    ],
)
def test_declared_but_unused_windows_are_full_attention(name: str) -> None:
    facts = fixture_facts(name)
    assert facts.sliding_layers == 0
    assert facts.sliding_window is None


def test_qwen2_sliding_from_max_window_layers_when_enabled() -> None:
    config = json.loads(fixture_path("Qwen--Qwen2.5-7B-Instruct").read_text())
    config.update(use_sliding_window=True, sliding_window=4096, max_window_layers=20)
    facts = facts_from_config(config, "qwen-sliding")
    assert facts.layer_types[19] == "full_attention"
    assert facts.layer_types[20] == "sliding_attention"
    assert facts.sliding_layers == 8


@pytest.mark.parametrize(
    ("name", "experts", "per_token", "moe_layers", "shared"),
    [
        ("mistralai--Mixtral-8x7B-Instruct-v0.1", 8, 2, 32, 0),  # num_local_experts
        ("Qwen--Qwen3-30B-A3B", 128, 8, 48, 0),  # num_experts, decoder_sparse_step
        ("deepseek-ai--DeepSeek-V2-Lite-Chat", 64, 6, 26, 2),  # n_routed, first_k_dense_replace
        ("openai--gpt-oss-20b", 32, 4, 24, 0),  # num_local_experts + experts_per_token
    ],
)
def test_moe_spellings(
    name: str, experts: int, per_token: int, moe_layers: int, shared: int
) -> None:
    moe = fixture_facts(name).moe
    assert moe is not None
    assert (moe.num_experts, moe.experts_per_token, moe.moe_layers) == (
        experts,
        per_token,
        moe_layers,
    )
    assert moe.num_shared_experts == shared


def test_mla_facts_from_deepseek() -> None:
    v3 = fixture_facts("deepseek-ai--DeepSeek-V3")
    lite = fixture_facts("deepseek-ai--DeepSeek-V2-Lite-Chat")
    assert v3.mla is not None and lite.mla is not None
    assert v3.mla.cache_width == 576 == lite.mla.cache_width
    assert v3.mla.q_lora_rank == 1536
    assert lite.mla.q_lora_rank is None
    assert v3.quantization is not None
    assert v3.quantization.method == "fp8"
    assert v3.quantization.weight_block_size == (128, 128)
    # the config says bfloat16, but the fp8 checkpoint is about half the bf16 size
    assert v3.weight_bytes < 0.51 * v3.param_count * 2


def test_dense_models_have_no_moe_or_mla() -> None:
    facts = fixture_facts("meta-llama--Llama-3.3-70B-Instruct")
    assert facts.moe is None and facts.mla is None and facts.quantization is None


def test_awq_checkpoint_weights_are_about_a_quarter_of_bf16() -> None:
    config = json.loads(fixture_path("meta-llama--Llama-3.1-8B-Instruct").read_text())
    bf16 = facts_from_config(config, "bf16")
    config["quantization_config"] = {"quant_method": "awq", "bits": 4, "group_size": 128}
    awq = facts_from_config(config, "awq")
    assert awq.quantization is not None and awq.quantization.group_size == 128
    linear = parameter_breakdown(bf16)["linear"]
    rest = bf16.param_count - linear
    # 4-bit Linear weights + fp16 scale and 4-bit zero per group of 128; rest 16-bit
    expected = linear * (0.5 + 2 / 128 + 0.5 / 128) + rest * 2
    assert awq.weight_bytes == pytest.approx(expected, rel=1e-6)
    assert 0.3 < awq.weight_bytes / bf16.weight_bytes < 0.4  # embeddings stay 16-bit


def test_dtype_key_replaces_torch_dtype() -> None:
    config = json.loads(fixture_path("Qwen--Qwen2.5-0.5B-Instruct").read_text())
    del config["torch_dtype"]
    config["dtype"] = "float32"
    facts = facts_from_config(config, "fp32")
    assert facts.dtype == "float32"
    assert facts.weight_bytes == facts.param_count * 4


def test_lora_parameters_match_the_published_42m_for_llama3_8b() -> None:
    # vllm-memory.md 5.1: "Llama-3-8B, all linear layers, r=16: about 42M"
    per_rank = parameter_breakdown(fixture_facts("meta-llama--Llama-3.1-8B-Instruct"))[
        "lora_per_rank"
    ]
    assert 41.5e6 < per_rank * 16 < 42.5e6


def _write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int], int]]) -> int:
    """Write a minimal safetensors file; returns the payload bytes."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, (dtype, shape, itemsize) in tensors.items():
        size = itemsize
        for dim in shape:
            size *= dim
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * offset)
    return offset


def test_folder_with_index_uses_total_size(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_bytes(fixture_path("Qwen--Qwen2.5-7B-Instruct").read_bytes())
    index = {"metadata": {"total_size": 15231233024}, "weight_map": {"a": "model-1.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    facts = load_model_facts(tmp_path)
    assert facts.weight_bytes == 15231233024
    assert facts.weight_bytes_source == "safetensors index total_size"


def test_folder_with_safetensors_reads_headers_and_skips_consolidated(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_bytes(
        fixture_path("TinyLlama--TinyLlama-1.1B-Chat-v1.0").read_bytes()
    )
    one = _write_safetensors(
        tmp_path / "model-00001-of-00002.safetensors",
        {"a": ("BF16", [64, 32], 2), "b": ("F32", [10], 4)},
    )
    two = _write_safetensors(
        tmp_path / "model-00002-of-00002.safetensors", {"c": ("F8_E4M3", [128, 8], 1)}
    )
    _write_safetensors(tmp_path / "consolidated.safetensors", {"x": ("BF16", [1000], 2)})
    facts = load_model_facts(tmp_path)
    assert facts.weight_bytes == one + two
    assert facts.weight_bytes_source == "safetensors headers"


def test_tiny_model_folder_matches_its_real_tensors(tiny_model_dir: Path) -> None:
    from safetensors import safe_open

    numel = nbytes = 0
    for file in sorted(tiny_model_dir.glob("*.safetensors")):
        with safe_open(str(file), "pt") as handle:
            for key in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
                tensor = handle.get_tensor(key)
                numel += tensor.numel()
                nbytes += tensor.numel() * tensor.element_size()
    facts = load_model_facts(tiny_model_dir)
    assert facts.weight_bytes_source == "safetensors headers"
    assert facts.weight_bytes == nbytes
    assert facts.param_count == numel  # the config-derived count matches the real tensors


def test_bare_config_file_computes_weights() -> None:
    facts = load_model_facts(str(FIXTURES / "Qwen--Qwen3-8B.json"))
    assert facts.weight_bytes_source == "computed from config"
    assert facts.num_layers == 36


def test_missing_source_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PlanningError, match="no such file"):
        load_model_facts(tmp_path / "nope" / "config.json")
    with pytest.raises(PlanningError, match=r"has no config\.json"):
        load_model_facts(tmp_path)


def test_broken_json_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "config.json"
    bad.write_text('{\n  "num_hidden_layers": 2,\n  oops\n}')
    with pytest.raises(PlanningError, match=r"config.json: not valid JSON .*line 3"):
        load_model_facts(bad)


def test_non_llm_config_names_the_missing_field(tmp_path: Path) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"model_type": "resnet", "hidden_sizes": [64, 128]}))
    with pytest.raises(PlanningError, match="num_hidden_layers"):
        load_model_facts(cfg)
