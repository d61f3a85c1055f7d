"""Check that the serving engine computes the model that was trained.

An engine can load a folder and still compute something else (wrong kernels, rope or
tied-embedding handling, a tokenizer or chat template rendered differently). So the
served model's greedy continuations
of a few prompts are scored by transformers, in float32, on the same folder: each token
the engine chose (through its chat API, as clients call it) must be transformers' top
token or within ``max_gap`` nats of it.
Scoring the engine's own continuation (rather than comparing two texts) tolerates a
legitimate near-tie that sends the two down different but equally likely paths (vLLM in
bf16 on an AMX CPU answered SmolLM2's "What is the capital of France?" in French: a first
token 0.1 nats behind "The"), and still catches a wrong model ("... is Berlin." scores a
9.5-nat gap).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from tuneship.errors import ServingError

if TYPE_CHECKING:
    from collections.abc import Sequence

logger = logging.getLogger(__name__)

Messages = list[dict[str, str]]
DEFAULT_MAX_GAP = 3.0
"""Largest drop in transformers' log-probability (nats) from its top token to the token the
engine chose. Numerical noise (bf16 against float32) moves it by well under 1 nat."""


class EngineMismatchError(ServingError):
    """The served model's answers are not what transformers computes on the same folder."""


class EngineComparison(BaseModel):
    """One prompt: the engine's and transformers' greedy continuations and how they score."""

    prompt: str = Field(description="The last user message.")
    engine_answer: str
    reference_answer: str = Field(description="transformers' greedy answer (float32).")
    max_gap: float = Field(
        description="Largest log-probability drop (nats) from transformers' top token to "
        "the engine's token, over the engine's continuation."
    )
    first_token_agrees: bool


