"""Which tokens SFT learns from: the assistant's (the default) or every token.

``training.train_on_inputs: false`` (Axolotl's convention, the default) puts the loss on
what the model must learn to *say*: the assistant turns of chat rows (content and the
end-of-turn token, every assistant turn of a multi-turn chat) and the completion of
prompt/completion rows. System prompts and questions only condition the model.

How the mask is built depends on the chat template:

* with ``{% generation %}`` markers, TRL's ``assistant_only_loss`` does it (transformers'
  ``return_assistant_tokens_mask``);
* without them (Llama 3, Qwen 2.5, ChatML and most others), tuneship renders the chat
  incrementally with the template: the text up to the assistant turn with the generation
  prompt, then up to the end of that turn. The characters in between are the assistant's,
  and the fast tokenizer's offsets map them to tokens. The rows are handed to TRL already
  tokenized with an ``assistant_masks`` column, from which TRL builds the labels.

The same mask applies to the eval set, so the eval loss before and after training are
both the loss on assistant tokens.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from tuneship.errors import TrainingError

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase

_GENERATION_TAG = re.compile(r"\{%-?\s*generation\s*-?%\}")
_HINT = (
    "set training.train_on_inputs: true to train on every token, or use a chat template "
    "with {% generation %} markers"
)


class SftLossPlan(BaseModel):
    """How the SFT trainer is told which tokens carry the loss."""

    assistant_only_loss: bool = False
    completion_only_loss: bool = False
    mask_in_tuneship: bool = False
    description: str = "every token"


def has_generation_markers(chat_template: str | None) -> bool:
    """Whether a chat template wraps assistant output in ``{% generation %}`` markers."""
    return bool(chat_template) and bool(_GENERATION_TAG.search(chat_template or ""))


def plan_sft_loss(
    trainer_format: str, tokenizer: PreTrainedTokenizerBase, *, train_on_inputs: bool
) -> SftLossPlan:
    """Decide how SFT restricts the loss to the assistant's (or completion's) tokens.

    Args:
        trainer_format: ``messages`` or ``prompt_completion``.
        tokenizer: The tokenizer, with the chat template the rows are rendered with.
        train_on_inputs: True to train on every token (no mask).

    Returns:
        The TRL flags to set and whether tuneship must pre-tokenize the rows with a mask.
    """
    if train_on_inputs:
        return SftLossPlan()
    if trainer_format == "prompt_completion":
        return SftLossPlan(completion_only_loss=True, description="completion tokens")
    if has_generation_markers(getattr(tokenizer, "chat_template", None)):
        return SftLossPlan(
            assistant_only_loss=True,
            description="assistant tokens (chat template generation markers)",
        )
    return SftLossPlan(
        mask_in_tuneship=True, description="assistant tokens (mask built by tuneship)"
    )


def _render(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, Any]], gen: bool) -> str:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
    return str(text)


def assistant_char_spans(
    tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, Any]]
) -> tuple[str, list[tuple[int, int]]]:
    """Render a chat and find each assistant turn's characters (content + end-of-turn).

    Args:
        tokenizer: Holds the chat template.
        messages: The chat, ``[{"role", "content"}, ...]``.

    Returns:
        The rendered chat and one ``(start, end)`` character span per assistant turn.

    Raises:
        TrainingError: The template does not render earlier turns the same way when later
            turns are added, so the assistant's characters cannot be located.
    """
    full = _render(tokenizer, messages, gen=False)
    spans: list[tuple[int, int]] = []
    for index, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        try:
            before = _render(tokenizer, messages[:index], gen=True)
            through = _render(tokenizer, messages[: index + 1], gen=False)
        except Exception as exc:  # jinja raises many types from a template's own code
            raise TrainingError(
                f"the chat template cannot render the chat up to assistant turn {index} "
                f"({type(exc).__name__}: {exc}); {_HINT}"
            ) from exc
        # The newline a template writes after the end-of-turn token is formatting the model
        # never generates (generation stops at that token), so it carries no loss.
        end = len(through.rstrip())
        if not (full.startswith(before) and full.startswith(through) and end > len(before)):
            raise TrainingError(
                f"the chat template renders the chat differently when later turns are added "
                f"(assistant turn {index}), so the assistant's tokens cannot be located; {_HINT}"
            )
        spans.append((len(before), end))
    return full, spans


def build_assistant_mask(
    tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, Any]]
) -> tuple[list[int], list[int]]:
    """Tokenize a chat and mark the assistant's tokens with 1, everything else with 0.

    Templates with generation markers use transformers' own mask; others are masked
    from the incremental renderings (see the module docstring).

    Args:
        tokenizer: A fast tokenizer with a chat template.
        messages: The chat.

    Returns:
        ``(input_ids, assistant_mask)`` of equal length.

    Raises:
        TrainingError: The tokenizer is not a fast one, or the template's rendering cannot
            be split into turns.
    """
    if has_generation_markers(getattr(tokenizer, "chat_template", None)):
        out: Any = tokenizer.apply_chat_template(
            messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        return list(out["input_ids"]), list(out["assistant_masks"])
    if not getattr(tokenizer, "is_fast", False):
        raise TrainingError(
            f"masking the loss to the assistant's tokens needs a fast tokenizer (character "
            f"offsets); {type(tokenizer).__name__} is not one; {_HINT}"
        )
    text, spans = assistant_char_spans(tokenizer, messages)
    # The template writes its own BOS where it wants one, as TRL's tokenization assumes.
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    mask = [
        int(any(end > s and start < e for s, e in spans) and end > start)
        for start, end in encoded["offset_mapping"]
    ]
    return list(encoded["input_ids"]), mask


def mask_chat_dataset(dataset: Dataset, tokenizer: PreTrainedTokenizerBase) -> Dataset:
    """Tokenize ``messages`` rows into ``input_ids`` and ``assistant_masks`` columns.

    TRL treats a dataset with ``input_ids`` as already tokenized and turns
    ``assistant_masks`` into labels (-100 where the mask is 0).

    Args:
        dataset: Rows with a ``messages`` column.
        tokenizer: The training tokenizer.

    Returns:
        The tokenized dataset (the original columns removed).

    Raises:
        TrainingError: A row has no assistant token to learn from, or cannot be masked.
    """

    def encode(row: dict[str, Any], index: int) -> dict[str, list[int]]:
        input_ids, mask = build_assistant_mask(tokenizer, row["messages"])
        if 1 not in mask:
            raise TrainingError(
                f"row {index + 1} has no assistant tokens to train on; give every chat an "
                "assistant turn or set training.train_on_inputs: true"
            )
        return {"input_ids": input_ids, "assistant_masks": mask}

    return dataset.map(encode, with_indices=True, remove_columns=dataset.column_names)
