"""Read the JSONL rows the data stage wrote and describe their shape.

Rows are ``{"messages": [...]}`` or ``{"prompt", "completion"}`` for SFT and
``{"prompt", "chosen", "rejected"}`` for preference training; each text field is a
string or a list of chat messages. TRL consumes all of these natively.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tuneship.errors import TrainingError


def iter_rows(path: str | Path, field: str = "train_path") -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, row)`` for each non-blank line of a JSONL file.

    Args:
        path: The JSONL file.
        field: The spec field that named the file, for error messages.

    Raises:
        TrainingError: The file is missing, or a line is not a JSON object.
    """
    file = Path(path)
    if not file.is_file():
        raise TrainingError(f"{field}: file not found: {file}")
    with file.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TrainingError(f"{file}:{number}: not valid JSON: {exc.msg}") from None
            if not isinstance(row, dict):
                raise TrainingError(f"{file}:{number}: expected a JSON object per line")
            yield number, row


def read_rows(path: str | Path, field: str = "train_path", limit: int | None = None) -> list[dict]:
    """Read up to ``limit`` rows of a JSONL file (all when ``limit`` is None)."""
    rows: list[dict] = []
    for _, row in iter_rows(path, field):
        rows.append(row)
        if limit is not None and len(rows) >= limit:
            break
    return rows


def is_conversational(row: dict[str, Any]) -> bool:
    """Whether a row holds chat messages (so it needs the tokenizer's chat template)."""
    return any(
        isinstance(row.get(key), list) for key in ("messages", "prompt", "completion", "chosen")
    )


def render_row_text(row: dict[str, Any], tokenizer: Any) -> str:
    """Render a row as the text a causal LM sees (prompt + answer), for logit checks.

    Args:
        row: A messages, prompt/completion or preference row.
        tokenizer: A transformers tokenizer; its chat template renders message lists.

    Returns:
        The full text of the row (for preference rows, prompt + chosen).
    """
    if "messages" in row:
        messages = list(row["messages"])
    else:
        answer = row.get("completion", row.get("chosen", ""))
        prompt = row.get("prompt", "")
        if isinstance(prompt, str) and isinstance(answer, str):
            return prompt + answer
        messages = _as_messages(prompt, "user") + _as_messages(answer, "assistant")
    if getattr(tokenizer, "chat_template", None):
        return str(tokenizer.apply_chat_template(messages, tokenize=False))
    return "\n".join(str(m.get("content", "")) for m in messages)


def _as_messages(value: Any, role: str) -> list[dict[str, Any]]:
    if isinstance(value, list):
        return list(value)
    return [{"role": role, "content": str(value)}]
