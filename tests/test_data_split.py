"""Train/eval split rules, fingerprints, row-length checks and the summary table."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _data_helpers import chat_row, chat_rows, prepare, read_jsonl, write_jsonl

from tuneship.data import summary_table
from tuneship.errors import DataError


def test_eval_off_writes_no_eval_set(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", chat_rows(5))
    prepared = prepare(tmp_path, path, evaluate=False)
    assert prepared.eval_path is None
    assert prepared.n_eval == 0
    assert prepared.eval_source == "none"
    assert not (Path(prepared.train_path).parent / "eval.jsonl").exists()


def test_eval_off_removes_a_stale_eval_file(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", chat_rows(20))
    first = prepare(tmp_path, path, evaluate=True)
    assert first.eval_path is not None and Path(first.eval_path).exists()
    prepare(tmp_path, path, evaluate=False)
    assert not Path(first.eval_path).exists()


def test_own_test_split_is_used(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "data" / "train.jsonl", chat_rows(5))
    write_jsonl(tmp_path / "data" / "test.jsonl", chat_rows(2, start=10))
    prepared = prepare(tmp_path, tmp_path / "data", evaluate=True)
    assert prepared.eval_source == "split 'test'"
    assert prepared.eval_path is not None
    assert read_jsonl(prepared.eval_path) == chat_rows(2, start=10)
    assert prepared.n_train == 5


def test_eval_split_with_only_invalid_rows_is_an_error(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "data" / "train.jsonl", chat_rows(5))
    bad = chat_row(9)
    bad["messages"][1]["content"] = ""
    write_jsonl(tmp_path / "data" / "test.jsonl", [bad])
    with pytest.raises(DataError, match=r"\[test\]: all 1 eval rows were invalid"):
        prepare(tmp_path, tmp_path / "data", evaluate=True, drop_invalid_rows=True)


def test_eval_split_setting_picks_the_named_split(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "data" / "train.jsonl", chat_rows(5))
    write_jsonl(tmp_path / "data" / "test.jsonl", chat_rows(2, start=10))
    write_jsonl(tmp_path / "data" / "validation.jsonl", chat_rows(3, start=20))
    prepared = prepare(tmp_path, tmp_path / "data", evaluate=True, eval_split="validation")
    assert prepared.eval_source == "split 'validation'"
    assert prepared.n_eval == 3


def test_missing_eval_split_lists_the_splits(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "data" / "train.jsonl", chat_rows(5))
    write_jsonl(tmp_path / "data" / "test.jsonl", chat_rows(2))
    with pytest.raises(DataError, match=r"data\.eval_split: split 'dev' not found.*'test'"):
        prepare(tmp_path, tmp_path / "data", evaluate=True, eval_split="dev")


def test_eval_split_on_a_single_file_is_an_error(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", chat_rows(20))
    with pytest.raises(DataError, match=r"data\.eval_split: 'test' not found"):
        prepare(tmp_path, path, evaluate=True, eval_split="test")


def test_missing_train_split_lists_the_splits(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "data" / "training.jsonl", chat_rows(5))
    with pytest.raises(DataError, match=r"data\.split: split 'train' not found.*'training'"):
        prepare(tmp_path, tmp_path / "data")


def test_seeded_split_is_a_partition_of_the_rows(tmp_path: Path) -> None:
    rows = chat_rows(40)
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    prepared = prepare(tmp_path, path, evaluate=True, eval_fraction=0.25, seed=3)
    assert prepared.eval_source == "seeded 25% split (seed 3)"
    assert (prepared.n_train, prepared.n_eval) == (30, 10)
    assert prepared.eval_path is not None
    train, held_out = read_jsonl(prepared.train_path), read_jsonl(prepared.eval_path)
    as_text = [json.dumps(r, sort_keys=True) for r in rows]
    assert sorted(json.dumps(r, sort_keys=True) for r in train + held_out) == sorted(as_text)
    # Each part keeps the original order.
    assert [as_text.index(json.dumps(r, sort_keys=True)) for r in train] == sorted(
        as_text.index(json.dumps(r, sort_keys=True)) for r in train
    )


def test_seeded_split_is_deterministic_per_seed(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", chat_rows(50))
    a = prepare(tmp_path, path, evaluate=True, seed=7, out="a")
    b = prepare(tmp_path, path, evaluate=True, seed=7, out="b")
    c = prepare(tmp_path, path, evaluate=True, seed=8, out="c")
    assert a.eval_path and b.eval_path and c.eval_path
    assert Path(a.train_path).read_bytes() == Path(b.train_path).read_bytes()
    assert Path(a.eval_path).read_bytes() == Path(b.eval_path).read_bytes()
    assert a.fingerprint == b.fingerprint
    assert Path(a.eval_path).read_bytes() != Path(c.eval_path).read_bytes()
    assert a.fingerprint != c.fingerprint


def test_too_small_to_split_says_what_to_do(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", chat_rows(5))
    with pytest.raises(DataError) as info:
        prepare(tmp_path, path, evaluate=True, eval_fraction=0.1)
    message = str(info.value)
    assert "5 usable row(s)" in message
    assert "eval_fraction" in message and "training.eval_strategy=no" in message
    prepared = prepare(tmp_path, path, evaluate=True, eval_fraction=0.2)
    assert (prepared.n_train, prepared.n_eval) == (4, 1)


def test_one_row_cannot_be_split_at_any_fraction(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", chat_rows(1))
    with pytest.raises(DataError, match="1 usable row"):
        prepare(tmp_path, path, evaluate=True, eval_fraction=0.99)


def test_split_counts_rows_left_after_dropping(tmp_path: Path) -> None:
    rows = chat_rows(10)
    for row in rows[:6]:
        row["messages"][1]["content"] = ""
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    with pytest.raises(DataError, match="4 usable row"):
        prepare(tmp_path, path, evaluate=True, drop_invalid_rows=True, eval_fraction=0.2)


def test_fingerprint_follows_content_not_container(tmp_path: Path) -> None:
    rows = chat_rows(6)
    jsonl = write_jsonl(tmp_path / "d.jsonl", rows)
    parquet = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    a = prepare(tmp_path, jsonl, out="a")
    b = prepare(tmp_path, parquet, out="b")
    assert len(a.fingerprint) == 64
    assert a.fingerprint == b.fingerprint
    changed = write_jsonl(tmp_path / "e.jsonl", [*rows[:5], chat_row(99)])
    assert prepare(tmp_path, changed, out="c").fingerprint != a.fingerprint
    assert prepare(tmp_path, jsonl, out="d", seed=1).fingerprint != a.fingerprint


def _long_row(words: int) -> dict[str, object]:
    text = " ".join(f"plus {i}" for i in range(words))
    return {
        "messages": [
            {"role": "user", "content": "What is the sum?"},
            {"role": "assistant", "content": text},
        ]
    }


def test_long_rows_are_counted_and_warned(tmp_path: Path, tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    rows = [*chat_rows(6), _long_row(200), _long_row(300)]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    prepared = prepare(tmp_path, path, tokenizer=tokenizer, max_length=64)
    report = prepared.report
    assert report.long_rows == 2
    assert report.long_row_share == pytest.approx(2 / 8)
    assert report.longest_row_tokens is not None and report.longest_row_tokens > 300
    assert any("25.0%" in w and "max_length=64" in w for w in report.warnings)

    roomy = prepare(tmp_path, path, tokenizer=tokenizer, max_length=4096, out="roomy")
    assert roomy.report.long_rows == 0
    assert roomy.report.longest_row_tokens == report.longest_row_tokens
    # The cost estimate's tokens per row: truncated rows count max_length tokens.
    assert report.mean_row_tokens is not None and roomy.report.mean_row_tokens is not None
    assert report.mean_row_tokens <= 64 < roomy.report.mean_row_tokens


def test_row_length_includes_the_chat_template(tmp_path: Path, tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    row = chat_row(1)
    path = write_jsonl(tmp_path / "d.jsonl", [row])
    prepared = prepare(tmp_path, path, tokenizer=tokenizer)
    text_only = sum(len(tokenizer(m["content"])["input_ids"]) for m in row["messages"])
    # ChatML adds <|im_start|>, the role, and <|im_end|> around every message.
    assert prepared.report.longest_row_tokens is not None
    assert prepared.report.longest_row_tokens >= text_only + 3 * len(row["messages"])


def test_no_tokenizer_leaves_lengths_unchecked(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", chat_rows(3))
    prepared = prepare(tmp_path, path)
    assert prepared.report.longest_row_tokens is None
    assert any("not checked" in w for w in prepared.report.warnings)


def test_summary_table_rows(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", chat_rows(20))
    prepared = prepare(tmp_path, path, evaluate=True)
    table = summary_table(prepared)
    assert all(set(row) == {"metric", "value"} for row in table)
    values = {row["metric"]: row["value"] for row in table}
    assert values["train rows"] == prepared.n_train == 18
    assert values["eval rows"] == prepared.n_eval == 2
    assert values["fingerprint"] == prepared.fingerprint
    assert values["eval source"] == prepared.eval_source
    warnings = [row["value"] for row in table if row["metric"] == "warning"]
    assert warnings == prepared.report.warnings
