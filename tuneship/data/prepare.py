"""Prepare the dataset: read, validate, split, convert and write the trainer's JSONL files.

Everything that can be wrong with the data is found here, before any model is loaded:
parse errors, unknown formats, malformed rows, empty replies, identical preference pairs,
too little data to split, and rows the trainer will truncate.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneship.config import DataConfig, TrainingMethod
from tuneship.data.convert import convert_examples
from tuneship.data.formats import (
    FAMILY,
    ParsedRows,
    SourceFormat,
    accepted_formats,
    detect_format,
    parse_rows,
)
from tuneship.data.lengths import count_tokens
from tuneship.data.report import DataReport, PreparedData
from tuneship.data.rows import format_problems
from tuneship.data.sources import DataSource, open_source
from tuneship.errors import DataError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

EVAL_SPLIT_NAMES = ("test", "validation")
"""Splits used for evaluation, in order of preference, when data.eval_split is unset."""

TRAIN_FILE = "train.jsonl"
EVAL_FILE = "eval.jsonl"


def prepare_dataset(
    data: DataConfig,
    method: TrainingMethod,
    evaluate: bool,
    out_dir: Path,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> PreparedData:
    """Read, validate, split and convert the data; write train (and eval) JSONL files.

    Args:
        data: The data config.
        method: The training method (sft needs any chat data; dpo/orpo need preferences).
        evaluate: Whether to hold out an eval set (``training.eval_strategy != "no"``).
        out_dir: Folder for ``train.jsonl`` and ``eval.jsonl`` (created).
        tokenizer: The base model's tokenizer, to count rows longer than ``data.max_length``;
            lengths are not checked without it.

    Returns:
        Paths, counts, the fingerprint and the data report.

    Raises:
        DataError: The data cannot be used; the message names the file and lines (or rows)
            and says what to change.
        TransientError: A Hub dataset could not be reached.
    """
    out_dir = out_dir.expanduser().resolve()
    source = open_source(data)
    _require_split(source, data.split, "data.split")
    eval_split = _choose_eval_split(source, data, evaluate)

    train_rows = source.read(data.split, data.max_rows)
    if not train_rows:
        raise DataError(f"{_where(source, data.split)}: the data is empty (no rows)")
    eval_rows = source.read(eval_split, data.max_rows) if eval_split else []
    if eval_split and not eval_rows:
        raise DataError(f"{_where(source, eval_split)}: the eval split is empty (no rows)")

    fmt: SourceFormat = data.format if data.format != "auto" else detect_format(train_rows)
    parsed_train, parsed_eval = parse_rows(train_rows, fmt), parse_rows(eval_rows, fmt)
    _raise_on_problems(source, fmt, [parsed_train, parsed_eval], data.drop_invalid_rows)
    train = [ex for ex in parsed_train.examples if not ex.invalid]
    held_out = [ex for ex in parsed_eval.examples if not ex.invalid]
    dropped = len(parsed_train.examples) + len(parsed_eval.examples) - len(train) - len(held_out)
    if not train:
        raise DataError(
            f"{source.description}: all {len(train_rows)} rows were invalid and dropped "
            "(data.drop_invalid_rows is set); fix the data"
        )

    if eval_split and not held_out:
        raise DataError(
            f"{_where(source, eval_split)}: all {len(eval_rows)} eval rows were invalid and "
            "dropped (data.drop_invalid_rows is set); fix the eval split"
        )

    converted, trainer_format, warnings = convert_examples(
        train + held_out, fmt, FAMILY[fmt], method
    )
    train_out, eval_out = converted[: len(train)], converted[len(train) :]
    if not evaluate:
        eval_source = "none"
    elif eval_split:
        eval_source = f"split {eval_split!r}"
    else:
        train_out, eval_out = split_rows(train_out, data.eval_fraction, data.seed)
        eval_source = f"seeded {data.eval_fraction * 100:g}% split (seed {data.seed})"

    report = DataReport(
        n_rows=len(train_rows) + len(eval_rows),
        empty_assistant_rows=len(parsed_train.empty_assistant) + len(parsed_eval.empty_assistant),
        identical_preference_rows=len(parsed_train.identical_preference)
        + len(parsed_eval.identical_preference),
        dropped_rows=dropped,
        max_length=data.max_length,
        warnings=warnings,
    )
    if dropped:
        report.warnings.append(f"dropped {dropped} invalid row(s) (data.drop_invalid_rows)")
    if tokenizer is not None:
        _measure_lengths(report, train_out + eval_out, tokenizer)
    else:
        report.warnings.append("no tokenizer given: row lengths were not checked")

    out_dir.mkdir(parents=True, exist_ok=True)
    train_bytes, eval_bytes = _jsonl_bytes(train_out), _jsonl_bytes(eval_out)
    train_path, eval_path = out_dir / TRAIN_FILE, out_dir / EVAL_FILE
    train_path.write_bytes(train_bytes)
    if evaluate:
        eval_path.write_bytes(eval_bytes)
    else:
        eval_path.unlink(missing_ok=True)  # a stale file from an earlier run would mislead
    return PreparedData(
        train_path=str(train_path),
        eval_path=str(eval_path) if evaluate else None,
        source_format=fmt,
        trainer_format=trainer_format,
        n_train=len(train_out),
        n_eval=len(eval_out),
        fingerprint=fingerprint_split(train_bytes, eval_bytes, data.seed),
        eval_source=eval_source,
        report=report,
    )


def _where(source: DataSource, split: str) -> str:
    return source.description if source.single else f"{source.description} [{split}]"


def _require_split(source: DataSource, split: str, field: str) -> None:
    if split not in source.splits:
        raise DataError(
            f"{field}: split {split!r} not found in {source.description}; it has "
            f"{', '.join(repr(s) for s in source.splits) or 'no splits'}"
        )


def _choose_eval_split(source: DataSource, data: DataConfig, evaluate: bool) -> str | None:
    """Return the split to evaluate on, or None for none / a seeded split."""
    if not evaluate:
        return None
    if data.eval_split:
        if data.eval_split == data.split:
            raise DataError(
                f"data.eval_split: {data.eval_split!r} is also data.split; evaluating on the "
                "training rows measures nothing. Name another split or unset data.eval_split."
            )
        if source.single:
            raise DataError(
                f"data.eval_split: {data.eval_split!r} not found: {source.description} is a "
                "single table with no splits. Unset data.eval_split to hold out a seeded "
                "data.eval_fraction, or give a folder with split files."
            )
        _require_split(source, data.eval_split, "data.eval_split")
        return data.eval_split
    if source.single:
        return None
    return next((s for s in EVAL_SPLIT_NAMES if s in source.splits and s != data.split), None)


def _raise_on_problems(
    source: DataSource, fmt: SourceFormat, parsed: list[ParsedRows], drop_invalid: bool
) -> None:
    errors = [e for p in parsed for e in p.errors]
    invalid = [e for p in parsed for e in p.empty_assistant + p.identical_preference]
    if errors:
        raise DataError(
            format_problems(
                f"{source.description}: {len(errors)} row(s) are malformed for the {fmt!r} format:",
                errors + invalid,
                hint=f"Accepted formats:\n{accepted_formats()}",
            )
        )
    if invalid and not drop_invalid:
        raise DataError(
            format_problems(
                f"{source.description}: {len(invalid)} row(s) cannot be trained on:",
                invalid,
                hint="Fix or remove them, or set data.drop_invalid_rows: true to drop them "
                "(they are counted in the data report).",
            )
        )


def split_rows(
    rows: list[dict[str, Any]], fraction: float, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Hold out ``floor(len(rows) * fraction)`` rows, chosen by ``seed``.

    Both parts keep the original row order; the same rows and seed give the same split.

    Args:
        rows: The rows to split.
        fraction: Share held out for eval.
        seed: Split seed.

    Returns:
        (train rows, eval rows).

    Raises:
        DataError: Train or eval would be empty; says how many rows there are.
    """
    n_eval = math.floor(len(rows) * fraction + 1e-9)
    if n_eval < 1 or n_eval >= len(rows):
        need = math.ceil(1 / fraction)
        raise DataError(
            f"too few rows to hold out an eval set: {len(rows)} usable row(s) with "
            f"data.eval_fraction={fraction} gives {n_eval} eval and {len(rows) - n_eval} "
            f"train rows. Add rows (at least {need} are needed), raise data.eval_fraction, "
            "or set training.eval_strategy=no to train without evaluation."
        )
    held = set(random.Random(seed).sample(range(len(rows)), n_eval))
    train = [r for i, r in enumerate(rows) if i not in held]
    held_out = [r for i, r in enumerate(rows) if i in held]
    return train, held_out


