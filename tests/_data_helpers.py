"""Helpers for the data tests: row builders, writers and a prepare_dataset shortcut."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from tuneship.config import DataConfig, TrainingMethod
from tuneship.data import PreparedData, prepare_dataset


def chat_row(i: int) -> dict[str, Any]:
    """A TRL conversational row numbered ``i``."""
    return {
        "messages": [
            {"role": "user", "content": f"question {i}"},
            {"role": "assistant", "content": f"answer {i}"},
        ]
    }


def chat_rows(n: int, start: int = 0) -> list[dict[str, Any]]:
    """``n`` numbered conversational rows."""
    return [chat_row(i) for i in range(start, start + n)]


def pref_row(i: int) -> dict[str, Any]:
    """A string preference row numbered ``i``."""
    return {"prompt": f"question {i}", "chosen": f"good {i}", "rejected": f"bad {i}"}


def write_jsonl(path: Path, rows: list[Any], gz: bool = False) -> Path:
    """Write rows as JSON Lines (gzipped when ``gz``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read a JSONL file written by prepare_dataset."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def prepare(
    tmp_path: Path,
    path: str | Path,
    method: TrainingMethod = "sft",
    evaluate: bool = False,
    tokenizer: Any = None,
    out: str = "prepared",
    **data: Any,
) -> PreparedData:
    """Run prepare_dataset on ``path`` with DataConfig overrides, writing under tmp_path."""
    config = DataConfig(path=str(path), **data)
    return prepare_dataset(config, method, evaluate, tmp_path / out, tokenizer)
