"""Training memory: parts, methods, checkpointing, GPU choice and cost."""

from __future__ import annotations

import pytest
from _planning_helpers import GIB, fixture_facts

from tuneship.errors import PlanningError
from tuneship.planning.gpus import custom_gpu, find_gpu
from tuneship.planning.parameters import parameter_breakdown
from tuneship.planning.training import plan_training, training_memory_parts

LLAMA_8B = "meta-llama--Llama-3.1-8B-Instruct"
LLAMA_70B = "meta-llama--Llama-3.3-70B-Instruct"


def test_lora_parts_for_llama_8b() -> None:
    facts = fixture_facts(LLAMA_8B)
    parts, trainable = training_memory_parts(facts, "lora", seq_len=2048, batch_size=1)
    assert parts["base_weights"] == facts.param_count * 2  # frozen bf16 base
    assert trainable == parameter_breakdown(facts)["lora_per_rank"] * 16
    # fp32 adapter + fp32 grads + two fp32 Adam moments: 16 B per trainable parameter
    assert parts["trainable_params"] + parts["gradients"] + parts["optimizer_states"] == (
        16 * trainable
    )
    assert parts["logits"] == 2048 * facts.vocab_size * 10


def test_qlora_base_is_about_a_third_of_lora() -> None:
    facts = fixture_facts(LLAMA_8B)
    lora, _ = training_memory_parts(facts, "lora")
    qlora, _ = training_memory_parts(facts, "qlora")
    # NF4 on the decoder Linears; embeddings and lm_head stay 16-bit (about 2.1 GB here)
    embeddings = parameter_breakdown(facts)["embedding"] * 2
    assert embeddings == pytest.approx(2.1e9, rel=0.03)
    assert 0.3 < qlora["base_weights"] / lora["base_weights"] < 0.36


def test_full_fine_tuning_is_16_bytes_per_parameter_before_activations() -> None:
    facts = fixture_facts(LLAMA_8B)
    parts, trainable = training_memory_parts(facts, "full")
    assert trainable == facts.param_count
    states = sum(
        parts[k] for k in ("base_weights", "trainable_params", "gradients", "optimizer_states")
    )
    assert states == 16 * facts.param_count


def test_gradient_checkpointing_shrinks_activations() -> None:
    facts = fixture_facts(LLAMA_8B)
    plain, _ = training_memory_parts(facts, "lora", seq_len=4096)
    checkpointed, _ = training_memory_parts(
        facts, "lora", seq_len=4096, gradient_checkpointing=True
    )
    # 34sbh per layer -> 2sbh per layer plus one layer's 34sbh working set
    assert checkpointed["activations"] * facts.num_layers == pytest.approx(
        plain["activations"] * (2 * facts.num_layers + 34) / 34, rel=1e-9
    )
    assert checkpointed["activations"] < plain["activations"] / 8


def test_activations_and_logits_scale_with_batch() -> None:
    facts = fixture_facts("Qwen--Qwen2.5-7B-Instruct")
    one, _ = training_memory_parts(facts, "lora", batch_size=1)
    four, _ = training_memory_parts(facts, "lora", batch_size=4)
    assert four["activations"] == 4 * one["activations"]
    assert four["logits"] == 4 * one["logits"]
    assert four["base_weights"] == one["base_weights"]


def test_sharding_over_gpus_divides_weights_and_state_not_activations() -> None:
    facts = fixture_facts(LLAMA_70B)
    one, _ = training_memory_parts(facts, "qlora", gradient_checkpointing=True)
    two, _ = training_memory_parts(facts, "qlora", gradient_checkpointing=True, gpu_count=2)
    assert two["base_weights"] == one["base_weights"] // 2
    assert two["activations"] == one["activations"]


def test_methods_order_and_published_ballparks() -> None:
    facts = fixture_facts(LLAMA_8B)
    peaks = {
        m: plan_training(facts, m, gradient_checkpointing=True, gpus=[]).peak_gib
        for m in ("qlora", "lora", "full")
    }
    assert peaks["qlora"] < peaks["lora"] < peaks["full"]
    # Unsloth's 8B minimum for 16-bit LoRA is 22 GB; LLaMA-Factory puts 7B LoRA at 16 GB
    assert 15 < peaks["lora"] < 24
    # full fine-tuning of 8B is 16-18 B/param: more than an 80 GB GPU
    assert peaks["full"] > 80


def test_70b_qlora_fits_one_80gb_gpu_but_lora_does_not() -> None:
    facts = fixture_facts(LLAMA_70B)
    a100 = find_gpu("A100 80GB SXM")
    qlora = plan_training(facts, "qlora", gradient_checkpointing=True, gpus=[a100])
    assert qlora.chosen is not None and qlora.chosen.gpu_count == 1  # Unsloth: 41 GB minimum
    lora = plan_training(facts, "lora", gradient_checkpointing=True, gpus=[a100])
    assert lora.chosen is not None and lora.chosen.gpu_count > 1  # Unsloth: 164 GB
    rejected = [o for o in lora.options if not o.fits]
    assert rejected and "exceeds" in rejected[0].reasons[0]


