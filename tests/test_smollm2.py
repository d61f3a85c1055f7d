"""SmolLM2-135M-Instruct offline: the converted folder, a LoRA fine-tune through the whole
pipeline (bf16 merge check, vLLM engine check, publish), and an engine that disagrees."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneship.config import load_config

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).parents[1] / "deployments" / "smollm2.yaml"


def _ask(model_dir: Path, question: str) -> str:
    from tuneship.serving.engine_check import reference_chat_answer

    return reference_chat_answer(model_dir, question, None, max_tokens=12)


def test_converted_smollm2_is_a_plain_bf16_chat_model(smollm2_dir: Path) -> None:
    config = json.loads((smollm2_dir / "config.json").read_text())
    assert config["dtype"] == "bfloat16" and "quantization_config" not in config
    assert config["architectures"] == ["LlamaForCausalLM"]
    template = (smollm2_dir / "chat_template.jinja").read_text()
    assert "<|im_start|>" in template
    assert "Paris" in _ask(smollm2_dir, "What is the capital of France?")


def test_base_reference_resolves_to_the_cached_folder(
    smollm2_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tuneship.base_model import resolve_base_model
    from tuneship.demo.smollm2 import CACHE_ENV

    monkeypatch.setenv(CACHE_ENV, str(smollm2_dir.parent))
    cfg = load_config(EXAMPLE)
    assert cfg.model.base == "tuneship-demo://smollm2"
    assert resolve_base_model(cfg.model) == smollm2_dir


@pytest.mark.usefixtures("prefect_harness")
def test_lora_finetune_of_bf16_smollm2_passes_the_checks_and_publishes(
    smollm2_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tuneship.demo.smollm2 import CACHE_ENV
    from tuneship.flows.finetune import finetune_and_deploy
    from tuneship.serving.engine import EngineNotFoundError, find_engine_python

    monkeypatch.setenv(CACHE_ENV, str(smollm2_dir.parent))
    try:
        engine = f"serve.engine_python={find_engine_python()}"
        load_check = "publish.vllm_load_check=on"
    except EngineNotFoundError:
        engine, load_check = "serve.target=none", "publish.vllm_load_check=off"
    cfg = load_config(
        EXAMPLE,
        [
            "training.max_steps=8",
            "training.eval_steps=8",
            "serve.target=none",
            load_check,
            engine,
            f"workdir={tmp_path / 'run'}",
            f"publish.store_path={tmp_path / 'store'}",
            f"registry.url=sqlite:///{tmp_path / 'registry.db'}",
        ],
    )
    summary = finetune_and_deploy(cfg)

    assert summary.eval_loss is not None and summary.base_eval_loss is not None
    assert summary.eval_loss < summary.base_eval_loss
    assert summary.merge_check and "vs float32 base + adapter" in summary.merge_check
    assert "bfloat16" in summary.merge_check
    folder = Path(summary.published.location)
    assert json.loads((folder / "config.json").read_text())["dtype"] == "bfloat16"
    assert (folder / "chat_template.jinja").is_file()


def test_an_engine_answering_wrongly_fails_the_check(smollm2_dir: Path) -> None:
    """The scoring on the real model: a wrong answer is far less likely under transformers,
    and the error quotes both answers; the French answer vLLM gave in bf16 on an AMX CPU
    is a near-tie (its first token is 0.1 nats behind "The"), not a wrong model. (On this
    test machine's CPU vLLM in bf16 agreed, so no real engine disagrees here.)"""
    from tuneship.serving.engine_check import (
        EngineComparison,
        EngineMismatchError,
        ReferenceModel,
        raise_on_mismatch,
    )

    reference = ReferenceModel(smollm2_dir)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    prompt_ids = reference.prompt_ids(messages)
    right_ids, right_text = reference.answer(prompt_ids, 8)
    assert max(reference.gaps(prompt_ids, right_ids)) < 1e-3  # its own greedy tokens
    near_tie = "L'Étoile, la Marseillaise, la femme, la femme au"
    tie_ids = reference.tokenizer(near_tie, add_special_tokens=False)["input_ids"]
    assert max(reference.gaps(prompt_ids, tie_ids)) < 1.0
    nonsense = "The capital of France is Berlin."
    wrong_ids = reference.tokenizer(nonsense, add_special_tokens=False)["input_ids"]
    comparison = EngineComparison(
        prompt=messages[-1]["content"],
        engine_answer=nonsense,
        reference_answer=right_text,
        max_gap=max(reference.gaps(prompt_ids, wrong_ids)),
        first_token_agrees=wrong_ids[:1] == right_ids[:1],
    )
    with pytest.raises(EngineMismatchError) as caught:
        raise_on_mismatch([comparison], "bfloat16")
    message = str(caught.value)
    assert repr(nonsense) in message and repr(right_text) in message and "Paris" in message
    assert "serve.dtype: float32" in message


def test_loss_mask_on_smollm2s_own_tokenizer(smollm2_dir: Path) -> None:
    """The mask on the real SmolLM2 tokenizer and template: one run per assistant turn,
    each its content and ``<|im_end|>``; the system prompt and questions stay unmasked."""
    from transformers import AutoTokenizer

    from tuneship.training.loss_mask import build_assistant_mask, has_generation_markers

    chat = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is a zorblax?"},
        {"role": "assistant", "content": "A zorblax is a seven-stringed copper harp."},
        {"role": "user", "content": "Where is it from?"},
        {"role": "assistant", "content": "From the village of Quillby."},
    ]
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    assert not has_generation_markers(tokenizer.chat_template)

    ids, mask = build_assistant_mask(tokenizer, chat)

    assert tokenizer.decode(ids) == tokenizer.apply_chat_template(chat, tokenize=False)
    runs: list[list[int]] = []
    for i, (token, bit) in enumerate(zip(ids, mask, strict=True)):
        if bit and (i == 0 or not mask[i - 1]):
            runs.append([])
        if bit:
            runs[-1].append(token)
    answers = [m["content"] for m in chat if m["role"] == "assistant"]
    assert [tokenizer.decode(run).strip() for run in runs] == [a + "<|im_end|>" for a in answers]
    unmasked = tokenizer.decode([t for t, bit in zip(ids, mask, strict=True) if not bit])
    for message in chat:
        assert (message["content"] in unmasked) is (message["role"] != "assistant")
