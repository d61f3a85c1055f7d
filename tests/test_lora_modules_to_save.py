"""``training.lora.modules_to_save``: validated, trained beside the adapter, merged faithfully."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _training_helpers import make_spec
from pydantic import ValidationError
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from tuneship.config import LoraSettings
from tuneship.errors import TrainingError
from tuneship.training import MergeJobSpec
from tuneship.training.merge import run_merge
from tuneship.training.train import check_modules_to_save, run_training

PROMPT = [
    {"role": "system", "content": "You are a concise assistant."},
    {"role": "user", "content": "What is 3 plus 4?"},
]


@pytest.mark.parametrize(
    ("names", "message"),
    [(["embed tokens"], "not module names"), (["norm", "norm"], "more than once")],
)
def test_config_rejects_bad_module_names(names: list[str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        LoraSettings(modules_to_save=names)


def test_names_matching_no_module_are_rejected_with_the_candidates(tiny_model_dir: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    assert check_modules_to_save(model, ["embed_tokens", "model.norm"]) == [
        "embed_tokens",
        "model.norm",
    ]
    with pytest.raises(TrainingError, match=r"\['embeddings'\].*'embed_tokens'.*'norm'"):
        check_modules_to_save(model, ["embeddings"])


def _logits(model: torch.nn.Module, model_dir: Path) -> torch.Tensor:
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    ids = tokenizer(tokenizer.apply_chat_template(PROMPT, tokenize=False), return_tensors="pt")
    with torch.inference_mode():
        return model(**ids).logits


@pytest.mark.slow
def test_saved_embeddings_and_norm_are_trained_and_merged_as_peft_computes(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """The tiny model ties its embeddings: the merge must keep what PEFT trained and ran."""
    from peft import PeftModel

    spec = make_spec(
        tiny_model_dir,
        tmp_path,
        evaluate=False,
        max_steps=4,
        learning_rate=5e-3,
        lora={"r": 8, "alpha": 16, "dropout": 0.0, "modules_to_save": ["embed_tokens", "norm"]},
    )
    result = run_training(spec)
    adapter = Path(result.output_path)
    saved = load_file(str(adapter / "adapter_model.safetensors"))
    assert any("embed_tokens" in k for k in saved)
    assert any(k.endswith("norm.weight") and "layers" not in k for k in saved)
    assert json.loads((adapter / "adapter_config.json").read_text())["modules_to_save"]

    merged = run_merge(
        MergeJobSpec(
            base_model_path=str(tiny_model_dir),
            adapter_path=str(adapter),
            output_dir=str(tmp_path / "merged"),
        )
    )

    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32).eval()
    base_logits = _logits(base, tiny_model_dir)
    base_embed = base.get_input_embeddings().weight.detach().clone()  # PEFT wraps base in place
    peft = PeftModel.from_pretrained(base, str(adapter)).eval()
    reference = _logits(peft, tiny_model_dir)
    reloaded = AutoModelForCausalLM.from_pretrained(merged.merged_dir, dtype=torch.float32).eval()
    got = _logits(reloaded, tiny_model_dir)

    # The fine-tune moved the logits, and the merged folder reproduces PEFT's own output.
    assert float((reference - base_logits).abs().max()) > 0.1
    assert float((got - reference).abs().max()) < 1e-4
    assert not torch.equal(reloaded.get_input_embeddings().weight, base_embed)
    assert reloaded.get_output_embeddings().weight.data_ptr() == (
        reloaded.get_input_embeddings().weight.data_ptr()
    )
