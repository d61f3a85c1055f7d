"""Fast tests of the training stage: pre-flight checks, series, checkpoints, job files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from _training_helpers import make_spec, write_jsonl

from tuneship.errors import MergeError, TrainingError
from tuneship.training import TrainJobSpec, check_training_spec, downsample_series
from tuneship.training.job import main, read_job_result
from tuneship.training.train import find_latest_checkpoint


def _with(spec: TrainJobSpec, **changes: object) -> TrainJobSpec:
    return TrainJobSpec.model_validate({**spec.model_dump(), **changes})


def _with_training(spec: TrainJobSpec, **changes: object) -> TrainJobSpec:
    training = {**spec.training.model_dump(exclude_unset=True), **changes}
    return _with(spec, training=training)


# --- downsample_series -------------------------------------------------------------


def test_downsample_keeps_short_series_unchanged() -> None:
    points = [(i, float(i) / 2) for i in range(1, 51)]
    assert downsample_series(points, max_points=200) == points


def test_downsample_caps_points_and_keeps_ends() -> None:
    points = [(i, 1.0 / i) for i in range(1, 1001)]
    out = downsample_series(points, max_points=200)
    assert len(out) == 200
    assert out[0] == points[0]
    assert out[-1] == points[-1]
    steps = [s for s, _ in out]
    assert steps == sorted(set(steps))  # strictly increasing: no repeats
    assert all(points[s - 1] == (s, v) for s, v in out)  # values stay with their steps


def test_downsample_spreads_points_evenly() -> None:
    out = downsample_series([(i, 0.0) for i in range(1001)], max_points=11)
    assert [s for s, _ in out] == list(range(0, 1001, 100))


def test_downsample_rejects_too_few_points() -> None:
    with pytest.raises(ValueError, match="max_points"):
        downsample_series([(1, 1.0)], max_points=1)


def test_downsample_empty() -> None:
    assert downsample_series([]) == []


# --- check_training_spec -----------------------------------------------------------


def test_valid_spec_passes(tiny_model_dir: Path, tmp_path: Path) -> None:
    check_training_spec(make_spec(tiny_model_dir, tmp_path))


def test_qlora_on_cpu_rejected_before_model_loads(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import transformers

    from tuneship.training.train import run_training

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model must not load for a spec that cannot work")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)
    spec = make_spec(tiny_model_dir, tmp_path, adapter="qlora")
    with pytest.raises(TrainingError, match=r"training\.adapter=qlora needs a CUDA GPU"):
        run_training(spec)
    assert not Path(spec.output_dir).exists()


def test_eval_on_without_eval_path(tiny_model_dir: Path, tmp_path: Path) -> None:
    spec = _with(make_spec(tiny_model_dir, tmp_path), eval_path=None)
    with pytest.raises(TrainingError, match="eval_path"):
        check_training_spec(spec)


def test_eval_off_needs_no_eval_set(tiny_model_dir: Path, tmp_path: Path) -> None:
    check_training_spec(make_spec(tiny_model_dir, tmp_path, evaluate=False))


@pytest.mark.parametrize("method", ["dpo", "orpo"])
def test_preference_methods_need_preference_rows(
    tiny_model_dir: Path, tmp_path: Path, method: str
) -> None:
    spec = make_spec(tiny_model_dir, tmp_path, method=method)
    with pytest.raises(TrainingError, match=f"training.method={method} needs preference rows"):
        check_training_spec(spec)


def test_sft_rejects_preference_format(tiny_model_dir: Path, tmp_path: Path) -> None:
    spec = make_spec(tiny_model_dir, tmp_path, fmt="preference")
    with pytest.raises(TrainingError, match="trainer_format='preference'"):
        check_training_spec(spec)


def test_rows_must_match_trainer_format(tiny_model_dir: Path, tmp_path: Path) -> None:
    spec = make_spec(tiny_model_dir, tmp_path)
    write_jsonl(Path(spec.train_path), [{"text": "hello"}])
    with pytest.raises(TrainingError, match=r"train_path: first row .* has keys \['text'\]"):
        check_training_spec(spec)


def test_bad_json_line_named(tiny_model_dir: Path, tmp_path: Path) -> None:
    spec = make_spec(tiny_model_dir, tmp_path)
    Path(spec.eval_path or "").write_text("{not json\n", encoding="utf-8")
    with pytest.raises(TrainingError, match=r"eval\.jsonl:1: not valid JSON"):
        check_training_spec(spec)


def test_missing_model_config(tiny_model_copy: Path, tmp_path: Path) -> None:
    (tiny_model_copy / "config.json").unlink()
    with pytest.raises(TrainingError, match=r"model_path: .* has no config\.json"):
        check_training_spec(make_spec(tiny_model_copy, tmp_path))


def test_missing_tokenizer(tiny_model_copy: Path, tmp_path: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (tiny_model_copy / name).unlink()
    with pytest.raises(TrainingError, match="has no tokenizer files"):
        check_training_spec(make_spec(tiny_model_copy, tmp_path))


def test_chat_data_needs_chat_template(tiny_model_copy: Path, tmp_path: Path) -> None:
    (tiny_model_copy / "chat_template.jinja").unlink()
    config = json.loads((tiny_model_copy / "tokenizer_config.json").read_text())
    assert "chat_template" not in config
    with pytest.raises(TrainingError, match="no chat template"):
        check_training_spec(make_spec(tiny_model_copy, tmp_path))
    # Plain-string rows need no template.
    check_training_spec(make_spec(tiny_model_copy, tmp_path / "pc", fmt="prompt_completion"))


def test_cuda_without_gpu(tiny_model_dir: Path, tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    spec = _with(make_spec(tiny_model_dir, tmp_path), device="cuda")
    with pytest.raises(TrainingError, match="device=cuda"):
        check_training_spec(spec)


def test_bad_max_steps_and_resume_path(tiny_model_dir: Path, tmp_path: Path) -> None:
    spec = make_spec(tiny_model_dir, tmp_path)
    # max_steps: 0 never reaches the model: the config refuses it when it is loaded.
    from tuneship.config import load_config
    from tuneship.errors import ConfigError

    with pytest.raises(ConfigError, match=r"training\.max_steps"):
        load_config(None, ["training.max_steps=0"])
    with pytest.raises(TrainingError, match="resume_from_checkpoint: checkpoint folder not found"):
        check_training_spec(_with_training(spec, resume_from_checkpoint=str(tmp_path / "nope")))


# --- checkpoints and job files -----------------------------------------------------


def test_find_latest_checkpoint(tmp_path: Path) -> None:
    assert find_latest_checkpoint(tmp_path / "missing") is None
    assert find_latest_checkpoint(tmp_path) is None
    for step in (2, 10, 9):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-11").mkdir()  # incomplete: no trainer_state.json
    (tmp_path / "checkpoint-x").mkdir()
    assert find_latest_checkpoint(tmp_path) == tmp_path / "checkpoint-10"
    shutil.rmtree(tmp_path / "checkpoint-10")
    assert find_latest_checkpoint(tmp_path) == tmp_path / "checkpoint-9"


def test_job_cli_reports_spec_errors(tiny_model_dir: Path, tmp_path: Path) -> None:
    spec = make_spec(tiny_model_dir, tmp_path, adapter="qlora")
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(spec.model_dump_json())
    result_file = tmp_path / "result.json"
    assert main(["train", str(spec_file), str(result_file)]) == 1
    assert json.loads(result_file.read_text())["error_type"] == "TrainingError"
    with pytest.raises(TrainingError, match="qlora needs a CUDA GPU"):
        read_job_result(result_file, "train")


def test_job_cli_rejects_invalid_spec_file(tmp_path: Path) -> None:
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps({"base_model_path": "x", "bogus": 1}))
    result_file = tmp_path / "result.json"
    assert main(["merge", str(spec_file), str(result_file)]) == 1
    with pytest.raises(MergeError, match="cannot read merge spec"):
        read_job_result(result_file, "merge")
    with pytest.raises(MergeError, match="no result file"):
        read_job_result(tmp_path / "absent.json", "merge")


def test_report_to_needs_the_integration_installed(tiny_model_dir: Path, tmp_path: Path) -> None:
    spec = make_spec(tiny_model_dir, tmp_path, report_to=["no-such-tracker"])
    with pytest.raises(TrainingError, match=r"training\.report_to: no-such-tracker not installed"):
        check_training_spec(spec)
