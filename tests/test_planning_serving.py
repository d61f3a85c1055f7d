"""The vLLM serving plan: KV arithmetic, TP rules, calibration and the seeds' failures."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from _planning_helpers import GIB, fixture_facts

from tuneship.errors import PlanningError
from tuneship.planning.calibration import load_calibration_data, run_calibration
from tuneship.planning.gpus import custom_gpu, find_gpu, load_gpu_catalog, load_runpod_catalog
from tuneship.planning.kv_cache import (
    BLOCK_SIZE,
    kv_bytes_per_token,
    kv_request_bytes,
    largest_fitting_length,
)
from tuneship.planning.model_facts import facts_from_config
from tuneship.planning.serving import (
    ServeRequest,
    evaluate_option,
    plan_serving,
    tensor_parallel_problems,
    valid_tensor_parallel_sizes,
)

KIB = 1024


@pytest.mark.parametrize(
    ("name", "per_token"),
    [  # vllm-memory.md 1.4 table: layers x 2 x kv_heads x head_dim x 2 bytes
        ("meta-llama--Llama-3.2-1B-Instruct", 32 * KIB),
        ("meta-llama--Llama-3.2-3B-Instruct", 112 * KIB),
        ("meta-llama--Llama-3.1-8B-Instruct", 128 * KIB),
        ("mistralai--Mistral-7B-Instruct-v0.3", 128 * KIB),
        ("meta-llama--Llama-3.3-70B-Instruct", 320 * KIB),
        ("Qwen--Qwen2.5-7B-Instruct", 56 * KIB),
        ("Qwen--Qwen2.5-14B-Instruct", 192 * KIB),
        ("Qwen--Qwen2.5-32B-Instruct", 256 * KIB),
        ("Qwen--Qwen2.5-72B-Instruct", 320 * KIB),
        ("deepseek-ai--DeepSeek-V3", 70_272),  # MLA: 61 x 576 x 2
    ],
)
def test_kv_bytes_per_token_exact(name: str, per_token: int) -> None:
    facts = fixture_facts(name)
    assert kv_bytes_per_token(facts, 1) == per_token
    assert kv_bytes_per_token(facts, 1, "fp8") == per_token // 2


@pytest.mark.parametrize(
    ("name", "length", "gib"),
    [
        ("meta-llama--Llama-3.2-1B-Instruct", 131072, 4.0),
        ("meta-llama--Llama-3.2-3B-Instruct", 131072, 14.0),
        ("meta-llama--Llama-3.1-8B-Instruct", 32768, 4.0),
        ("Qwen--Qwen2.5-7B-Instruct", 32768, 1.75),
        ("Qwen--Qwen2.5-14B-Instruct", 32768, 6.0),
    ],
)
def test_one_request_kv_cache(name: str, length: int, gib: float) -> None:
    assert kv_request_bytes(fixture_facts(name), 1, length) == gib * GIB


def test_kv_heads_split_by_tp_then_replicated() -> None:
    facts = fixture_facts("meta-llama--Llama-3.3-70B-Instruct")  # 8 KV heads
    assert kv_bytes_per_token(facts, 4) == 320 * KIB // 4
    assert kv_bytes_per_token(facts, 8) == 320 * KIB // 8
    # TP 16 > 8 KV heads: each head lives on two GPUs, one head per GPU
    assert kv_bytes_per_token(facts, 16) == kv_bytes_per_token(facts, 8)


def test_mla_cache_is_replicated_on_every_rank() -> None:
    facts = fixture_facts("deepseek-ai--DeepSeek-V3")
    assert kv_bytes_per_token(facts, 8) == kv_bytes_per_token(facts, 1) == 61 * 576 * 2
    option = evaluate_option(facts, find_gpu("H200"), 8)
    assert any("replicated on every TP rank" in n for n in option.notes)


def test_sliding_window_layers_hold_only_window_plus_one_batch() -> None:
    facts = fixture_facts("openai--gpt-oss-20b")  # 12 sliding (window 128) + 12 full layers
    layer_block = 2 * 8 * 64 * 2 * BLOCK_SIZE
    batched = 8192
    need = kv_request_bytes(facts, 1, 131072, max_num_batched_tokens=batched)
    sliding_blocks = -(-(128 - 1 + batched) // BLOCK_SIZE) + 1
    assert need == layer_block * (12 * 131072 // BLOCK_SIZE + 12 * sliding_blocks)
    # doubling the context only grows the full-attention layers
    half = kv_request_bytes(facts, 1, 65536, max_num_batched_tokens=batched)
    assert need - half == layer_block * 12 * 65536 // BLOCK_SIZE
    # short requests are not charged the whole window
    assert kv_request_bytes(facts, 1, 64) == layer_block * (12 * 4 + 12 * 5)


def test_gemma3_sliding_layers_make_long_context_cheap() -> None:
    facts = fixture_facts("google--gemma-3-27b-it")
    all_full = replace(facts, layer_types=tuple("full_attention" for _ in facts.layer_types))
    hybrid = kv_request_bytes(facts, 1, 131072)
    assert hybrid < kv_request_bytes(all_full, 1, 131072) / 4


@pytest.mark.parametrize(
    ("name", "valid"),
    [  # vllm-memory.md section 2 "Valid TP values by model"
        ("meta-llama--Llama-3.2-1B-Instruct", [1, 2, 4, 8]),
        ("meta-llama--Llama-3.2-3B-Instruct", [1, 2, 4, 8]),
        ("meta-llama--Llama-3.1-8B-Instruct", [1, 2, 4, 8]),
        ("meta-llama--Llama-3.3-70B-Instruct", [1, 2, 4, 8]),
        ("Qwen--Qwen2.5-7B-Instruct", [1, 2, 4]),
        ("Qwen--Qwen2.5-14B-Instruct", [1, 2, 4, 8]),
        ("Qwen--Qwen2.5-32B-Instruct", [1, 2, 4, 8]),
        ("Qwen--Qwen2.5-72B-Instruct", [1, 2, 4, 8]),
    ],
)
def test_valid_tp_sets(name: str, valid: list[int]) -> None:
    assert valid_tensor_parallel_sizes(fixture_facts(name), limit=8) == valid


def test_llama_70b_also_runs_at_tp16_with_replicated_kv_heads() -> None:
    assert 16 in valid_tensor_parallel_sizes(fixture_facts("meta-llama--Llama-3.3-70B-Instruct"))


def test_qwen3_14b_tp5_fails_on_the_vocab_not_the_heads() -> None:
    # vllm-memory.md 2: passes the heads check at TP 5, but 151936 % 5 != 0
    model = load_calibration_data()["models"]["Qwen/Qwen3-14B"]
    facts = facts_from_config(model["config"], "Qwen/Qwen3-14B")
    problems = tensor_parallel_problems(facts, 5)
    assert not any("attention heads" in p for p in problems)
    assert any("padded vocab of 151,936" in p for p in problems)


def test_quantisation_groups_must_be_whole_per_shard() -> None:
    facts = fixture_facts("Qwen--Qwen2.5-72B-Instruct")  # intermediate 29568
    config = dict(
        facts.config, quantization_config={"quant_method": "awq", "bits": 4, "group_size": 128}
    )
    awq = facts_from_config(config, "qwen-72b-awq")
    # Qwen2-VL-72B-AWQ had to pad 29568 -> 29696 for TP 2/4/8 (vllm-memory.md 2)
    assert any("group size 128" in p for p in tensor_parallel_problems(awq, 2))
    assert tensor_parallel_problems(awq, 1) == []


@pytest.mark.parametrize("result", run_calibration(), ids=lambda r: r.point_id)
def test_calibration_points_within_five_percent(result: object) -> None:
    from tuneship.planning.calibration import CalibrationResult

    assert isinstance(result, CalibrationResult)
    assert abs(result.kv_error) <= 0.05, result
    if result.tokens_error is not None:
        assert abs(result.tokens_error) <= 0.05, result


# --- The seeds' three failures -------------------------------------------------------


def test_seed_llama32_3b_at_128k_needs_14_gib_and_gets_the_largest_fit() -> None:
    facts = fixture_facts("meta-llama--Llama-3.2-3B-Instruct")
    assert kv_request_bytes(facts, 1, 131072) == 14 * GIB
    gpu = custom_gpu(23.56)
    rejected = evaluate_option(
        facts, gpu, 1, ServeRequest(max_model_len=131072, kv_cache_memory_gib=11.55)
    )
    assert not rejected.fits
    assert "needs 14.00 GiB of KV cache" in rejected.reasons[0]
    assert "11.55 GiB is available" in rejected.reasons[0]

    auto = evaluate_option(
        facts, gpu, 1, ServeRequest(max_model_len="auto", kv_cache_memory_gib=11.55)
    )
    assert auto.fits
    length = auto.max_model_len
    assert length is not None and length % BLOCK_SIZE == 0
    usable = 11.55 * GIB - kv_bytes_per_token(facts, 1) * BLOCK_SIZE  # less vLLM's null block
    assert kv_request_bytes(facts, 1, length) <= usable
    assert kv_request_bytes(facts, 1, length + BLOCK_SIZE) > usable
    assert 107_000 < length < 109_000  # the reference's "fits about 108K tokens"
    assert str(f"{length:,}") in rejected.reasons[0]  # the rejection names that length


def test_seed_llama32_3b_planned_end_to_end_rejects_128k_on_a_24gb_card() -> None:
    facts = fixture_facts("meta-llama--Llama-3.2-3B-Instruct")
    plan = plan_serving(
        facts,
        ServeRequest(gpu_memory_utilization=0.8, max_model_len=131072),
        gpus=[custom_gpu(23.56)],
        gpu_count=1,
    )
    assert plan.chosen is None
    assert "needs 14.00 GiB of KV cache" in plan.options[0].reasons[0]
    auto = plan_serving(
        facts, ServeRequest(gpu_memory_utilization=0.8), gpus=[custom_gpu(23.56)], gpu_count=1
    )
    assert auto.chosen is not None
    length = auto.chosen.max_model_len
    assert length is not None
    assert kv_request_bytes(facts, 1, length) <= auto.chosen.kv_cache_gib * GIB
    assert length < 131072


def test_seed_fraction_never_above_free_memory() -> None:
    facts = fixture_facts("Qwen--Qwen2.5-7B-Instruct")
    gpu = custom_gpu(23.56)
    asked = evaluate_option(facts, gpu, 1, ServeRequest(gpu_memory_utilization=0.8), free_gib=17.88)
    assert not asked.fits
    assert "needs 18.85 GiB free at start but 17.88 of 23.56 GiB is free" in asked.reasons[0]

    plan = plan_serving(facts, gpus=[gpu], free_gib=17.88)
    assert plan.options
    for option in plan.options:
        assert option.gpu_memory_utilization is not None
        assert option.gpu_memory_utilization * 23.56 <= 17.88
    assert plan.chosen is not None


def test_seed_llama33_70b_bf16_on_a100_40gb_needs_tp4() -> None:
    facts = fixture_facts("meta-llama--Llama-3.3-70B-Instruct")
    plan = plan_serving(facts, gpus=[find_gpu("A100 40GB")])
    assert plan.chosen is not None
    assert plan.chosen.tensor_parallel_size == 4
    by_tp = {o.tensor_parallel_size: o for o in plan.options}
    assert not by_tp[1].fits and not by_tp[2].fits
    assert "weights 65.71 GiB per GPU exceed the 37.41 GiB budget" in by_tp[2].reasons[0]
    assert "TP 3 does not divide 64 attention heads" in by_tp[3].reasons
    assert by_tp[8].fits and by_tp[8].max_model_len == 131072


def test_a_plan_that_does_not_fit_says_what_would() -> None:
    facts = fixture_facts("meta-llama--Llama-3.3-70B-Instruct")
    plan = plan_serving(facts, gpus=[find_gpu("A100 40GB")], gpu_count=2)
    assert plan.chosen is None
    assert plan.suggestion is not None and plan.suggestion.gpu_count == 4
    with pytest.raises(PlanningError, match=r"what would fit: 4 x A100 40GB, TP 4"):
        plan.ensure_fits()


def test_cheapest_fitting_option_is_chosen() -> None:
    facts = fixture_facts("Qwen--Qwen2.5-32B-Instruct")
    plan = plan_serving(facts)
    chosen = plan.chosen
    assert chosen is not None and chosen.usd_per_hour is not None
    fitting = [o for o in plan.options if o.fits and o.usd_per_hour is not None]
    assert chosen.usd_per_hour == min(o.usd_per_hour for o in fitting)
    assert chosen.price_basis == "runpod serverless flex"
    flags = [o.fits for o in plan.options]
    assert flags == sorted(flags, reverse=True)  # every fitting option before any rejected one
    # every option that fits really holds the model's full context
    assert chosen.max_model_len == 32768


def test_explicit_length_above_model_maximum_is_rejected() -> None:
    facts = fixture_facts("Qwen--Qwen2.5-7B-Instruct")
    option = evaluate_option(facts, find_gpu("H100"), 1, ServeRequest(max_model_len=65536))
    assert any("exceeds the model's 32,768" in r for r in option.reasons)


def test_fp8_kv_cache_doubles_the_tokens() -> None:
    facts = fixture_facts("meta-llama--Llama-3.1-8B-Instruct")
    auto = evaluate_option(facts, find_gpu("H100"), 1, ServeRequest(gpu_memory_utilization=0.9))
    fp8 = evaluate_option(
        facts, find_gpu("H100"), 1, ServeRequest(gpu_memory_utilization=0.9, kv_cache_dtype="fp8")
    )
    assert fp8.kv_cache_gib == auto.kv_cache_gib
    assert fp8.kv_tokens == pytest.approx(2 * auto.kv_tokens, abs=BLOCK_SIZE)


def test_tp2_pays_for_nccl_and_cuda_graphs_depend_on_version() -> None:
    facts = fixture_facts("meta-llama--Llama-3.1-8B-Instruct")
    h100 = find_gpu("H100")
    tp1 = evaluate_option(
        facts, h100, 1, ServeRequest(gpu_memory_utilization=0.9, vllm_version="0.27")
    )
    tp2 = evaluate_option(
        facts, h100, 2, ServeRequest(gpu_memory_utilization=0.9, vllm_version="0.27")
    )
    assert tp2.non_torch_gib > 5 * tp1.non_torch_gib
    old = evaluate_option(
        facts, h100, 1, ServeRequest(gpu_memory_utilization=0.9, vllm_version="0.19")
    )
    assert tp1.cuda_graph_gib > 0 and old.cuda_graph_gib == 0
    eager = evaluate_option(
        facts, h100, 1, ServeRequest(gpu_memory_utilization=0.9, enforce_eager=True)
    )
    assert eager.cuda_graph_gib == 0
    legacy = evaluate_option(
        facts, h100, 1, ServeRequest(gpu_memory_utilization=0.9, vllm_version="0.11")
    )
    assert legacy.activation_gib > 2 * old.activation_gib  # the 0.17 activation drop


def test_old_vllm_needs_headroom_for_cuda_graphs() -> None:
    facts = fixture_facts("Qwen--Qwen2.5-0.5B-Instruct")
    option = evaluate_option(
        facts,
        find_gpu("L4"),
        1,
        ServeRequest(gpu_memory_utilization=0.99, vllm_version="0.11"),
        free_gib=22.0,
    )
    assert any("CUDA graphs outside the budget" in r for r in option.reasons)
    auto = evaluate_option(facts, find_gpu("L4"), 1, ServeRequest(vllm_version="0.11"))
    assert auto.fits


def test_largest_fitting_length_respects_cap() -> None:
    facts = fixture_facts("meta-llama--Llama-3.1-8B-Instruct")
    assert largest_fitting_length(facts, 1, 100 * GIB, 8192) == 8192
    assert largest_fitting_length(facts, 1, 0, 8192) == 0
    capped = evaluate_option(facts, find_gpu("H100"), 1, ServeRequest(max_model_len_cap=16384))
    assert capped.max_model_len == 16384


def test_auto_length_below_the_minimum_is_rejected() -> None:
    facts = fixture_facts("meta-llama--Llama-3.3-70B-Instruct")
    option = evaluate_option(facts, find_gpu("A100 40GB"), 4, ServeRequest(min_model_len=8192))
    assert not option.fits
    assert any("tokens of context fit (at least 8,192 wanted)" in r for r in option.reasons)


def test_contradictory_settings_are_errors() -> None:
    facts = fixture_facts("Qwen--Qwen3-8B")
    with pytest.raises(PlanningError, match="--tp 2 with --gpus 4"):
        plan_serving(facts, ServeRequest(tensor_parallel_size=2), gpu_count=4)
    with pytest.raises(PlanningError, match="kv-cache-dtype"):
        plan_serving(facts, ServeRequest(kv_cache_dtype="int4"))  # type: ignore[arg-type]
    with pytest.raises(PlanningError, match="gpu-memory-utilization"):
        plan_serving(facts, ServeRequest(gpu_memory_utilization=1.5))


def test_plan_json_contract_keys() -> None:
    plan = plan_serving(fixture_facts("Qwen--Qwen3-8B"), gpus=[find_gpu("L40S")], gpu_count=1)
    data = json.loads(json.dumps(plan.to_dict()))
    assert set(data) >= {"model", "chosen", "options"}
    required = {
        "gpu",
        "gpu_count",
        "tensor_parallel_size",
        "gpu_memory_utilization",
        "max_model_len",
        "weights_gib",
        "kv_bytes_per_token",
        "kv_cache_gib",
        "kv_tokens",
        "max_concurrency",
        "usd_per_hour",
        "fits",
        "reasons",
    }
    for option in data["options"]:
        assert required <= set(option)
    assert data["chosen"] == data["options"][0]


def test_catalog_lookup_and_provenance() -> None:
    catalog = load_gpu_catalog()
    assert find_gpu("a100-40gb").name == "A100 40GB"
    assert find_gpu("NVIDIA GeForce RTX 4090").name == "RTX 4090"
    assert find_gpu("tesla t4").name == "T4"
    with pytest.raises(PlanningError, match="--gpu-memory-gib"):
        find_gpu("Voodoo 5")
    assert catalog.vllm["calibrated_for"] and catalog.vllm_target_version
    for gpu in catalog.rentable():
        assert gpu.serverless_pool is None or gpu.serverless_pool in catalog.serverless_pools
    h100 = find_gpu("H100")
    assert h100.serverless_usd_per_second == pytest.approx(0.00116)
    assert h100.price_per_hour("serverless")[0] == pytest.approx(0.00116 * 3600)


def test_runpod_catalog_snapshot_and_live_merge() -> None:
    snapshot = load_runpod_catalog()
    assert {g.runpod_id for g in snapshot} >= {"NVIDIA H100 80GB HBM3", "NVIDIA GeForce RTX 4090"}

    class Client:
        def get_gpu_types(self) -> list[dict[str, object]]:
            return [
                {
                    "id": "NVIDIA H100 80GB HBM3",
                    "displayName": "H100 SXM",
                    "memoryInGb": 80,
                    "securePrice": 2.99,
                    "maxGpuCount": 8,
                },
                {
                    "id": "NVIDIA Z100",
                    "displayName": "Z100",
                    "memoryInGb": 64,
                    "securePrice": 1.5,
                    "maxGpuCount": 4,
                },
            ]

    live = {g.runpod_id: g for g in load_runpod_catalog(Client())}
    assert live["NVIDIA H100 80GB HBM3"].pod_usd_per_hour == 2.99
    assert live["NVIDIA H100 80GB HBM3"].total_gib == 79.19  # measured size kept
    assert live["NVIDIA Z100"].max_count == 4
    assert 62 < live["NVIDIA Z100"].total_gib < 64
