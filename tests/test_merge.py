"""Merging adapters into the tiny model, verifying merges, and the job CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _training_helpers import make_spec, write_jsonl
from transformers import AutoModelForCausalLM, AutoTokenizer

import tuneship.training.merge as merge_module
from tuneship.errors import MergeError
from tuneship.training import MergeJobSpec, MergeResult, TrainResult
from tuneship.training.job import PROGRESS_PREFIX, read_job_result, write_spec
from tuneship.training.merge import carry_over_files, run_merge
from tuneship.training.train import run_training

pytestmark = pytest.mark.slow

MESSAGES = [
    {"role": "system", "content": "You are a concise assistant."},
    {"role": "user", "content": "What is 3 plus 4?"},
]


@pytest.fixture(scope="module")
def adapter_run(
    tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, TrainResult, str]:
    """A LoRA adapter trained hard enough to change the logits a lot."""
    tmp = tmp_path_factory.mktemp("adapter")
    spec = make_spec(tiny_model_dir, tmp, evaluate=False, max_steps=4, learning_rate=5e-3)
    assert spec.eval_path is None
    return tiny_model_dir, run_training(spec), str(tmp / "data" / "eval.jsonl")


def _merge_spec(
    adapter_run: tuple[Path, TrainResult, str], out: Path, **kw: object
) -> MergeJobSpec:
    base, result, eval_path = adapter_run
    values: dict[str, object] = {
        "base_model_path": str(base),
        "adapter_path": result.output_path,
        "output_dir": str(out),
        "eval_path": eval_path,
        **kw,
    }
    return MergeJobSpec.model_validate(values)


def _chat_logits(model_dir: Path | str) -> torch.Tensor:
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    ids = tokenizer(tokenizer.apply_chat_template(MESSAGES, tokenize=False), return_tensors="pt")
    with torch.inference_mode():
        return model(**ids).logits


def test_merge_matches_base_plus_adapter(
    adapter_run: tuple[Path, TrainResult, str], tmp_path: Path
) -> None:
    out = tmp_path / "merged"
    result = run_merge(_merge_spec(adapter_run, out))

    assert isinstance(result, MergeResult) and result.merged
    assert result.merged_dir == str(out)
    assert result.dtype == "float32" and result.checked_rows == 4
    assert 0.0 <= result.max_abs_logit_diff <= result.tolerance
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
        "generation_config.json",
    ):
        assert (out / name).is_file(), name
    assert not list(tmp_path.glob(".*partial"))
    # The check has teeth: the adapter moves the logits far more than the tolerance.
    shift = (_chat_logits(out) - _chat_logits(adapter_run[0])).abs().max().item()
    assert shift > 20 * result.tolerance


def test_merged_model_loads_chats_and_generates(
    adapter_run: tuple[Path, TrainResult, str], tmp_path: Path
) -> None:
    out = tmp_path / "merged"
    run_merge(_merge_spec(adapter_run, out))
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    model = AutoModelForCausalLM.from_pretrained(str(out))
    base_tokenizer = AutoTokenizer.from_pretrained(str(adapter_run[0]))
    assert tokenizer.chat_template == base_tokenizer.chat_template
    assert tokenizer.eos_token == "<|im_end|>"
    eos = model.generation_config.eos_token_id
    assert tokenizer.eos_token_id in (eos if isinstance(eos, list) else [eos])

    prompt = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    assert prompt.endswith("<|im_start|>assistant\n")
    inputs = tokenizer(prompt, return_tensors="pt")
    generated = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    assert generated.shape[1] > inputs["input_ids"].shape[1]
    assert isinstance(tokenizer.decode(generated[0]), str)


def test_corrupted_merge_is_caught(
    adapter_run: tuple[Path, TrainResult, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_merge = merge_module.merge_adapter

    def corrupt_merge(model: object) -> object:
        merged = real_merge(model)
        with torch.no_grad():
            merged.model.layers[0].mlp.down_proj.weight.add_(0.05)  # type: ignore[attr-defined]
        return merged

    monkeypatch.setattr(merge_module, "merge_adapter", corrupt_merge)
    out = tmp_path / "merged"
    out.mkdir()
    (out / "config.json").write_text("{}")  # a stale earlier merge must not survive
    with pytest.raises(MergeError, match=r"max abs logit difference .* > tolerance"):
        run_merge(_merge_spec(adapter_run, out))
    assert not out.exists()
    assert not list(tmp_path.glob(".*partial"))


def test_bf16_sharded_merge(adapter_run: tuple[Path, TrainResult, str], tmp_path: Path) -> None:
    out = tmp_path / "merged"
    result = run_merge(_merge_spec(adapter_run, out, dtype="bfloat16", max_shard_size="300KB"))
    assert result.dtype == "bfloat16"
    assert result.max_abs_logit_diff <= result.tolerance
    assert (out / "model.safetensors.index.json").is_file()
    assert len(list(out.glob("model-*.safetensors"))) > 1
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    model = AutoModelForCausalLM.from_pretrained(str(out))
    assert model.dtype == torch.bfloat16


def test_merge_needs_an_adapter_folder(
    adapter_run: tuple[Path, TrainResult, str], tmp_path: Path
) -> None:
    spec = _merge_spec(adapter_run, tmp_path / "merged", adapter_path=str(adapter_run[0]))
    with pytest.raises(MergeError, match=r"no adapter_config\.json"):
        run_merge(spec)


def test_full_model_export(tiny_model_dir: Path, tmp_path: Path) -> None:
    spec = make_spec(tiny_model_dir, tmp_path, adapter="full", evaluate=False, max_steps=1)
    trained = run_training(spec)
    out = tmp_path / "merged"
    result = run_merge(
        MergeJobSpec(
            base_model_path=str(tiny_model_dir),
            adapter_path=trained.output_path,
            output_dir=str(out),
            is_adapter=False,
            train_path=spec.train_path,
        )
    )
    assert not result.merged and result.checked_rows == 4
    assert result.max_abs_logit_diff <= result.tolerance
    assert (out / "chat_template.jinja").is_file() and (out / "generation_config.json").is_file()
    assert AutoTokenizer.from_pretrained(str(out)).chat_template
    # The export is the trained model, not the base.
    assert (_chat_logits(out) - _chat_logits(tiny_model_dir)).abs().max().item() > 1e-4


def test_carry_over_adds_tokenizer_eos_to_generation_config(
    tiny_model_copy: Path, tmp_path: Path
) -> None:
    config_file = tiny_model_copy / "generation_config.json"
    config = json.loads(config_file.read_text())
    config["eos_token_id"] = 2  # "</s>", while the tokenizer ends turns with <|im_end|>
    config_file.write_text(json.dumps(config))
    dest = tmp_path / "dest"
    dest.mkdir()
    carry_over_files(tiny_model_copy, dest)
    eos = json.loads((dest / "generation_config.json").read_text())["eos_token_id"]
    tokenizer = AutoTokenizer.from_pretrained(str(dest))
    assert eos == [tokenizer.eos_token_id, 2]
    assert (dest / "chat_template.jinja").read_text() == (
        tiny_model_copy / "chat_template.jinja"
    ).read_text()


def test_job_cli_train_then_merge(tiny_model_dir: Path, tmp_path: Path) -> None:
    spec = make_spec(tiny_model_dir, tmp_path, evaluate=False, max_steps=2)
    spec_file = write_spec(spec, tmp_path / "train-spec.json")
    progress_file = tmp_path / "progress.jsonl"
    result_file = tmp_path / "train-result.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tuneship.training.job",
            "train",
            str(spec_file),
            str(result_file),
            "--progress-file",
            str(progress_file),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    trained = read_job_result(result_file, "train")
    assert isinstance(trained, TrainResult) and trained.global_step == 2
    assert PROGRESS_PREFIX in proc.stdout
    assert json.loads(progress_file.read_text().splitlines()[-1])["step"] == 2

    write_jsonl(tmp_path / "rows.jsonl", [{"prompt": "Q: 1 plus 1?\nA: ", "completion": "2"}])
    merge_spec = MergeJobSpec(
        base_model_path=str(tiny_model_dir),
        adapter_path=trained.output_path,
        output_dir=str(tmp_path / "merged"),
        train_path=str(tmp_path / "rows.jsonl"),
    )
    merge_file = write_spec(merge_spec, tmp_path / "merge-spec.json")
    merge_result_file = tmp_path / "merge-result.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tuneship.training.job",
            "merge",
            str(merge_file),
            str(merge_result_file),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    merged = read_job_result(merge_result_file, "merge")
    assert isinstance(merged, MergeResult) and merged.checked_rows == 1
    assert (Path(merged.merged_dir) / "config.json").is_file()
