"""Small data files and specs for the training and merge tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tuneship.config import TrainingConfig
from tuneship.demo.tiny_model import sample_data_path
from tuneship.training.specs import TrainJobSpec


def sample_rows(n: int, offset: int = 0) -> list[dict[str, Any]]:
    """Return ``n`` messages rows of the shipped sample, starting at ``offset``."""
    lines = sample_data_path().read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines[offset : offset + n]]


def to_prompt_completion(row: dict[str, Any]) -> dict[str, Any]:
    """Turn a messages row into a prompt/completion row of plain strings."""
    user = row["messages"][1]["content"]
    answer = row["messages"][2]["content"]
    return {"prompt": f"Q: {user}\nA: ", "completion": answer}


def to_preference(row: dict[str, Any], conversational: bool) -> dict[str, Any]:
    """Turn a messages row into a preference row whose rejected answer is wrong."""
    answer = row["messages"][2]["content"]
    wrong = answer.rsplit(" ", 1)[0] + " 99."
    if conversational:
        return {
            "prompt": row["messages"][:2],
            "chosen": [{"role": "assistant", "content": answer}],
            "rejected": [{"role": "assistant", "content": wrong}],
        }
    return {
        "prompt": f"Q: {row['messages'][1]['content']}\nA: ",
        "chosen": answer,
        "rejected": wrong,
    }


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Write rows as JSONL and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def write_data(
    folder: Path, fmt: str, n_train: int = 8, n_eval: int = 4, conversational: bool = True
) -> tuple[Path, Path]:
    """Write train and eval JSONL files in the given trainer format."""
    train, evals = sample_rows(n_train), sample_rows(n_eval, offset=n_train)
    if fmt == "prompt_completion":
        train, evals = (
            [to_prompt_completion(r) for r in train],
            [to_prompt_completion(r) for r in evals],
        )
    elif fmt == "preference":
        train = [to_preference(r, conversational) for r in train]
        evals = [to_preference(r, conversational) for r in evals]
    return write_jsonl(folder / "train.jsonl", train), write_jsonl(folder / "eval.jsonl", evals)


def make_spec(
    model_dir: Path,
    tmp: Path,
    *,
    fmt: str = "messages",
    conversational: bool = True,
    evaluate: bool = True,
    n_train: int = 8,
    n_eval: int = 4,
    max_length: int = 64,
    **training: Any,
) -> TrainJobSpec:
    """Build a small, fast training spec on the tiny model."""
    train_path, eval_path = write_data(tmp / "data", fmt, n_train, n_eval, conversational)
    values: dict[str, Any] = {
        "max_steps": 2,
        "per_device_train_batch_size": 2,
        "per_device_eval_batch_size": 2,
        "learning_rate": 1e-3,
        "logging_steps": 1,
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
    }
    if evaluate:
        values.update(eval_strategy="steps", eval_steps=1)
    else:
        values.update(eval_strategy="no")
    values.update(training)
    return TrainJobSpec(
        model_path=str(model_dir),
        train_path=str(train_path),
        eval_path=str(eval_path) if evaluate else None,
        trainer_format=fmt,  # type: ignore[arg-type]
        output_dir=str(tmp / "out"),
        training=TrainingConfig.model_validate(values),
        max_length=max_length,
    )