def _jsonl_bytes(rows: list[dict[str, Any]]) -> bytes:
    """Serialise rows canonically (sorted keys, compact), one per line."""
    return b"".join(
        json.dumps(r, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode() + b"\n"
        for r in rows
    )


def fingerprint_split(train: bytes, held_out: bytes, seed: int) -> str:
    """Return the sha256 hex of the written train and eval content plus the split seed."""
    digest = hashlib.sha256()
    digest.update(f"tuneship-data-v1 seed={seed}\n".encode())
    digest.update(hashlib.sha256(train).digest())
    digest.update(hashlib.sha256(held_out).digest())
    return digest.hexdigest()


def _measure_lengths(
    report: DataReport, rows: list[dict[str, Any]], tokenizer: PreTrainedTokenizerBase
) -> None:
    lengths = count_tokens(rows, tokenizer, report.warnings)
    report.longest_row_tokens = max(lengths, default=0)
    # Truncated rows train on max_length tokens: the cost estimate's tokens per row.
    capped = [min(n, report.max_length) for n in lengths]
    report.mean_row_tokens = round(sum(capped) / len(capped), 1) if capped else None
    report.long_rows = sum(1 for n in lengths if n > report.max_length)
    report.long_row_share = report.long_rows / len(lengths) if lengths else 0.0
    if report.long_rows:
        report.warnings.append(
            f"{report.long_rows} of {len(lengths)} rows ({report.long_row_share:.1%}) are longer "
            f"than data.max_length={report.max_length} tokens (longest "
            f"{report.longest_row_tokens}) and will be truncated; raise data.max_length or "
            "shorten those rows"
        )
