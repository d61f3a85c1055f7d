"""Count the tokens of trainer rows, the way the trainer will see them.

Conversational rows are rendered with the tokenizer's chat template (the text the trainer
tokenizes); string rows are prompt + completion. A preference row counts as its longer
side (prompt + chosen or prompt + rejected), since that is what gets truncated.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

_BATCH = 512


def _sequences(row: dict[str, Any]) -> Iterator[list[Any] | str]:
    if "messages" in row:
        yield row["messages"]
        return
    prompt = row["prompt"]
    for key in ("completion", "chosen", "rejected"):
        if key in row:
            yield prompt + row[key]


def _render(
    tokenizer: PreTrainedTokenizerBase, sequences: list[list[Any] | str], warnings: list[str]
) -> list[str]:
    texts: list[str] = []
    for seq in sequences:
        if isinstance(seq, str):
            texts.append(seq)
        elif tokenizer.chat_template:
            rendered = tokenizer.apply_chat_template(seq, tokenize=False)
            texts.append(rendered if isinstance(rendered, str) else str(rendered))
        else:
            if not warnings:
                warnings.append(
                    "the tokenizer has no chat template: row lengths were estimated from the "
                    "message texts alone"
                )
            texts.append("\n".join(m["content"] for m in seq))
    return texts


def count_tokens(
    rows: list[dict[str, Any]], tokenizer: PreTrainedTokenizerBase, warnings: list[str]
) -> list[int]:
    """Return the token length of each trainer row.

    Args:
        rows: Trainer rows (``messages``, ``prompt``/``completion`` or preference).
        tokenizer: The base model's tokenizer.
        warnings: Gets a warning appended when lengths had to be estimated.

    Returns:
        One length per row (the longer side for preference rows).
    """
    counts = [len(list(_sequences(row))) for row in rows]
    flat = [seq for row in rows for seq in _sequences(row)]
    lengths: list[int] = []
    for start in range(0, len(flat), _BATCH):
        texts = _render(tokenizer, flat[start : start + _BATCH], warnings)
        encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
        lengths += [len(ids) for ids in encoded]
    out, pos = [], 0
    for n in counts:
        out.append(max(lengths[pos : pos + n]))
        pos += n
    return out
