"""Training runs on the tiny model: SFT, DPO, ORPO, full fine-tune, resume, improvement."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest
from _training_helpers import make_spec, sample_rows, write_jsonl
from transformers import TrainerCallback

from tuneship.training import TrainJobSpec, TrainProgress, TrainResult
from tuneship.training.train import run_training

pytestmark = pytest.mark.slow


class ArgsSpy(TrainerCallback):
    """Records the TrainingArguments and eval dataset the trainer really used."""

    def __init__(self) -> None:
        self.args: Any = None
        self.saw_eval = False

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.args = args

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.saw_eval = True


def _run(spec: TrainJobSpec) -> tuple[TrainResult, ArgsSpy, list[TrainProgress]]:
    spy = ArgsSpy()
    reports: list[TrainProgress] = []
    result = run_training(spec, on_progress=reports.append, callbacks=[spy])
    return result, spy, reports


def _assert_eval_args(spy: ArgsSpy, eval_batch: int) -> None:
    assert spy.saw_eval
    assert spy.args.eval_strategy == "steps"
    assert spy.args.per_device_eval_batch_size == eval_batch
    assert spy.args.load_best_model_at_end is True
    assert spy.args.metric_for_best_model == "eval_loss"
    assert spy.args.greater_is_better is False
    assert spy.args.report_to in ([], "none", ["none"])
    assert spy.args.bf16 is False and spy.args.fp16 is False


def _assert_no_eval(result: TrainResult, spy: ArgsSpy) -> None:
    assert spy.args.eval_strategy == "no"
    assert spy.args.load_best_model_at_end is False
    assert not spy.saw_eval
    assert result.base_eval_loss is None and result.eval_loss is None
    assert result.eval_loss_history == []


def _assert_adapter_saved(result: TrainResult) -> None:
    out = Path(result.output_path)
    assert result.is_adapter
    assert (out / "adapter_config.json").is_file()
    assert (out / "adapter_model.safetensors").is_file()
    assert (out / "tokenizer.json").is_file()
    assert not (out / "model.safetensors").exists()


def test_sft_with_eval(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PYTORCH_CUDA_ALLOC_CONF", raising=False)
    spec = make_spec(tiny_model_dir, tmp_path, per_device_eval_batch_size=3)
    result, spy, reports = _run(spec)

    assert os.environ["PYTORCH_CUDA_ALLOC_CONF"] == "expandable_segments:True"
    _assert_eval_args(spy, eval_batch=3)
    _assert_adapter_saved(result)
    assert (result.method, result.adapter, result.global_step) == ("sft", "lora", 2)
    assert result.base_eval_loss is not None and result.eval_loss is not None
    assert math.isfinite(result.base_eval_loss) and math.isfinite(result.eval_loss)
    assert result.eval_loss != pytest.approx(result.base_eval_loss, abs=1e-6)
    assert result.best_checkpoint and Path(result.best_checkpoint).is_dir()
    assert [s for s, _ in result.loss_history] == [1, 2]
    assert [s for s, _ in result.eval_loss_history] == [1, 2]
    # The final eval is of the best checkpoint, which has the lowest eval loss seen.
    assert result.eval_loss == pytest.approx(min(v for _, v in result.eval_loss_history))
    assert reports and reports[-1].step == 2 and reports[-1].max_steps == 2
    assert "loss" in reports[-1].logs
    assert json.loads(result.model_dump_json())["output_path"] == result.output_path


def test_sft_prompt_completion_without_eval(tiny_model_dir: Path, tmp_path: Path) -> None:
    spec = make_spec(tiny_model_dir, tmp_path, fmt="prompt_completion", evaluate=False)
    assert spec.eval_path is None
    result, spy, _ = _run(spec)
    _assert_no_eval(result, spy)
    _assert_adapter_saved(result)
    assert result.global_step == 2
    assert result.train_loss is not None and math.isfinite(result.train_loss)


@pytest.mark.parametrize("method", ["dpo", "orpo"])
def test_preference_with_eval(tiny_model_dir: Path, tmp_path: Path, method: str) -> None:
    spec = make_spec(
        tiny_model_dir, tmp_path, fmt="preference", method=method, max_steps=3, eval_steps=3
    )
    result, spy, _ = _run(spec)
    _assert_eval_args(spy, eval_batch=2)
    _assert_adapter_saved(result)
    assert (result.method, result.global_step) == (method, 3)
    assert result.base_eval_loss is not None and result.eval_loss is not None
    if method == "dpo":
        # The untrained adapter is the identity, so policy == reference: loss is ln 2.
        assert result.base_eval_loss == pytest.approx(math.log(2), abs=1e-4)
    assert result.eval_loss < result.base_eval_loss


@pytest.mark.parametrize("method", ["dpo", "orpo"])
def test_preference_without_eval_on_string_rows(
    tiny_model_dir: Path, tmp_path: Path, method: str
) -> None:
    spec = make_spec(
        tiny_model_dir,
        tmp_path,
        fmt="preference",
        conversational=False,
        evaluate=False,
        method=method,
    )
    result, spy, _ = _run(spec)
    _assert_no_eval(result, spy)
    _assert_adapter_saved(result)
    assert result.global_step == 2


def test_full_fine_tune(tiny_model_dir: Path, tmp_path: Path) -> None:
    spec = make_spec(tiny_model_dir, tmp_path, adapter="full", learning_rate=1e-4)
    result, spy, _ = _run(spec)
    out = Path(result.output_path)
    assert not result.is_adapter and result.adapter == "full"
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    assert not (out / "adapter_config.json").exists()
    assert result.base_eval_loss is not None and result.eval_loss is not None
    assert spy.args.load_best_model_at_end is True


def test_resume_continues_steps(tiny_model_dir: Path, tmp_path: Path) -> None:
    first = make_spec(
        tiny_model_dir,
        tmp_path,
        evaluate=False,
        save_strategy="steps",
        save_steps=2,
        resume_from_checkpoint="auto",
    )
    result1, _, _ = _run(first)
    assert result1.resumed_from is None
    assert any("started fresh" in note for note in result1.notes)
    checkpoint = Path(first.output_dir) / "checkpoint-2"
    assert (checkpoint / "trainer_state.json").is_file()

    second = TrainJobSpec.model_validate(
        {**first.model_dump(), "training": {**first.training.model_dump(), "max_steps": 4}}
    )
    result2, _, reports = _run(second)
    assert result2.resumed_from == str(checkpoint)
    assert result2.global_step == 4
    assert min(r.step for r in reports) > 2  # no step was trained twice
    assert [s for s, _ in result2.loss_history] == [1, 2, 3, 4]  # history carried over
    assert result2.notes == []


def test_sft_improves_eval_loss(tiny_model_dir: Path, tmp_path: Path) -> None:
    rows = sample_rows(64)
    spec = make_spec(
        tiny_model_dir,
        tmp_path,
        max_steps=40,
        eval_steps=20,
        learning_rate=2e-3,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=8,
        logging_steps=5,
        lora={"r": 16, "alpha": 32, "dropout": 0.0},
    )
    write_jsonl(Path(spec.train_path), rows[:48])
    write_jsonl(Path(spec.eval_path or ""), rows[48:])
    result, _, _ = _run(spec)
    assert result.base_eval_loss is not None and result.eval_loss is not None
    assert result.eval_loss < result.base_eval_loss - 0.5
    assert result.loss_history[0][0] == 1 and result.loss_history[-1][0] == 40
    assert result.loss_history[-1][1] < result.loss_history[0][1]


def test_trainer_args_and_report_to_reach_the_trainer(tiny_model_dir: Path, tmp_path: Path) -> None:
    spec = make_spec(
        tiny_model_dir,
        tmp_path,
        evaluate=False,
        lr_scheduler_type="cosine",
        report_to=["tensorboard"],
        lora={"r": 4, "alpha": 8, "dropout": 0.0},
        trainer_args={"weight_decay": 0.05, "optim": "adamw_torch", "max_grad_norm": 0.5},
    )
    result, spy, _ = _run(spec)
    assert result.global_step == 2
    args = spy.args
    assert (args.weight_decay, args.optim, args.max_grad_norm) == (0.05, "adamw_torch", 0.5)
    assert args.lr_scheduler_type == "cosine"
    assert args.report_to == ["tensorboard"]
    # training.lora.r reaches PEFT through peft_lora_config alone.
    adapter = json.loads((Path(result.output_path) / "adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"]) == (4, 8)
    events = list((Path(spec.output_dir) / "runs").rglob("events.out.tfevents.*"))
    assert events and all(e.stat().st_size > 0 for e in events)
