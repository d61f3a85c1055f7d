"""Turn canonical examples into the rows the trainer takes (TRL 1.16 dataset formats).

* sft: ``{"messages"}`` (conversational language modelling) for messages, Alpaca and
  ShareGPT data; ``{"prompt", "completion"}`` as given for prompt/completion data;
  preference data trains on prompt + chosen as ``{"prompt", "completion"}``.
* dpo / orpo: ``{"prompt", "chosen", "rejected"}``; other data is an error.

TRL needs one type per column, so when any row holds message lists, string values in
other rows become messages (a prompt string a user turn, a reply string an assistant turn).
"""

from __future__ import annotations

from typing import Any, Literal

from tuneship.config import TrainingMethod
from tuneship.data.formats import Example, Family, Message, SourceFormat
from tuneship.errors import DataError

TrainerFormat = Literal["messages", "prompt_completion", "preference"]

_TEXT_ROLE = {"prompt": "user", "completion": "assistant", "chosen": "assistant"}


def _as_messages(value: str | list[Message], key: str) -> list[Message]:
    if isinstance(value, list):
        return value
    return [{"role": _TEXT_ROLE.get(key, "assistant"), "content": value}]


def unify_text_types(examples: list[Example]) -> None:
    """Make every text column hold one type: messages everywhere if any row has messages."""
    keys = [
        k
        for k in ("prompt", "completion", "chosen", "rejected")
        if examples and k in examples[0].fields
    ]
    if not any(isinstance(ex.fields[k], list) for ex in examples for k in keys):
        return
    for ex in examples:
        for key in keys:
            ex.fields[key] = _as_messages(ex.fields[key], key)


def convert_examples(
    examples: list[Example], source_format: SourceFormat, family: Family, method: TrainingMethod
) -> tuple[list[dict[str, Any]], TrainerFormat, list[str]]:
    """Convert examples for ``method``.

    Args:
        examples: Valid canonical examples (changed in place when types are unified).
        source_format: The format the data came in, for messages.
        family: The canonical shape of the examples.
        method: sft, dpo or orpo.

    Returns:
        The trainer rows, the trainer format, and warnings for the data report.

    Raises:
        DataError: dpo/orpo were asked for data that is not preference data.
    """
    warnings: list[str] = []
    if method in ("dpo", "orpo"):
        if family != "preference":
            raise DataError(
                f"training.method={method} needs preference rows with prompt, chosen and "
                f"rejected (the rejected reply is what the model learns to avoid), but the data "
                f"is in {source_format!r} format. Use preference data, or training.method=sft."
            )
        unify_text_types(examples)
        return [dict(ex.fields) for ex in examples], "preference", warnings
    if family == "messages":
        return [{"messages": ex.fields["messages"]} for ex in examples], "messages", warnings
    unify_text_types(examples)
    if family == "prompt_completion":
        rows = [
            {"prompt": ex.fields["prompt"], "completion": ex.fields["completion"]}
            for ex in examples
        ]
        return rows, "prompt_completion", warnings
    warnings.append(
        "preference data with training.method=sft: training on prompt + chosen only; the "
        "rejected replies are ignored (use method dpo or orpo to learn from them)"
    )
    rows = [{"prompt": ex.fields["prompt"], "completion": ex.fields["chosen"]} for ex in examples]
    return rows, "prompt_completion", warnings