def prompt_messages(row: dict[str, Any]) -> Messages | None:
    """Return the chat messages before the last assistant turn of a data row (None: no chat)."""
    messages = row.get("messages")
    if not isinstance(messages, list):
        prompt = row.get("prompt")
        if isinstance(prompt, list):
            return [dict(m) for m in prompt]
        if isinstance(prompt, str):
            return [{"role": "user", "content": prompt}]
        return None
    last_assistant = max(
        (i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None
    )
    head = messages if last_assistant is None else messages[:last_assistant]
    return [dict(m) for m in head] if head else None


def check_prompts(
    smoke_prompt: str,
    system_prompt: str | None,
    eval_path: str | Path | None,
    limit: int = 3,
) -> list[Messages]:
    """Return the chats to check the engine with: the smoke question, then eval rows' prompts.

    Args:
        smoke_prompt: The smoke test's question.
        system_prompt: Its system message, if any.
        eval_path: The run's eval rows (JSONL), if any.
        limit: Most chats to return.
    """
    first: Messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    chats = [[*first, {"role": "user", "content": smoke_prompt}]]
    if eval_path and Path(eval_path).is_file():
        from tuneship.training.rows import read_rows

        for row in read_rows(eval_path, "eval_path", limit=limit * 2):
            messages = prompt_messages(row)
            if messages and messages not in chats:
                chats.append(messages)
            if len(chats) >= limit:
                break
    return chats[:limit]


class ReferenceModel:
    """transformers on a model folder, in float32: greedy answers and token scores.

    Args:
        model_dir: The model folder the engine serves.
    """

    def __init__(self, model_dir: str | Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
        self.model.eval()

    def prompt_ids(self, messages: Messages) -> list[int]:
        """Return the token ids of a chat rendered with the generation prompt."""
        encoded: Any = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=True
        )
        return [int(i) for i in encoded["input_ids"]]

    def answer(self, prompt_ids: list[int], max_tokens: int) -> tuple[list[int], str]:
        """Return transformers' greedy continuation (ids and text, special tokens removed)."""
        import torch

        inputs = torch.tensor([prompt_ids])
        with torch.inference_mode():
            out = self.model.generate(
                inputs,
                attention_mask=torch.ones_like(inputs),
                max_new_tokens=max_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
            )
        ids = [int(t) for t in out[0, len(prompt_ids) :]]
        return ids, str(self.tokenizer.decode(ids, skip_special_tokens=True))

    def gaps(self, prompt_ids: list[int], continuation: list[int]) -> list[float]:
        """Return, per continuation token, transformers' top log-prob minus the token's."""
        import torch

        if not continuation:
            return []
        ids = torch.tensor([prompt_ids + continuation])
        with torch.inference_mode():
            logits = self.model(ids).logits[0, len(prompt_ids) - 1 : -1].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        chosen = logprobs.gather(1, torch.tensor(continuation).unsqueeze(1)).squeeze(1)
        return [float(g) for g in (logprobs.max(dim=-1).values - chosen)]


def engine_continuation(
    url: str, api_key: str, model: str, messages: Messages, max_tokens: int
) -> tuple[list[int], str]:
    """Ask the engine's chat API for a greedy answer, with the token ids it chose.

    The chat API is what clients call, so the engine's own chat template rendering is
    checked too; vLLM returns its tokens as ``token_id:N`` with
    ``return_tokens_as_token_ids``.

    Returns:
        The answer's token ids and text.

    Raises:
        ServingError: The request failed or returned no token ids.
    """
    import openai

    client = openai.OpenAI(base_url=url, api_key=api_key, timeout=300.0, max_retries=0)
    try:
        reply = client.chat.completions.create(
            model=model,
            messages=messages,  # type: ignore[arg-type]
            max_tokens=max_tokens,
            temperature=0.0,
            logprobs=True,
            extra_body={"return_tokens_as_token_ids": True, "skip_special_tokens": False},
        )
    except openai.OpenAIError as exc:
        raise ServingError(f"engine check: {url} model {model!r}: {exc}") from exc
    choice = reply.choices[0]
    content = choice.logprobs.content if choice.logprobs and choice.logprobs.content else []
    try:
        ids = [int(item.token.removeprefix("token_id:")) for item in content]
    except ValueError:
        raise ServingError(
            f"engine check: {url} did not return token ids (got {content[:3]}); is it vLLM?"
        ) from None
    return ids, choice.message.content or ""


def compare_with_engine(
    reference: ReferenceModel,
    chats: Sequence[Messages],
    url: str,
    api_key: str,
    model: str,
    max_tokens: int = 16,
) -> list[EngineComparison]:
    """Score the engine's greedy continuation of each chat with transformers.

    Args:
        reference: transformers on the served folder.
        chats: The chats to continue.
        url: The engine's OpenAI base URL.
        api_key: Its API key.
        model: The served model name.
        max_tokens: Tokens per continuation.

    Returns:
        One comparison per chat.
    """
    results = []
    for messages in chats:
        prompt_ids = reference.prompt_ids(messages)
        engine_ids, _ = engine_continuation(url, api_key, model, messages, max_tokens)
        ref_ids, ref_text = reference.answer(prompt_ids, max_tokens)
        gaps = reference.gaps(prompt_ids, engine_ids)
        results.append(
            EngineComparison(
                prompt=messages[-1]["content"],
                engine_answer=reference.tokenizer.decode(engine_ids, skip_special_tokens=True),
                reference_answer=ref_text,
                max_gap=max(gaps, default=0.0),
                first_token_agrees=bool(engine_ids[:1] == ref_ids[:1]),
            )
        )
    return results


def raise_on_mismatch(
    comparisons: Sequence[EngineComparison], dtype: str, max_gap: float = DEFAULT_MAX_GAP
) -> None:
    """Fail when any engine continuation is far less likely under transformers.

    Args:
        comparisons: From :func:`compare_with_engine`.
        dtype: The dtype the engine ran in, for the likely cause.
        max_gap: Largest allowed log-probability drop (nats).

    Raises:
        EngineMismatchError: With both answers of every disagreeing prompt and the
            likely cause.
    """
    bad = [c for c in comparisons if c.max_gap > max_gap]
    if not bad:
        return
    lines = [
        f"  {c.prompt!r}: engine answered {c.engine_answer!r}, transformers answers "
        f"{c.reference_answer!r} (log-prob gap {c.max_gap:.2f} nats > {max_gap})"
        for c in bad
    ]
    if dtype in ("bfloat16", "float16", "auto"):
        cause = (
            f"the engine computes in {dtype}, which its kernels on this backend get wrong "
            "for this model; set serve.dtype: float32"
        )
    else:
        cause = (
            "the engine loaded the folder differently from transformers (architecture "
            "support, rope scaling, tied embeddings or the tokenizer); compare the "
            "config.json with what the engine logs"
        )
    raise EngineMismatchError(
        f"the served model does not answer as transformers does on the same folder "
        f"({len(bad)} of {len(comparisons)} prompts):\n"
        + "\n".join(lines)
        + f"\nlikely cause: {cause}"
    )


def reference_chat_answer(
    model_dir: str | Path, question: str, system_prompt: str | None, max_tokens: int = 32
) -> str:
    """Return transformers' greedy answer to a chat question on ``model_dir`` (float32).

    The smoke test reports it next to the served answer, so a reader sees at once
    whether the endpoint serves the trained model.
    """
    reference = ReferenceModel(model_dir)
    messages: Messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": question})
    return reference.answer(reference.prompt_ids(messages), max_tokens)[1]
