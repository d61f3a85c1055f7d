"""Every source type that data.path may name, read to the same trainer rows."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _data_helpers import chat_rows, prepare, read_jsonl, write_jsonl

from tuneship.config import DataConfig
from tuneship.data import prepare_dataset
from tuneship.demo.tiny_model import sample_data_path
from tuneship.errors import DataError, TuneshipError


@pytest.fixture(autouse=True)
def _datasets_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep datasets' Arrow cache inside the test's temp folder."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))


ROWS = chat_rows(6)


def _write_json_array(path: Path) -> Path:
    # One key per line so element lines differ from element indexes.
    path.write_text(json.dumps(ROWS, indent=2), encoding="utf-8")
    return path


def _write_json_data(path: Path) -> Path:
    path.write_text(json.dumps({"version": 1, "data": ROWS}, indent=1), encoding="utf-8")
    return path


def _write_json_lines(path: Path) -> Path:
    return write_jsonl(path, ROWS)


def _write_parquet(path: Path) -> Path:
    pq.write_table(pa.Table.from_pylist(ROWS), path)
    return path


def _write_csv(path: Path) -> Path:
    import pandas as pd

    frame = pd.DataFrame({"messages": [json.dumps(r["messages"]) for r in ROWS]})
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    ("name", "writer"),
    [
        ("d.jsonl", lambda p: write_jsonl(p, ROWS)),
        ("d.jsonl.gz", lambda p: write_jsonl(p, ROWS, gz=True)),
        ("d.json", _write_json_array),
        ("wrapped.json", _write_json_data),
        ("lines.json", _write_json_lines),
        ("d.parquet", _write_parquet),
        ("d.csv", _write_csv),
    ],
)
def test_every_file_type_gives_the_same_rows(tmp_path: Path, name: str, writer: object) -> None:
    path = writer(tmp_path / name)  # type: ignore[operator]
    prepared = prepare(tmp_path, path)
    assert prepared.source_format == "messages"
    assert prepared.n_train == len(ROWS)
    assert read_jsonl(prepared.train_path) == ROWS


def test_json_array_rows_are_located_by_line(tmp_path: Path) -> None:
    rows = [*chat_rows(2), {"messages": [{"role": "bot", "content": "x"}]}]
    path = tmp_path / "d.json"
    path.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    lines = [i + 1 for i, line in enumerate(path.read_text().splitlines()) if line == "  {"]
    with pytest.raises(DataError, match=rf"{path}:{lines[2]}: messages\[0\]: role 'bot'"):
        prepare(tmp_path, path)


def test_demo_sentinel_reads_the_shipped_sample(tmp_path: Path) -> None:
    prepared = prepare_dataset(DataConfig.model_validate({}), "sft", False, tmp_path / "out")
    n_lines = len(sample_data_path().read_text().splitlines())
    assert prepared.n_train == n_lines
    assert read_jsonl(prepared.train_path) == read_jsonl(sample_data_path())


def test_save_to_disk_dataset(tmp_path: Path) -> None:
    import datasets

    datasets.Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "saved"))
    prepared = prepare(tmp_path, tmp_path / "saved")
    assert read_jsonl(prepared.train_path) == ROWS


def test_save_to_disk_dataset_dict_uses_its_test_split(tmp_path: Path) -> None:
    import datasets

    test_rows = chat_rows(2, start=100)
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(ROWS), "test": datasets.Dataset.from_list(test_rows)}
    ).save_to_disk(str(tmp_path / "saved"))
    prepared = prepare(tmp_path, tmp_path / "saved", evaluate=True)
    assert prepared.eval_source == "split 'test'"
    assert read_jsonl(prepared.train_path) == ROWS
    assert prepared.eval_path is not None
    assert read_jsonl(prepared.eval_path) == test_rows


def test_folder_of_split_files(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "data" / "train.jsonl", ROWS)
    write_jsonl(tmp_path / "data" / "validation.jsonl", chat_rows(2, start=50), gz=False)
    prepared = prepare(tmp_path, tmp_path / "data", evaluate=True)
    assert prepared.eval_source == "split 'validation'"
    assert prepared.n_train == len(ROWS)
    assert prepared.n_eval == 2


def test_hub_layout_folder_goes_through_load_dataset(tmp_path: Path) -> None:
    # Laid out like a Hub dataset repo; a real id takes the same
    # datasets.load_dataset(id, subset, split=...) path.
    repo = tmp_path / "acme-chat"
    (repo / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(ROWS), repo / "data" / "train-00000-of-00001.parquet")
    test_rows = chat_rows(3, start=200)
    pq.write_table(pa.Table.from_pylist(test_rows), repo / "data" / "test-00000-of-00001.parquet")
    prepared = prepare(tmp_path, repo, evaluate=True)
    assert read_jsonl(prepared.train_path) == ROWS
    assert prepared.eval_path is not None
    assert read_jsonl(prepared.eval_path) == test_rows
    assert prepared.eval_source == "split 'test'"


def test_hub_layout_subset_selects_the_config(tmp_path: Path) -> None:
    repo = tmp_path / "acme-multi"
    write_jsonl(repo / "easy" / "train.jsonl", chat_rows(4))
    write_jsonl(repo / "hard" / "train.jsonl", chat_rows(5, start=1000))
    (repo / "README.md").write_text(
        "---\nconfigs:\n"
        "- config_name: easy\n  data_files:\n  - split: train\n    path: easy/train.jsonl\n"
        "- config_name: hard\n  data_files:\n  - split: train\n    path: hard/train.jsonl\n"
        "---\n# acme multi\n",
        encoding="utf-8",
    )
    prepared = prepare(tmp_path, repo, subset="hard")
    assert read_jsonl(prepared.train_path) == chat_rows(5, start=1000)
    with pytest.raises(DataError, match="nope"):
        prepare(tmp_path, repo, subset="nope", out="p2")


def test_max_rows_limits_rows_read(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", chat_rows(20))
    prepared = prepare(tmp_path, path, max_rows=7)
    assert prepared.report.n_rows == 7
    assert read_jsonl(prepared.train_path) == chat_rows(7)


def test_max_rows_applies_to_hub_layout(tmp_path: Path) -> None:
    repo = tmp_path / "acme-chat"
    (repo / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(ROWS), repo / "data" / "train-00000-of-00001.parquet")
    prepared = prepare(tmp_path, repo, max_rows=2)
    assert read_jsonl(prepared.train_path) == ROWS[:2]


@pytest.mark.parametrize("missing", ["nope/train.jsonl", "no-such-file", "./acme/data"])
def test_missing_path_says_the_file_does_not_exist(tmp_path: Path, missing: str) -> None:
    with pytest.raises(DataError, match="does not exist"):
        prepare(tmp_path, missing)


def test_unknown_hub_id_offline_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TuneshipError, match="acme/no-such-dataset"):
        prepare(tmp_path, "acme/no-such-dataset")


def test_unsupported_file_type(tmp_path: Path) -> None:
    path = tmp_path / "d.txt"
    path.write_text("hello\n")
    with pytest.raises(DataError, match=r"d\.txt: unsupported file type"):
        prepare(tmp_path, path)


def test_split_file_given_twice_is_an_error(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "data" / "train.jsonl", ROWS)
    _write_parquet(tmp_path / "data" / "train.parquet")
    with pytest.raises(DataError, match="given twice"):
        prepare(tmp_path, tmp_path / "data")
