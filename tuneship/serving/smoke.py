"""Smoke test of a served model through the official ``openai`` client.

One chat completion and one streamed chat completion; it fails on any API error or an
answer with no visible text, and reports latency, time to first token and token counts.
Sampling is seeded (temperature 0.7, seed 0) so a rerun asks the same question the
same way; greedy decoding would make some small models answer with blank lines only.
"""

from __future__ import annotations

import functools
import time
from typing import cast

from pydantic import BaseModel, Field

from tuneship.errors import ServingError

DEFAULT_PROMPT = "What is 4 plus 16? Answer in one short sentence."


MIN_TOKENS = {"min_tokens": 1}
"""vLLM sampling extension sent with every smoke request."""


class SmokeTestError(ServingError):
    """The endpoint failed the smoke test (an API error or an empty answer)."""


class SmokeResult(BaseModel):
    """What the smoke test measured (small: fit for a Prefect artifact)."""

    url: str
    model: str
    prompt: str
    answer: str = Field(description="The non-streamed answer.")
    streamed_answer: str
    latency_s: float = Field(description="Wall time of the non-streamed request.")
    stream_latency_s: float = Field(description="Wall time of the streamed request.")
    time_to_first_token_s: float = Field(description="Until the first streamed text arrived.")
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    stream_completion_tokens: int | None = None
    finish_reason: str | None = None


def run_smoke_test(
    url: str,
    api_key: str,
    model: str,
    *,
    prompt: str = DEFAULT_PROMPT,
    max_tokens: int = 32,
    timeout_s: float = 120.0,
    temperature: float = 0.7,
    system_prompt: str | None = None,
) -> SmokeResult:
    """Send one chat completion and one streamed chat completion to an endpoint.

    Args:
        url: OpenAI-compatible base URL (ending in ``/v1``).
        api_key: Bearer token of the endpoint.
        model: The served model name.
        prompt: The user message.
        max_tokens: Longest answer.
        timeout_s: Per-request timeout.
        temperature: Sampling temperature (seeded); 0 asks for the model's greedy answer.
        system_prompt: A system message sent before the question, if any.

    Returns:
        The answers, timings and token counts.

    Raises:
        SmokeTestError: A request failed or an answer was empty; the message says which.
    """
    import openai

    client = openai.OpenAI(base_url=url, api_key=api_key, timeout=timeout_s, max_retries=0)
    messages: list[openai.types.chat.ChatCompletionMessageParam] = []
    if system_prompt:
        messages.append({"role": "system", "content": system_prompt})
    messages.append({"role": "user", "content": prompt})
    try:
        # The same request twice, plain then streamed. vLLM's min_tokens: end-of-sequence is
        # not allowed as the first token, so an empty answer means a broken endpoint, not a
        # barely trained model that stops.
        chat = functools.partial(
            client.chat.completions.create,
            model=model,
            messages=messages,
            max_tokens=max_tokens,
            temperature=temperature,
            seed=0,
            extra_body=MIN_TOKENS,
        )
        started = time.perf_counter()
        reply = chat()
        latency = time.perf_counter() - started
        answer = (reply.choices[0].message.content or "") if reply.choices else ""
        finish = reply.choices[0].finish_reason if reply.choices else None
        if not answer.strip():
            raise SmokeTestError(
                f"smoke test: {url} model {model!r} gave an empty chat completion "
                f"(finish_reason {finish!r})"
            )

        started = time.perf_counter()
        first_token: float | None = None
        parts: list[str] = []
        stream_tokens: int | None = None
        # mypy cannot pick create()'s streaming overload through partial; this is it.
        stream = cast(
            "openai.Stream[openai.types.chat.ChatCompletionChunk]",
            chat(stream=True, stream_options={"include_usage": True}),
        )
        for chunk in stream:
            if chunk.usage is not None:
                stream_tokens = chunk.usage.completion_tokens
            for choice in chunk.choices:
                if choice.delta.content:
                    if first_token is None:
                        first_token = time.perf_counter() - started
                    parts.append(choice.delta.content)
        stream_latency = time.perf_counter() - started
    except openai.OpenAIError as exc:
        raise SmokeTestError(f"smoke test: {url} model {model!r}: {exc}") from exc
    streamed = "".join(parts)
    if first_token is None or not streamed.strip():
        raise SmokeTestError(f"smoke test: {url} model {model!r} streamed an empty answer")
    usage = reply.usage
    return SmokeResult(
        url=url,
        model=model,
        prompt=prompt,
        answer=answer,
        streamed_answer=streamed,
        latency_s=round(latency, 4),
        stream_latency_s=round(stream_latency, 4),
        time_to_first_token_s=round(first_token, 4),
        prompt_tokens=usage.prompt_tokens if usage else None,
        completion_tokens=usage.completion_tokens if usage else None,
        stream_completion_tokens=stream_tokens,
        finish_reason=finish,
    )
