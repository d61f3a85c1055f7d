"""Read data files into rows that remember their file and line (or row number).

JSONL (plain or gzipped) and JSON are parsed here, line by line, so a bad line is
reported as ``path:LINE``. Parquet and CSV go through pyarrow and pandas; their rows are
located as ``path row N``.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from tuneship.data.rows import Row, format_problems
from tuneship.errors import DataError

DATA_SUFFIXES = (".jsonl.gz", ".jsonl", ".json", ".parquet", ".csv")
"""File endings tuneship reads, longest first so ``.jsonl.gz`` wins over ``.gz``."""

MAX_PARSE_ERRORS = 5
"""Parse errors listed in one message."""


def data_suffix(path: Path) -> str | None:
    """Return the data file ending of ``path`` (e.g. ``.jsonl.gz``), or None if unsupported."""
    name = path.name.lower()
    return next((s for s in DATA_SUFFIXES if name.endswith(s)), None)


def split_name(path: Path) -> str:
    """Return the split a file names, e.g. ``test`` for ``test.jsonl.gz``."""
    suffix = data_suffix(path) or path.suffix
    return path.name[: len(path.name) - len(suffix)]


def read_file(path: Path, max_rows: int | None = None) -> list[Row]:
    """Read a data file into rows.

    Args:
        path: A .jsonl, .jsonl.gz, .json, .parquet or .csv file.
        max_rows: Stop after this many rows.

    Returns:
        The rows, in file order.

    Raises:
        DataError: The file type is unsupported or the file cannot be parsed; the message
            names the file and, for JSON, the lines.
    """
    suffix = data_suffix(path)
    if suffix in (".jsonl", ".jsonl.gz"):
        return read_jsonl(path, max_rows)
    if suffix == ".json":
        return read_json(path, max_rows)
    if suffix == ".parquet":
        return read_parquet(path, max_rows)
    if suffix == ".csv":
        return read_csv(path, max_rows)
    raise DataError(
        f"{path}: unsupported file type; use one of {', '.join(DATA_SUFFIXES)}, "
        "a datasets.save_to_disk folder, or a Hub dataset id"
    )


def _open_text(path: Path) -> IO[str]:
    # utf-8-sig: a byte-order mark at the start (common from Windows tools) is dropped.
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig")
    return path.open("r", encoding="utf-8-sig")


def _not_utf8(path: Path, exc: UnicodeDecodeError) -> DataError:
    """Name the line and byte offset of the first byte that is not UTF-8."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as handle:
        raw = handle.read()
    try:
        raw.decode("utf-8-sig")
    except UnicodeDecodeError as found:
        line = raw.count(b"\n", 0, found.start) + 1
        bad = raw[found.start : found.start + 1]
        return DataError(
            f"{path}:{line}: not UTF-8 text (byte {found.start} of the file is {bad!r}); "
            "save the file as UTF-8"
        )
    return DataError(f"{path}: not UTF-8 text ({exc.reason})")


def _raise_parse_errors(path: Path, errors: list[str]) -> None:
    if errors:
        raise DataError(
            format_problems(
                f"{path}: {len(errors)} line(s) are not valid JSON objects:",
                errors,
                limit=MAX_PARSE_ERRORS,
            )
        )


def _lines(handle: IO[str], path: Path) -> Iterator[tuple[int, str]]:
    """Yield (line number, text), turning decoding failures into a DataError."""
    try:
        yield from enumerate(handle, start=1)
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, exc) from None
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot be read: {exc}") from None


def read_jsonl(path: Path, max_rows: int | None = None) -> list[Row]:
    """Read JSON Lines (optionally gzipped), one object per line; blank lines are skipped.

    Args:
        path: The file.
        max_rows: Stop after this many rows.

    Returns:
        The rows, each located as ``path:LINE``.

    Raises:
        DataError: Some lines are not JSON objects; lists the first few as ``path:LINE: why``.
    """
    rows: list[Row] = []
    errors: list[str] = []
    with _open_text(path) as handle:
        for lineno, line in _lines(handle, path):
            if max_rows is not None and len(rows) >= max_rows:
                break
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                errors.append(f"{path}:{lineno}: {exc.msg} (column {exc.colno})")
                continue
            if not isinstance(value, dict):
                errors.append(f"{path}:{lineno}: expected a JSON object, got {_kind(value)}")
                continue
            rows.append(Row(f"{path}:{lineno}", value))
    _raise_parse_errors(path, errors)
    return rows


def _kind(value: Any) -> str:
    return {list: "an array", str: "a string", type(None): "null", bool: "a boolean"}.get(
        type(value), "a number"
    )


