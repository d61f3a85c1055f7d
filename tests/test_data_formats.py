"""Format detection and conversion to the trainer's rows, per training method."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _data_helpers import chat_rows, pref_row, prepare, read_jsonl, write_jsonl

from tuneship.errors import DataError


def _prepare_rows(tmp_path: Path, rows: list[Any], method: str = "sft", **data: Any) -> Any:
    path = write_jsonl(tmp_path / "rows.jsonl", rows)
    return prepare(tmp_path, path, method=method, **data)  # type: ignore[arg-type]


def test_messages_rows_keep_only_role_and_content(tmp_path: Path) -> None:
    rows = chat_rows(2)
    rows[0]["messages"][1]["name"] = "bot-7"
    rows[0]["id"] = "a"
    prepared = _prepare_rows(tmp_path, rows)
    assert prepared.source_format == "messages"
    assert prepared.trainer_format == "messages"
    assert read_jsonl(prepared.train_path) == chat_rows(2)


def test_alpaca_becomes_messages(tmp_path: Path) -> None:
    rows = [
        {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
        {"instruction": "Say hi.", "input": "", "output": "Hi!"},
        {"instruction": "Be brief.", "output": "OK.", "system": "You are terse."},
    ]
    prepared = _prepare_rows(tmp_path, rows)
    assert prepared.source_format == "alpaca"
    assert prepared.trainer_format == "messages"
    out = read_jsonl(prepared.train_path)
    assert out[0]["messages"] == [
        {"role": "user", "content": "Add the numbers.\n\n2 and 3"},
        {"role": "assistant", "content": "5"},
    ]
    assert out[1]["messages"][0] == {"role": "user", "content": "Say hi."}
    assert out[2]["messages"][0] == {"role": "system", "content": "You are terse."}


def test_sharegpt_roles_are_mapped(tmp_path: Path) -> None:
    rows = [
        {
            "conversations": [
                {"from": "system", "value": "Be kind."},
                {"from": "human", "value": "Hello"},
                {"from": "gpt", "value": "Hi there"},
            ]
        }
    ]
    prepared = _prepare_rows(tmp_path, rows)
    assert prepared.source_format == "sharegpt"
    assert read_jsonl(prepared.train_path)[0]["messages"] == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi there"},
    ]


def test_prompt_completion_strings_are_kept(tmp_path: Path) -> None:
    rows = [{"prompt": f"q{i}", "completion": f" a{i}"} for i in range(3)]
    prepared = _prepare_rows(tmp_path, rows)
    assert prepared.source_format == "prompt_completion"
    assert prepared.trainer_format == "prompt_completion"
    assert read_jsonl(prepared.train_path) == rows


def test_prompt_completion_mixed_types_become_messages(tmp_path: Path) -> None:
    rows = [
        {
            "prompt": [{"role": "user", "content": "q0"}],
            "completion": [{"role": "assistant", "content": "a0"}],
        },
        {"prompt": "q1", "completion": "a1"},
    ]
    prepared = _prepare_rows(tmp_path, rows)
    out = read_jsonl(prepared.train_path)
    assert out[0] == rows[0]
    assert out[1] == {
        "prompt": [{"role": "user", "content": "q1"}],
        "completion": [{"role": "assistant", "content": "a1"}],
    }


@pytest.mark.parametrize("method", ["dpo", "orpo"])
def test_preference_strings_for_dpo_and_orpo(tmp_path: Path, method: str) -> None:
    rows = [pref_row(i) for i in range(3)]
    prepared = _prepare_rows(tmp_path, rows, method=method)
    assert prepared.source_format == "preference"
    assert prepared.trainer_format == "preference"
    assert read_jsonl(prepared.train_path) == rows


def test_conversational_preference_stays_conversational(tmp_path: Path) -> None:
    row = {
        "prompt": [{"role": "user", "content": "Colour of the sky?"}],
        "chosen": [{"role": "assistant", "content": "Blue."}],
        "rejected": [{"role": "assistant", "content": "Green."}],
    }
    prepared = _prepare_rows(tmp_path, [row], method="dpo")
    assert read_jsonl(prepared.train_path) == [row]


def test_implicit_prompt_preference_is_split_at_the_shared_prefix(tmp_path: Path) -> None:
    user = {"role": "user", "content": "Colour of the sky?"}
    row = {
        "chosen": [user, {"role": "assistant", "content": "Blue."}],
        "rejected": [user, {"role": "assistant", "content": "Green."}],
    }
    prepared = _prepare_rows(tmp_path, [row], method="dpo")
    assert prepared.source_format == "preference"
    assert read_jsonl(prepared.train_path) == [
        {
            "prompt": [user],
            "chosen": [{"role": "assistant", "content": "Blue."}],
            "rejected": [{"role": "assistant", "content": "Green."}],
        }
    ]


def test_preference_with_sft_trains_on_chosen_and_warns(tmp_path: Path) -> None:
    rows = [pref_row(i) for i in range(3)]
    prepared = _prepare_rows(tmp_path, rows, method="sft")
    assert prepared.trainer_format == "prompt_completion"
    assert read_jsonl(prepared.train_path) == [
        {"prompt": r["prompt"], "completion": r["chosen"]} for r in rows
    ]
    assert any("prompt + chosen" in w for w in prepared.report.warnings)


@pytest.mark.parametrize("method", ["dpo", "orpo"])
def test_dpo_on_chat_data_is_an_error(tmp_path: Path, method: str) -> None:
    with pytest.raises(DataError, match=r"needs preference rows with prompt, chosen and rejected"):
        _prepare_rows(tmp_path, chat_rows(3), method=method)


def test_unknown_shape_lists_formats_and_keys(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        _prepare_rows(tmp_path, [{"text": "hello", "meta": 1}])
    message = str(info.value)
    assert "['meta', 'text']" in message
    for fmt in ("messages", "prompt_completion", "preference", "alpaca", "sharegpt"):
        assert fmt in message
    assert "rows.jsonl:1" in message


def test_declared_format_is_enforced_per_row(tmp_path: Path) -> None:
    rows = [
        {"instruction": "a", "output": "b"},
        {"instruction": "c", "response": "d"},
    ]
    with pytest.raises(DataError, match=r"rows\.jsonl:2: missing field 'output'"):
        _prepare_rows(tmp_path, rows, format="alpaca")


@pytest.mark.slow  # importing trl takes seconds
def test_written_files_are_what_trl_recognises(tmp_path: Path) -> None:
    import datasets
    from trl.data_utils import is_conversational

    chat = _prepare_rows(tmp_path, chat_rows(3))
    pref = prepare(
        tmp_path,
        write_jsonl(tmp_path / "pref.jsonl", [pref_row(i) for i in range(3)]),
        method="dpo",
        out="pref",
    )
    loaded = datasets.load_dataset(
        "json", data_files=chat.train_path, split="train", cache_dir=str(tmp_path / "c")
    )
    assert is_conversational(loaded[0])
    loaded_pref = datasets.load_dataset(
        "json", data_files=pref.train_path, split="train", cache_dir=str(tmp_path / "c")
    )
    assert set(loaded_pref.column_names) == {"prompt", "chosen", "rejected"}
    assert not is_conversational(loaded_pref[0])
