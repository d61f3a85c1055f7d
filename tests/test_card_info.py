"""What a run's model card says: this model's results, applied settings, where it loads from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from huggingface_hub import ModelCard, ModelCardData

from tuneship.config import build_config
from tuneship.packaging import build_model_card
from tuneship.packaging.card_info import build_card_info
from tuneship.training.specs import TrainResult


def _config(tmp_path: Path, data_path: str, **training: Any) -> Any:
    return build_config(
        {
            "name": "card-run",
            "model": {"base": "acme/tiny-base"},
            "data": {"path": data_path},
            "training": {"max_steps": 3, **training},
            "publish": {"target": "local", "repo_id": "acme/tiny-ft"},
        }
    )


def _trained(method: str, adapter: str, **values: Any) -> TrainResult:
    return TrainResult.model_validate(
        {
            "output_path": "/tmp/x",
            "is_adapter": adapter != "full",
            "method": method,
            "adapter": adapter,
            "global_step": 3,
            "base_eval_loss": 3.5,
            "eval_loss": 1.25,
            **values,
        }
    )


def _written_card(tmp_path: Path, config: Any, trained: TrainResult, fmt: str) -> ModelCard:
    info = build_card_info(
        config,
        trained,
        trainer_format=fmt,
        dataset_fingerprint="ab" * 32,
        base_label="acme/tiny-base",
        license="apache-2.0",
        version="0.0-test",
    )
    build_model_card(info).save(tmp_path / "README.md")
    card = ModelCard.load(tmp_path / "README.md")
    assert isinstance(card.data, ModelCardData)
    return card


def test_sft_full_fine_tune_on_local_data(tmp_path: Path) -> None:
    data = tmp_path / "chats.jsonl"
    data.write_text("{}\n")
    config = _config(tmp_path, str(data), adapter="full")
    card = _written_card(tmp_path, config, _trained("sft", "full"), "messages")
    meta = card.data.to_dict()

    # Only this model's eval loss, named for the tokens it covers; no base score.
    assert [(r.metric_type, r.metric_name, r.metric_value) for r in card.data.eval_results] == [
        ("loss", "Eval loss on assistant tokens", 1.25)
    ]
    # Local data: no datasets metadata, no file name or hash as dataset type/name/revision.
    assert "datasets" not in meta
    for result in card.data.eval_results:
        assert "chats.jsonl" not in result.dataset_type + result.dataset_name
        assert result.dataset_revision is None
    yaml = card.data.to_yaml()
    assert "ab" * 32 not in yaml and "3.5" not in yaml and "chats.jsonl" not in yaml
    # ...but in the text.
    assert "ab" * 32 in card.text and "3.5000" in card.text
    # A full fine-tune lists no LoRA or quantisation settings.
    assert "lora_" not in card.text and "quantization" not in card.text
    assert '"train_on_inputs": false' in card.text
    # Published locally: the snippet loads the store's current revision, not a repo id.
    repo = config.store_dir().resolve() / "acme" / "tiny-ft"
    assert f'repo = Path("{repo}")' in card.text
    assert 'model_id = "acme/tiny-ft"' not in card.text
    assert f'vllm serve "{repo}/revisions/$(cat {repo}/refs/main)"' in card.text


def test_dpo_qlora_from_hub_data(tmp_path: Path) -> None:
    config = _config(tmp_path, "acme/prefs", method="dpo", adapter="qlora")
    config.publish.target = "hub"
    trained = _trained(
        "dpo",
        "qlora",
        eval_loss=0.41,
        base_eval_loss=0.6931,
        eval_metrics={
            "eval_loss": 0.41,
            "eval_rewards/accuracies": 0.75,
            "eval_rewards/margins": 0.9,
        },
    )
    card = _written_card(tmp_path, config, trained, "preference")

    assert card.data.datasets == ["acme/prefs"]
    results = {(r.metric_type, r.metric_name): r.metric_value for r in card.data.eval_results}
    assert results == {
        ("accuracy", "Eval DPO reward accuracy (chosen preferred over rejected)"): 0.75,
        ("reward_margin", "Eval DPO reward margin (chosen minus rejected)"): 0.9,
    }
    assert all(r.dataset_type == "acme/prefs" for r in card.data.eval_results)
    assert "DPO loss is 0.6931" in card.text
    assert '"lora_r": 16' in card.text and '"beta": 0.1' in card.text
    assert "4-bit NF4" in card.text and "train_on_inputs" not in card.text
    assert 'model_id = "acme/tiny-ft"' in card.text


@pytest.mark.parametrize(
    ("fmt", "train_on_inputs", "name"),
    [
        ("prompt_completion", False, "Eval loss on completion tokens"),
        ("messages", True, "Eval loss on all tokens"),
    ],
)
def test_sft_loss_named_for_its_tokens(
    tmp_path: Path, fmt: str, train_on_inputs: bool, name: str
) -> None:
    config = _config(tmp_path, "acme/chats", train_on_inputs=train_on_inputs)
    card = _written_card(tmp_path, config, _trained("sft", "lora"), fmt)
    assert [r.metric_name for r in card.data.eval_results] == [name]
    assert "quantization" not in card.text and '"lora_alpha": 32' in card.text