def test_cheapest_fitting_gpu_and_cost_estimate() -> None:
    facts = fixture_facts("Qwen--Qwen2.5-7B-Instruct")
    plan = plan_training(
        facts,
        "qlora",
        gradient_checkpointing=True,
        tokens=36_000_000,
        throughput_tokens_per_s=2_500,
    )
    chosen = plan.chosen
    assert chosen is not None and chosen.usd_per_hour is not None
    priced = [o for o in plan.options if o.fits and o.usd_per_hour is not None]
    assert chosen.usd_per_hour == min(o.usd_per_hour for o in priced)
    assert chosen.estimated_hours == pytest.approx(4.0)
    assert chosen.estimated_cost_usd == pytest.approx(4.0 * chosen.usd_per_hour, abs=0.01)


def test_nothing_fits_raises_with_advice() -> None:
    facts = fixture_facts(LLAMA_70B)
    plan = plan_training(facts, "full", gpus=[custom_gpu(24.0)], counts=(1, 2))
    assert plan.chosen is None
    with pytest.raises(PlanningError, match="gradient-checkpointing"):
        plan.ensure_fits()


def test_plan_json_has_peak_and_parts() -> None:
    plan = plan_training(fixture_facts("Qwen--Qwen3-8B"), "lora", gpus=[find_gpu("L40S")])
    data = plan.to_dict()
    assert data["peak_gib"] == pytest.approx(sum(data["parts"].values()), abs=0.05)
    assert set(data["parts"]) == {
        "base_weights",
        "trainable_params",
        "gradients",
        "optimizer_states",
        "activations",
        "logits",
        "cuda_context",
    }
    assert (
        data["peak_gib"] * GIB
        > plan_training(fixture_facts("Qwen--Qwen3-8B"), "qlora", gpus=[]).peak_gib * GIB
    )


def test_bad_inputs() -> None:
    facts = fixture_facts("Qwen--Qwen3-8B")
    with pytest.raises(PlanningError, match="--method"):
        training_memory_parts(facts, "dora")  # type: ignore[arg-type]
    with pytest.raises(PlanningError, match="--seq-len"):
        training_memory_parts(facts, "lora", seq_len=0)


def test_planned_steps_are_timed_from_each_gpus_flops() -> None:
    from tuneship.planning.training_time import (
        BF16_DENSE_TFLOPS,
        MFU,
        planned_tokens_per_gpu,
        training_flops_per_token,
    )

    facts = fixture_facts("Qwen--Qwen3-8B")
    # 100 steps of 4 rows x 2 accumulation of 1,024 tokens; by epochs: ceil(1.5 x 1,000 / 8).
    tokens = planned_tokens_per_gpu(
        100, 1.0, None, batch_size=4, gradient_accumulation_steps=2, seq_len=1024
    )
    assert tokens == 100 * 8 * 1024
    by_epochs = planned_tokens_per_gpu(
        -1, 1.5, 1000, batch_size=4, gradient_accumulation_steps=2, seq_len=1024
    )
    assert by_epochs == 188 * 8 * 1024
    assert (
        planned_tokens_per_gpu(
            -1, 1.0, None, batch_size=4, gradient_accumulation_steps=2, seq_len=8
        )
        is None
    )
    lora = plan_training(facts, "lora", tokens_per_gpu=tokens, counts=(1,))
    full = plan_training(facts, "full", tokens_per_gpu=tokens, counts=(8,))
    h100 = next(o for o in lora.options if o.runpod_gpu_id == "NVIDIA H100 80GB HBM3")
    expected = tokens * 4 * facts.param_count / (989e12 * MFU) / 3600
    assert h100.estimated_hours == pytest.approx(expected, rel=0.01)
    assert h100.estimated_cost_usd == pytest.approx(expected * h100.usd_per_hour, rel=0.01)
    # Full fine-tuning also computes weight gradients: 6N instead of 4N FLOPs per token.
    assert training_flops_per_token(10, "full", False) / training_flops_per_token(
        10, "lora", False
    ) == pytest.approx(1.5)
    full_h100 = next(o for o in full.options if o.runpod_gpu_id == "NVIDIA H100 80GB HBM3")
    assert full_h100.estimated_hours == pytest.approx(1.5 * expected, rel=0.01)
    # Every GPU RunPod rents has a throughput, so every priced option has a cost.
    assert all(o.runpod_gpu_id in BF16_DENSE_TFLOPS for o in lora.options)
    assert all(o.estimated_cost_usd is not None for o in lora.options if o.usd_per_hour)
