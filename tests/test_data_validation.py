"""Bad input is found before training, and the message names the file and line (or row)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _data_helpers import chat_row, chat_rows, pref_row, prepare, write_jsonl

from tuneship.errors import DataError


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _good(i: int) -> str:
    return json.dumps(chat_row(i))


def test_malformed_jsonl_line_names_file_and_line(tmp_path: Path) -> None:
    path = _write_lines(tmp_path / "d.jsonl", [_good(0), _good(1), '{"messages": [', _good(3)])
    with pytest.raises(DataError, match=rf"{path}:3: "):
        prepare(tmp_path, path)


def test_all_malformed_lines_are_collected_but_only_a_few_listed(tmp_path: Path) -> None:
    lines = [_good(0)] + ["{oops"] * 8
    path = _write_lines(tmp_path / "d.jsonl", lines)
    with pytest.raises(DataError) as info:
        prepare(tmp_path, path)
    message = str(info.value)
    assert "8 line(s)" in message
    assert f"{path}:2:" in message and f"{path}:6:" in message
    assert f"{path}:7:" not in message
    assert "and 3 more" in message


def test_non_object_line(tmp_path: Path) -> None:
    path = _write_lines(tmp_path / "d.jsonl", [_good(0), "[1, 2]"])
    with pytest.raises(DataError, match=rf"{path}:2: expected a JSON object, got an array"):
        prepare(tmp_path, path)


def test_malformed_gzipped_jsonl_line(tmp_path: Path) -> None:
    import gzip

    path = tmp_path / "d.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write(_good(0) + "\n" + _good(1) + "\nnot json\n")
    with pytest.raises(DataError, match=rf"{path}:3: "):
        prepare(tmp_path, path)


def test_malformed_json_array_names_the_line(tmp_path: Path) -> None:
    text = json.dumps(chat_rows(2), indent=2)
    lines = text.splitlines()
    lines.insert(5, "    oops,")
    path = _write_lines(tmp_path / "d.json", lines)
    with pytest.raises(DataError, match=rf"{path}:6: "):
        prepare(tmp_path, path)


@pytest.mark.parametrize("name", ["empty.jsonl", "empty.json", "empty.csv"])
def test_empty_data_is_an_error(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("[]\n" if name.endswith(".json") else "\n", encoding="utf-8")
    with pytest.raises(DataError, match="empty"):
        prepare(tmp_path, path)


def _empty_reply(i: int) -> dict[str, Any]:
    row = chat_row(i)
    row["messages"][1]["content"] = "  "
    return row


def test_empty_assistant_rows_are_listed_with_lines(tmp_path: Path) -> None:
    rows = [chat_row(0), _empty_reply(1), chat_row(2), _empty_reply(3)]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    with pytest.raises(DataError) as info:
        prepare(tmp_path, path)
    message = str(info.value)
    assert f"{path}:2: the assistant turn is empty" in message
    assert f"{path}:4: the assistant turn is empty" in message
    assert f"{path}:1:" not in message
    assert "drop_invalid_rows" in message


def test_at_most_ten_invalid_rows_are_listed(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [_empty_reply(i) for i in range(14)] + chat_rows(1))
    with pytest.raises(DataError) as info:
        prepare(tmp_path, path)
    message = str(info.value)
    assert f"{path}:10:" in message and f"{path}:11:" not in message
    assert "and 4 more" in message


def test_row_without_assistant_turn_counts_as_empty(tmp_path: Path) -> None:
    row = {"messages": [{"role": "user", "content": "hi"}]}
    path = write_jsonl(tmp_path / "d.jsonl", [chat_row(0), row])
    with pytest.raises(DataError, match=rf"{path}:2: the assistant turn is empty"):
        prepare(tmp_path, path)


def test_drop_invalid_rows_drops_and_counts(tmp_path: Path) -> None:
    rows = [chat_row(0), _empty_reply(1), chat_row(2), _empty_reply(3), chat_row(4)]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    prepared = prepare(tmp_path, path, drop_invalid_rows=True)
    assert prepared.n_train == 3
    assert prepared.report.n_rows == 5
    assert prepared.report.empty_assistant_rows == 2
    assert prepared.report.dropped_rows == 2
    assert any("dropped 2" in w for w in prepared.report.warnings)


def test_identical_preference_rows(tmp_path: Path) -> None:
    same = {"prompt": "q", "chosen": "same", "rejected": "same"}
    rows = [pref_row(0), same, pref_row(2)]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    with pytest.raises(DataError, match=rf"{path}:2: chosen and rejected are identical"):
        prepare(tmp_path, path, method="dpo")
    prepared = prepare(tmp_path, path, method="dpo", drop_invalid_rows=True)
    assert prepared.n_train == 2
    assert prepared.report.identical_preference_rows == 1


def test_everything_dropped_is_an_error(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [_empty_reply(0), _empty_reply(1)])
    with pytest.raises(DataError, match="all 2 rows were invalid"):
        prepare(tmp_path, path, drop_invalid_rows=True)


def test_wrong_role_names_the_line(tmp_path: Path) -> None:
    bad = {"messages": [{"role": "human", "content": "hi"}, {"role": "assistant", "content": "x"}]}
    path = write_jsonl(tmp_path / "d.jsonl", [chat_row(0), chat_row(1), bad])
    with pytest.raises(DataError, match=rf"{path}:3: messages\[0\]: role 'human' is not one of"):
        prepare(tmp_path, path)


def test_message_without_content_names_the_line(tmp_path: Path) -> None:
    bad = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant"}]}
    path = write_jsonl(tmp_path / "d.jsonl", [bad, chat_row(1)])
    with pytest.raises(DataError, match=rf"{path}:1: messages\[1\] \(assistant\) has no content"):
        prepare(tmp_path, path)


def test_structural_and_content_problems_are_reported_together(tmp_path: Path) -> None:
    no_role = {"messages": [{"content": "hi"}]}
    path = write_jsonl(tmp_path / "d.jsonl", [no_role, _empty_reply(1), chat_row(2)])
    with pytest.raises(DataError) as info:
        prepare(tmp_path, path)
    message = str(info.value)
    assert f"{path}:1: messages[0] has no 'role'" in message
    assert f"{path}:2: the assistant turn is empty" in message


def test_sharegpt_unknown_speaker(tmp_path: Path) -> None:
    row = {"conversations": [{"from": "human", "value": "hi"}, {"from": "robot", "value": "x"}]}
    path = write_jsonl(tmp_path / "d.jsonl", [row])
    with pytest.raises(DataError, match=rf"{path}:1: conversations\[1\]: 'from' 'robot'"):
        prepare(tmp_path, path)


def test_parquet_rows_are_located_by_row_number(tmp_path: Path) -> None:
    rows = [*chat_rows(2), _empty_reply(2)]
    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    with pytest.raises(DataError, match=rf"{path} row 3: the assistant turn is empty"):
        prepare(tmp_path, path)


def test_csv_alpaca_empty_output_is_located_by_row(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("instruction,input,output\nsay hi,,hi\nsay bye,,\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"{path} row 2: the assistant turn is empty"):
        prepare(tmp_path, path)
