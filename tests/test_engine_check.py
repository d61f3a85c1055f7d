"""The vLLM load check against a real engine: a served model that is not the packaged one
fails with both answers."""

from __future__ import annotations

from pathlib import Path

import pytest
from _serving_helpers import engine_python_or_skip, tiny_serve_options

pytestmark = pytest.mark.slow


def test_engine_serving_the_untrained_model_fails_the_check_with_both_answers(
    tmp_path: Path,
) -> None:
    """vLLM serves the demo base *before* pre-training (same tokenizer, random weights)
    while transformers scores the pre-trained one: the wrong served model is caught."""
    from tuneship.demo.pretrained import (
        PretrainRecipe,
        build_corpus,
        demo_data_config,
        ensure_pretrained_demo_model,
        read_train_rows,
    )
    from tuneship.demo.tiny_model import build_tiny_model
    from tuneship.serving import managed_deployment
    from tuneship.serving.engine_check import (
        EngineMismatchError,
        ReferenceModel,
        check_prompts,
        compare_with_engine,
        raise_on_mismatch,
    )

    engine = engine_python_or_skip()
    trained = ensure_pretrained_demo_model()
    corpus = build_corpus(read_train_rows(demo_data_config()))
    untrained = build_tiny_model(
        tmp_path / "untrained", seed=PretrainRecipe().seed, texts=corpus.tokenizer_texts
    )
    reference = ReferenceModel(trained)
    chats = check_prompts("What is 4 plus 16?", "You are a concise assistant.", None)
    with managed_deployment(untrained, tiny_serve_options(engine), name="wrong-model") as info:
        comparisons = compare_with_engine(
            reference, chats, info.url, info.api_key, info.served_model_name
        )

    with pytest.raises(EngineMismatchError) as caught:
        raise_on_mismatch(comparisons, "float32")
    message = str(caught.value)
    (comparison,) = comparisons
    assert comparison.engine_answer != comparison.reference_answer
    assert repr(comparison.engine_answer) in message
    assert repr(comparison.reference_answer) in message
    assert "likely cause" in message
