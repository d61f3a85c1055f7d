"""The merge check on a real bf16 model (SmolLM2-135M-Instruct): a right merge passes
against the float32 reference, a merge that dropped the adapter fails."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import tuneship.training.merge as merge_module
from tuneship.errors import MergeError
from tuneship.training import MergeJobSpec
from tuneship.training.merge import describe_merge_check, run_merge

pytestmark = pytest.mark.slow

ROWS = [
    {
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer},
        ]
    }
    for question, answer in [
        ("What is the capital of France?", "The capital of France is Paris."),
        ("What is a zorblax?", "A zorblax is a seven-stringed copper harp."),
        ("What do bees make?", "Bees make honey."),
    ]
]


@pytest.fixture(scope="module")
def smollm2_adapter(smollm2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA r=16 adapter on every linear layer with random nonzero B, so it matters."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    out = tmp_path_factory.mktemp("smollm2-adapter")
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(str(smollm2_dir), dtype=torch.float32)
    model = get_peft_model(
        base, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")
    )
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.02)
    model.save_pretrained(str(out / "adapter"))
    (out / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return out


def _spec(smollm2_dir: Path, adapter: Path, out: Path) -> MergeJobSpec:
    return MergeJobSpec(
        base_model_path=str(smollm2_dir),
        adapter_path=str(adapter / "adapter"),
        output_dir=str(out),
        eval_path=str(adapter / "eval.jsonl"),
    )


def test_bf16_merge_passes_against_the_float32_reference(
    smollm2_dir: Path, smollm2_adapter: Path, tmp_path: Path
) -> None:
    result = run_merge(_spec(smollm2_dir, smollm2_adapter, tmp_path / "merged"))

    assert result.dtype == "bfloat16" and result.merged and result.checked_rows == 3
    # bf16 rounding is real noise, and the merge stays within it.
    assert result.unmerged_noise > 1e-2
    assert result.max_abs_logit_diff <= result.tolerance
    # The adapter matters: it moves the logits by more than the tolerance, and the merged
    # model follows the reference's top tokens more often than the base does.
    assert result.finetune_effect > result.tolerance
    assert result.top1_agreement > result.base_top1_agreement
    assert result.top1_agreement >= 0.9
    text = describe_merge_check(result)
    assert "vs float32 base + adapter" in text and "unmerged bfloat16 noise" in text
    saved = json.loads((tmp_path / "merged" / "config.json").read_text())
    assert saved["dtype"] == "bfloat16"


def test_merge_that_drops_the_adapter_fails(
    smollm2_dir: Path,
    smollm2_adapter: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def drop_adapter(model: object) -> object:
        return model.unload()  # type: ignore[attr-defined]  # the base, LoRA thrown away

    monkeypatch.setattr(merge_module, "merge_adapter", drop_adapter)
    out = tmp_path / "merged"
    with pytest.raises(MergeError, match="lost the fine-tune") as caught:
        run_merge(_spec(smollm2_dir, smollm2_adapter, out))
    assert "top-1 agreement" in str(caught.value)
    assert not out.exists()
