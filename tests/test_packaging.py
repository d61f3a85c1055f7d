"""Model card, model-folder verification and packaging, on the real tiny Llama."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from tuneship.errors import PackagingError
from tuneship.packaging import (
    CardInfo,
    ModelFolderError,
    build_model_card,
    package_model,
    read_base_license,
    verify_model_folder,
)


def _card_info(**overrides: object) -> CardInfo:
    values: dict[str, object] = {
        "repo_id": "acme/tiny-chat",
        "base_model": "acme/tiny-llama",
        "method": "sft",
        "adapter": "lora",
        "datasets": ["acme/chats"],
        "license": "apache-2.0",
        "results": [{"type": "loss", "name": "Eval loss on assistant tokens", "value": 2.5}],
        "eval_loss_name": "loss on assistant tokens",
        "base_eval_loss": 3.25,
        "eval_loss": 2.5,
        "hyperparameters": {"learning_rate": 0.0002, "max_steps": 20},
        "dataset_fingerprint": "f00dfeed",
    }
    values.update(overrides)
    return CardInfo.model_validate(values)


def _shard(folder: Path) -> list[str]:
    """Rewrite ``model.safetensors`` as two shards plus an index, like a big checkpoint."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(folder / "model.safetensors")
    names = sorted(tensors)
    shards = {
        "model-00001-of-00002.safetensors": names[: len(names) // 2],
        "model-00002-of-00002.safetensors": names[len(names) // 2 :],
    }
    weight_map = {}
    for shard, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, folder / shard, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(keys, shard))
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    (folder / "model.safetensors").unlink()
    return list(shards)


# Model card


def test_card_metadata_parses_back(tmp_path: Path) -> None:
    card = build_model_card(_card_info())
    card.save(tmp_path / "README.md")

    loaded = ModelCard.load(tmp_path / "README.md")
    data = loaded.data
    assert data.license == "apache-2.0"
    assert data.base_model == "acme/tiny-llama"
    assert data.library_name == "transformers"
    assert data.pipeline_tag == "text-generation"
    assert data.datasets == ["acme/chats"]
    assert set(data.tags) == {"tuneship", "sft", "lora"}
    results = {(r.metric_type, r.metric_name): r.metric_value for r in data.eval_results}
    assert results == {("loss", "Eval loss on assistant tokens"): 2.5}
    assert all(r.dataset_type == "acme/chats" for r in data.eval_results)
    assert all(r.dataset_revision is None for r in data.eval_results)
    assert "apply_chat_template" in loaded.text
    assert 'model_id = "acme/tiny-chat"' in loaded.text
    assert "vllm serve acme/tiny-chat" in loaded.text
    assert "| Eval loss on assistant tokens | 2.5000 |" in loaded.text
    # The base model's score and the data fingerprint are context: text, not metadata.
    assert "base model's loss on assistant tokens is 3.2500" in loaded.text
    assert "`f00dfeed`" in loaded.text
    assert "3.25" not in data.to_yaml() and "f00dfeed" not in data.to_yaml()


def test_card_never_contains_secrets() -> None:
    secret = "hf_" + "a1B2c3D4e5F6g7H8i9J0kLmN"
    info = _card_info(
        hyperparameters={"hub_token": secret, "notes": f"pushed with {secret}", "lr": 0.1},
    )
    text = str(build_model_card(info))
    assert secret not in text
    assert '"lr": 0.1' in text


def test_card_keeps_local_paths_out_of_hub_metadata(tmp_path: Path) -> None:
    data_file = tmp_path / "private" / "chats.jsonl"
    data_file.parent.mkdir()
    data_file.write_text("{}\n")
    info = _card_info(base_model=str(tmp_path), datasets=[str(data_file)], license=None)
    card = build_model_card(info)

    assert card.data.base_model is None
    assert card.data.datasets is None
    assert str(tmp_path) not in str(card)
    assert "chats.jsonl" not in card.data.to_yaml()
    assert "local data (not on the Hub)" in card.text


def test_read_base_license_from_folder(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("---\nlicense: mit\n---\n# base\n")
    assert read_base_license(tmp_path) == "mit"
    assert read_base_license(tmp_path / "missing") is None
    (tmp_path / "README.md").write_text("# no metadata\n")
    assert read_base_license(tmp_path) is None
    assert read_base_license("nobody/not-cached-model") is None


# Verification


def test_verify_passes_on_tiny_model(tiny_model_copy: Path) -> None:
    report = verify_model_folder(tiny_model_copy)
    assert report.loaded
    assert report.generated is not None
    assert report.weight_files == ["model.safetensors"]
    assert "generation_config eos matches tokenizer eos" in report.checks


def test_verify_passes_on_sharded_model(tiny_model_copy: Path) -> None:
    shards = _shard(tiny_model_copy)
    report = verify_model_folder(tiny_model_copy)
    assert report.weight_files == ["model.safetensors.index.json", *shards]
    assert report.loaded


def test_verify_lists_every_missing_piece(tiny_model_copy: Path) -> None:
    shards = _shard(tiny_model_copy)
    for name in ("tokenizer.json", "chat_template.jinja", "generation_config.json", shards[1]):
        (tiny_model_copy / name).unlink()

    with pytest.raises(PackagingError) as caught:
        verify_model_folder(tiny_model_copy)

    assert isinstance(caught.value, ModelFolderError)
    message = str(caught.value)
    for name in ("tokenizer.json", "chat_template.jinja", "generation_config.json", shards[1]):
        assert name in message, f"{name} not named in:\n{message}"
    assert len(caught.value.problems) == 4


def test_verify_reports_eos_mismatch_and_missing_config(tiny_model_copy: Path) -> None:
    gen_path = tiny_model_copy / "generation_config.json"
    gen = json.loads(gen_path.read_text())
    gen["eos_token_id"] = 2  # </s>, not the tokenizer's <|im_end|>
    gen_path.write_text(json.dumps(gen))
    (tiny_model_copy / "config.json").unlink()

    with pytest.raises(ModelFolderError) as caught:
        verify_model_folder(tiny_model_copy, load_weights=False)

    problems = caught.value.problems
    assert any(p.startswith("generation_config.json") and "<|im_end|>" in p for p in problems)
    assert any(p.startswith("config.json: missing") for p in problems)


def test_verify_load_check_catches_missing_tensor(tiny_model_copy: Path) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(tiny_model_copy / "model.safetensors")
    dropped = next(k for k in sorted(tensors) if k.endswith("norm.weight"))
    del tensors[dropped]
    save_file(tensors, tiny_model_copy / "model.safetensors", metadata={"format": "pt"})

    # Without loading, the file looks fine; loading reveals the missing tensor.
    verify_model_folder(tiny_model_copy, load_weights=False)
    with pytest.raises(ModelFolderError, match="missing keys"):
        verify_model_folder(tiny_model_copy)


# Packaging


@pytest.mark.slow
def test_package_round_trip(tiny_model_copy: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    (tiny_model_copy / "adapter_config.json").write_text("{}")  # must not ship
    (tiny_model_copy / "optimizer.pt").write_bytes(b"state")
    out = tmp_path / "package"

    result = package_model(tiny_model_copy, out, _card_info())

    assert result.path == str(out.resolve())
    assert result.loaded
    assert {"README.md", ".gitattributes", "model.safetensors", "config.json"} <= set(result.files)
    assert "adapter_config.json" not in result.files
    assert "optimizer.pt" not in result.files
    assert result.total_bytes == sum((out / f).stat().st_size for f in result.files)
    assert not list(tmp_path.glob(".package.tmp-*"))

    attributes = (out / ".gitattributes").read_text().splitlines()
    assert "*.safetensors filter=lfs diff=lfs merge=lfs -text" in attributes
    assert "tokenizer.json filter=lfs diff=lfs merge=lfs -text" in attributes
    assert ModelCard.load(out / "README.md").data.license == "apache-2.0"

    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hello there"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    output = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert output.shape[1] > inputs["input_ids"].shape[1]


def test_failed_package_keeps_previous_one(tiny_model_copy: Path, tmp_path: Path) -> None:
    out = tmp_path / "package"
    package_model(tiny_model_copy, out, _card_info(), load_check=False)
    (tiny_model_copy / "generation_config.json").unlink()

    with pytest.raises(ModelFolderError) as caught:
        package_model(tiny_model_copy, out, _card_info(), load_check=False)

    assert str(tiny_model_copy.resolve()) in str(caught.value)
    assert "generation_config.json" in str(caught.value)
    assert (out / "generation_config.json").is_file()
    assert not list(tmp_path.glob(".package.tmp-*"))


def test_package_rejects_missing_source(tmp_path: Path) -> None:
    with pytest.raises(PackagingError, match="not found"):
        package_model(tmp_path / "nope", tmp_path / "out", _card_info())
