"""The SFT loss mask: assistant tokens only, checked token by token on real chat templates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _training_helpers import make_spec

from tuneship.errors import TrainingError
from tuneship.training.loss_mask import build_assistant_mask, has_generation_markers, plan_sft_loss

TEMPLATES = Path(__file__).parent / "fixtures" / "chat_templates"

CHAT: list[dict[str, Any]] = [
    {"role": "system", "content": "You are a concise assistant."},
    {"role": "user", "content": "What is 4 plus 16?"},
    {"role": "assistant", "content": "4 plus 16 is 20."},
    {"role": "user", "content": "And 12 plus 16?"},
    {"role": "assistant", "content": "12 plus 16 is 28."},
]
ASSISTANT = [m["content"] for m in CHAT if m["role"] == "assistant"]
PROMPTS = [m["content"] for m in CHAT if m["role"] != "assistant"]

# template file -> (end-of-turn token, BOS token the template writes, has generation markers)
CASES = {
    "llama3.jinja": ("<|eot_id|>", "<|begin_of_text|>", False),
    "qwen2_5.jinja": ("<|im_end|>", None, False),
    "smollm2_135m_instruct.jinja": ("<|im_end|>", None, False),
    "qwen2_5_generation_markers.jinja": ("<|im_end|>", None, True),
}
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]


@pytest.fixture(scope="session")
def base_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model's byte-level BPE tokenizer (no model: masks need only the tokenizer)."""
    from tuneship.demo.tiny_model import build_tokenizer

    return build_tokenizer(tmp_path_factory.mktemp("mask-tokenizer"))


def _tokenizer(folder: Path, template_file: str) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    bos = CASES[template_file][1]
    if template_file.startswith("llama3"):
        # A Llama 3 vocabulary has these as single special tokens; so must the test's.
        tokenizer.add_special_tokens({"additional_special_tokens": LLAMA3_SPECIALS})
        tokenizer.bos_token = bos
    tokenizer.chat_template = (TEMPLATES / template_file).read_text(encoding="utf-8")
    return tokenizer


def _masked_runs(ids: list[int], mask: list[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    previous = 0
    for token, bit in zip(ids, mask, strict=True):
        if bit and not previous:
            runs.append([])
        if bit:
            runs[-1].append(token)
        previous = bit
    return runs


@pytest.mark.parametrize("template_file", sorted(CASES))
def test_mask_covers_each_assistant_turn_and_nothing_else(
    base_tokenizer_dir: Path, template_file: str
) -> None:
    tokenizer = _tokenizer(base_tokenizer_dir, template_file)
    eot, bos, markers = CASES[template_file]
    assert has_generation_markers(tokenizer.chat_template) is markers

    ids, mask = build_assistant_mask(tokenizer, CHAT)

    assert len(ids) == len(mask)
    assert set(mask) == {0, 1}
    # The ids are exactly the template's rendering, as TRL tokenizes it (one BOS at most).
    rendered = tokenizer.apply_chat_template(CHAT, tokenize=False)
    assert tokenizer.decode(ids) == rendered
    if bos is not None:
        assert ids.count(tokenizer.convert_tokens_to_ids(bos)) == 1 and mask[0] == 0
    # Token by token: the masked tokens form one run per assistant turn, each run decoding to
    # that turn's content followed by the end-of-turn token (the newline after it, if any, is
    # the template's formatting).
    runs = _masked_runs(ids, mask)
    assert [tokenizer.decode(run).strip() for run in runs] == [a + eot for a in ASSISTANT]
    eot_id = tokenizer.convert_tokens_to_ids(eot)
    for run in runs:
        assert eot_id in run
    # Every token outside the runs is prompt: system, questions, role headers.
    unmasked = tokenizer.decode([t for t, bit in zip(ids, mask, strict=True) if not bit])
    for text in PROMPTS:
        assert text in unmasked
    for answer in ASSISTANT:
        assert answer not in unmasked


def test_plan_follows_template_and_format(base_tokenizer_dir: Path) -> None:
    plain = _tokenizer(base_tokenizer_dir, "qwen2_5.jinja")
    marked = _tokenizer(base_tokenizer_dir, "qwen2_5_generation_markers.jinja")

    assert plan_sft_loss("messages", plain, train_on_inputs=False).mask_in_tuneship
    with_markers = plan_sft_loss("messages", marked, train_on_inputs=False)
    assert with_markers.assistant_only_loss and not with_markers.mask_in_tuneship
    assert plan_sft_loss("prompt_completion", plain, train_on_inputs=False).completion_only_loss
    everything = plan_sft_loss("messages", marked, train_on_inputs=True)
    assert not (
        everything.assistant_only_loss
        or everything.completion_only_loss
        or everything.mask_in_tuneship
    )


def test_template_that_rewrites_earlier_turns_is_rejected(base_tokenizer_dir: Path) -> None:
    tokenizer = _tokenizer(base_tokenizer_dir, "qwen2_5.jinja")
    # Like reasoning templates that drop earlier turns' thinking: the last turn renders
    # differently from the same turn once a later one follows.
    tokenizer.chat_template = (
        "{% for m in messages %}{{ m['role'] }}: "
        "{% if loop.last %}{{ m['content'] }}{% else %}...{% endif %}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}"
    )
    with pytest.raises(TrainingError, match="train_on_inputs: true"):
        build_assistant_mask(tokenizer, CHAT)


def _first_batch(spec: Any) -> dict[str, Any]:
    from tuneship.training.train import build_trainer

    trainer = build_trainer(spec)
    return next(iter(trainer.get_train_dataloader()))


@pytest.mark.slow
def test_training_default_masks_prompt_tokens(tiny_model_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    spec = make_spec(tiny_model_dir, tmp_path, n_train=4, n_eval=2)
    assert spec.training.train_on_inputs is False
    batch = _first_batch(spec)

    eot_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    for ids, labels in zip(batch["input_ids"].tolist(), batch["labels"].tolist(), strict=True):
        kept = [t for t, label in zip(ids, labels, strict=True) if label != -100]
        text = tokenizer.decode(kept)
        # Only the answer and its end-of-turn token carry loss; system and question are -100.
        assert text.endswith("<|im_end|>") and " is " in text
        assert "concise assistant" not in text and "?" not in text
        assert kept.count(eot_id) == 1
        assert labels.count(-100) > len(kept)

    everything = _first_batch(
        make_spec(tiny_model_dir, tmp_path / "all", n_train=4, n_eval=2, train_on_inputs=True)
    )
    pad = tokenizer.pad_token_id
    for ids, labels in zip(
        everything["input_ids"].tolist(), everything["labels"].tolist(), strict=True
    ):
        assert [label for t, label in zip(ids, labels, strict=True) if t != pad] == [
            t for t in ids if t != pad
        ]


@pytest.mark.slow
def test_prompt_completion_default_masks_prompt(tiny_model_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    batch = _first_batch(make_spec(tiny_model_dir, tmp_path, fmt="prompt_completion", n_train=4))
    for ids, labels in zip(batch["input_ids"].tolist(), batch["labels"].tolist(), strict=True):
        text = tokenizer.decode([t for t, label in zip(ids, labels, strict=True) if label != -100])
        assert "Q:" not in text and " is " in text
