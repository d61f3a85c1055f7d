"""The demo's pre-trained tiny base: train split only, cached by recipe and data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneship.base_model import resolve_base_model
from tuneship.config import DEMO_PRETRAINED_BASE_MODEL, ModelConfig
from tuneship.data.prepare import prepare_dataset
from tuneship.demo.pretrained import (
    PretrainRecipe,
    build_corpus,
    demo_data_config,
    ensure_pretrained_demo_model,
    read_train_rows,
    recipe_key,
)
from tuneship.errors import ConfigError


def _answers(rows: list[dict]) -> set[str]:  # type: ignore[type-arg]
    return {m["content"] for r in rows for m in r["messages"] if m["role"] == "assistant"}


def test_pretraining_never_sees_the_demo_eval_rows(tmp_path: Path) -> None:
    data = demo_data_config()
    prepared = prepare_dataset(data, "sft", evaluate=True, out_dir=tmp_path)
    assert prepared.eval_path is not None
    eval_rows = [json.loads(x) for x in Path(prepared.eval_path).read_text().splitlines()]
    train_rows = read_train_rows(data)
    corpus = build_corpus(train_rows)

    eval_only = _answers(eval_rows) - _answers(train_rows)
    assert eval_rows and eval_only  # otherwise the test would prove nothing
    # The sample data repeats some rows, so a row can be in both splits; what only the
    # eval split holds must not reach pre-training or the tokenizer.
    assert len(train_rows) == prepared.n_train
    assert set(corpus.sentences) == _answers(train_rows)
    assert not eval_only & set(corpus.sentences)
    assert not eval_only & set(corpus.tokenizer_texts)
    eval_questions = {m["content"] for r in eval_rows for m in r["messages"] if m["role"] == "user"}
    train_questions = {
        m["content"] for r in train_rows for m in r["messages"] if m["role"] == "user"
    }
    assert not (eval_questions - train_questions) & set(corpus.tokenizer_texts)


def test_cache_key_follows_the_recipe_and_the_data() -> None:
    rows = read_train_rows(demo_data_config())
    corpus = build_corpus(rows)
    key = recipe_key(PretrainRecipe(), corpus)
    assert key == recipe_key(PretrainRecipe(), build_corpus(rows))
    assert key != recipe_key(PretrainRecipe(steps=401), corpus)
    assert key != recipe_key(PretrainRecipe(), build_corpus(rows[1:]))


def test_unknown_demo_model_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="tiny-llama-pretrained"):
        resolve_base_model(ModelConfig(base="tuneship-demo://tiny-gpt"))


@pytest.mark.slow
def test_pretrained_base_is_built_once_learns_its_sentences_and_resolves() -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = ensure_pretrained_demo_model()
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert resolve_base_model(ModelConfig(base=DEMO_PRETRAINED_BASE_MODEL)) == path
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp  # cached, not rebuilt

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForCausalLM.from_pretrained(str(path)).eval()
    sentence = build_corpus(read_train_rows(demo_data_config())).sentences[0]
    ids = tokenizer(sentence + tokenizer.eos_token, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        loss = float(model(input_ids=ids, labels=ids).loss)
    # Random weights give about ln(vocab) = 6.2 nats; pre-training took it far below.
    assert loss < 2.0


def test_pretrained_base_on_the_demo_data_split_another_way_is_refused(
    tiny_model_dir: Path,
) -> None:
    from tuneship.config import load_config
    from tuneship.demo import demo_config_path
    from tuneship.validation import check_before_training

    same = load_config(demo_config_path(), ["data.max_length=64"])
    assert check_before_training(same, tiny_model_dir)
    other = load_config(demo_config_path(), ["data.eval_fraction=0.2", "data.seed=1"])
    with pytest.raises(ConfigError, match=r"data\.eval_fraction, data\.seed.*tiny-llama'"):
        check_before_training(other, tiny_model_dir)


def test_summary_states_the_merge_checks_measured_difference() -> None:
    from tuneship.flows.finetune import describe_merge_check
    from tuneship.training import MergeResult

    result = MergeResult(
        merged_dir="m",
        max_abs_logit_diff=1.22e-5,
        tolerance=2e-3,
        checked_rows=4,
        dtype="float32",
        merged=True,
        unmerged_noise=3.1e-6,
        finetune_effect=9.5,
        top1_agreement=1.0,
        base_top1_agreement=0.25,
    )
    assert describe_merge_check(result) == (
        "merged model vs float32 base + adapter: max abs logit difference 1.22e-05 "
        "(tolerance 0.002, float32, 4 rows; unmerged float32 noise 3.1e-06, fine-tune "
        "effect 9.5, top-1 agreement 100.0%, base alone 25.0%)"
    )


@pytest.mark.slow
def test_demo_lora_merge_check_compares_two_computations(tmp_path: Path) -> None:
    """The demo's merge check on a LoRA adapter of the demo base: the merged weights
    (W + BA folded) are scored against base + adapter computed unmerged, in float32.

    Two different computations round differently, so their difference is small but not
    zero; a model compared with itself (the old full fine-tune demo) would give exactly 0.
    """
    from _training_helpers import make_spec

    from tuneship.config import load_config
    from tuneship.demo import demo_config_path
    from tuneship.training import MergeJobSpec
    from tuneship.training.merge import run_merge
    from tuneship.training.train import run_training

    demo = load_config(demo_config_path())
    assert demo.model.base == DEMO_PRETRAINED_BASE_MODEL and demo.training.adapter == "lora"
    base = ensure_pretrained_demo_model()
    spec = make_spec(
        base,
        tmp_path,
        evaluate=False,
        max_steps=4,
        learning_rate=5e-3,
        lora={"r": demo.training.lora.r, "alpha": demo.training.lora.alpha, "dropout": 0.0},
    )
    trained = run_training(spec)
    result = run_merge(
        MergeJobSpec(
            base_model_path=str(base),
            adapter_path=trained.output_path,
            output_dir=str(tmp_path / "merged"),
            eval_path=str(tmp_path / "data" / "eval.jsonl"),
        )
    )

    assert result.merged and result.dtype == "float32"
    # In float32 the unmerged computation is the reference itself, so its noise is 0 ...
    assert result.unmerged_noise == 0.0
    # ... while the merged model is another computation: it differs, within tolerance.
    assert 0.0 < result.max_abs_logit_diff <= result.tolerance
    # The adapter changed the model far beyond that difference, and the merge kept it.
    assert result.finetune_effect > 100 * result.max_abs_logit_diff
    assert result.top1_agreement >= result.base_top1_agreement
