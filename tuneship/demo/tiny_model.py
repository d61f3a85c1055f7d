"""Build a tiny but real Llama model and tokenizer, so the demo and tests need no download.

The model has head_dim 32 (vLLM's CPU backend rejects smaller heads) and a byte-level
BPE tokenizer trained on the shipped sample data, with a ChatML chat template. It is a
real ``LlamaForCausalLM`` saved with ``save_pretrained``; everything downstream treats it
like any Hub checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>"]


def sample_data_path() -> Path:
    """Return the path of the shipped sample chat dataset (JSONL, ``messages`` rows)."""
    return Path(str(resources.files("tuneship.demo") / "data" / "sample.jsonl"))


def _sample_texts() -> list[str]:
    texts: list[str] = []
    for line in sample_data_path().read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        texts.extend(m["content"] for m in row["messages"])
    return texts


def build_tokenizer(
    out_dir: Path, texts: Iterable[str] | None = None, vocab_size: int = 512
) -> Path:
    """Train a byte-level BPE tokenizer and save it as a transformers tokenizer.

    Args:
        out_dir: Folder to save into.
        texts: Training texts; defaults to the shipped sample data.
        vocab_size: Target vocabulary size.

    Returns:
        ``out_dir``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = list(texts) if texts is not None else _sample_texts()
    corpus += [f"<|im_start|>{r}\n" for r in ("system", "user", "assistant")]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="<|im_end|>",
        pad_token="<pad>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>", "</s>"],
    )
    fast.chat_template = CHAT_TEMPLATE
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out_dir)
    return out_dir


def build_tiny_model(
    out_dir: str | Path,
    *,
    hidden_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 256,
    max_position_embeddings: int = 512,
    seed: int = 0,
    texts: Iterable[str] | None = None,
) -> Path:
    """Build and save a tiny Llama model with its tokenizer and generation config.

    Building twice with the same arguments gives identical weights (seeded).

    Args:
        out_dir: Folder to save the model into (created).
        hidden_size: Model width; hidden_size / num_heads must be at least 32 for vLLM CPU.
        num_layers: Transformer layers.
        num_heads: Attention heads.
        num_kv_heads: Key/value heads (GQA when fewer than num_heads).
        intermediate_size: MLP width.
        max_position_embeddings: Longest context the model accepts.
        seed: Seed for the random weights.
        texts: Tokenizer training texts; defaults to the shipped sample data.

    Returns:
        The model folder.
    """
    import torch
    from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    path = Path(out_dir)
    build_tokenizer(path, texts)
    tokenizer = AutoTokenizer.from_pretrained(path)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        head_dim=hidden_size // num_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        dtype="float32",
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        max_new_tokens=32,
    )
    model.save_pretrained(path, safe_serialization=True)
    return path


def pretrain_texts(rows: Iterable[dict[str, Any]]) -> list[str]:
    """Plain sentences (no chat format): the assistant answers of chat ``rows``.

    The demo's pre-trained base learns these, like a real base model knows facts before
    instruction tuning; the fine-tune then teaches the question-and-answer chat format.
    Pass only training rows: whatever is given here is learnt.

    Args:
        rows: ``messages`` rows.

    Returns:
        The distinct answers, sorted (a stable order for a seeded pre-training).
    """
    texts = {
        m["content"]
        for row in rows
        for m in row.get("messages", [])
        if m.get("role") == "assistant" and m.get("content")
    }
    return sorted(texts)


def pretrain_model(
    path: Path,
    texts: list[str],
    *,
    steps: int,
    seed: int = 0,
    learning_rate: float = 2e-3,
    batch_size: int = 16,
) -> float:
    """Pre-train the saved model at ``path`` on plain ``texts`` (full training, CPU, seeded).

    Args:
        path: A folder written by :func:`build_tiny_model` (overwritten in place).
        texts: Sentences to learn.
        steps: Optimiser steps.
        seed: Seed for batch order.
        learning_rate: AdamW learning rate.
        batch_size: Sentences per step, drawn with replacement.

    Returns:
        The loss of the last step.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    encoded = [tokenizer(t + tokenizer.eos_token)["input_ids"] for t in texts]
    width = max(len(e) for e in encoded)
    pad = tokenizer.pad_token_id
    ids = torch.tensor([e + [pad] * (width - len(e)) for e in encoded])
    labels = ids.masked_fill(ids == pad, -100)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    optimiser = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    model.train()
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        batch = torch.randint(0, len(ids), (batch_size,), generator=generator)
        loss = model(input_ids=ids[batch], labels=labels[batch]).loss
        loss.backward()
        optimiser.step()
        optimiser.zero_grad()
    model.eval()
    model.save_pretrained(path, safe_serialization=True)
    return float(loss.detach())