def _skip_ws(text: str, idx: int) -> int:
    while idx < len(text) and text[idx] in " \t\r\n":
        idx += 1
    return idx


def _element_offsets(text: str, start: int) -> list[int]:
    """Return the offset of each element of the (already valid) JSON array at ``start``."""
    decoder = json.JSONDecoder()
    offsets = []
    idx = _skip_ws(text, start + 1)
    while idx < len(text) and text[idx] != "]":
        offsets.append(idx)
        _, idx = decoder.raw_decode(text, idx)
        idx = _skip_ws(text, idx)
        if idx < len(text) and text[idx] == ",":
            idx = _skip_ws(text, idx + 1)
    return offsets


def _member_offset(text: str, key: str) -> int | None:
    """Return the offset of the value of ``key`` in the (already valid) top-level object."""
    decoder = json.JSONDecoder()
    idx = _skip_ws(text, _skip_ws(text, 0) + 1)
    while idx < len(text) and text[idx] == '"':
        name, idx = decoder.raw_decode(text, idx)
        idx = _skip_ws(text, _skip_ws(text, idx) + 1)  # past the colon
        if name == key:
            return idx
        _, idx = decoder.raw_decode(text, idx)
        idx = _skip_ws(text, idx)
        if idx < len(text) and text[idx] == ",":
            idx = _skip_ws(text, idx + 1)
    return None


def _line_numbers(text: str, offsets: Iterable[int]) -> list[int]:
    lines, line, last = [], 1, 0
    for offset in offsets:
        line += text.count("\n", last, offset)
        last = offset
        lines.append(line)
    return lines


def read_json(path: Path, max_rows: int | None = None) -> list[Row]:
    """Read a JSON file: an array of rows, an object with a ``data`` array, or JSON Lines.

    Args:
        path: The file.
        max_rows: Stop after this many rows.

    Returns:
        The rows, each located as ``path:LINE`` (the line where the row starts).

    Raises:
        DataError: The file is not valid JSON (``path:LINE: why``) or holds no row array.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, exc) from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data" and text.lstrip().startswith("{"):
            # Several top-level objects: JSON Lines saved with a .json name.
            return read_jsonl(path, max_rows)
        raise DataError(f"{path}:{exc.lineno}: {exc.msg} (column {exc.colno})") from None
    if isinstance(value, dict) and isinstance(value.get("data"), list):
        items, start = value["data"], _member_offset(text, "data")
    elif isinstance(value, list):
        items, start = value, _skip_ws(text, 0)
    else:
        raise DataError(
            f"{path}: expected a JSON array of rows, an object with a 'data' array, or one "
            f"object per line; found {_kind(value) if not isinstance(value, dict) else 'an object'}"
            f" with keys {sorted(value) if isinstance(value, dict) else '-'}"
        )
    if max_rows is not None:
        items = items[:max_rows]
    offsets = _element_offsets(text, start)[: len(items)] if start is not None else []
    lines = _line_numbers(text, offsets)
    rows, errors = [], []
    for i, item in enumerate(items):
        where = f"{path}:{lines[i]}" if i < len(lines) else f"{path} row {i + 1}"
        if isinstance(item, dict):
            rows.append(Row(where, item))
        else:
            errors.append(f"{where}: expected a JSON object, got {_kind(item)}")
    _raise_parse_errors(path, errors)
    return rows


def records_to_rows(records: Iterable[dict[str, Any]], source: str) -> list[Row]:
    """Wrap records from a table in rows located as ``source row N`` (N from 1)."""
    return [Row(f"{source} row {i}", dict(rec)) for i, rec in enumerate(records, start=1)]


def read_parquet(path: Path, max_rows: int | None = None) -> list[Row]:
    """Read a Parquet file with pyarrow (nested message lists come back as Python lists).

    Args:
        path: The file.
        max_rows: Keep only the first rows.

    Returns:
        The rows, located as ``path row N``.

    Raises:
        DataError: The file is not readable Parquet.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet file: {exc}") from None
    if max_rows is not None:
        table = table.slice(0, max_rows)
    return records_to_rows(table.to_pylist(), str(path))


def read_csv(path: Path, max_rows: int | None = None) -> list[Row]:
    """Read a CSV file with a header row; every cell is read as a string.

    Args:
        path: The file.
        max_rows: Keep only the first rows.

    Returns:
        The rows, located as ``path row N`` (row 1 is the first row after the header).

    Raises:
        DataError: The file is not parseable CSV.
    """
    import pandas as pd

    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, nrows=max_rows)
    except pd.errors.EmptyDataError:
        return []
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path}: not readable CSV: {exc}") from None
    return records_to_rows(frame.to_dict(orient="records"), str(path))
