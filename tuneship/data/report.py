"""The result of preparing a dataset, its data report, and the report as table rows."""

from __future__ import annotations

from pydantic import BaseModel, Field

from tuneship.data.convert import TrainerFormat
from tuneship.data.formats import SourceFormat


class DataReport(BaseModel):
    """What validation found in the data.

    Attributes:
        n_rows: Rows read (train plus a separate eval split, after ``data.max_rows``).
        empty_assistant_rows: Rows with an empty (or missing) assistant turn.
        identical_preference_rows: Preference rows whose chosen equals rejected.
        dropped_rows: Rows dropped because ``data.drop_invalid_rows`` is set.
        long_rows: Kept rows longer than ``max_length`` tokens (truncated in training).
        long_row_share: ``long_rows`` over kept rows.
        max_length: The token limit checked against (``data.max_length``).
        longest_row_tokens: Tokens in the longest row; None when no tokenizer was given.
        mean_row_tokens: Mean tokens per row as trained (capped at ``max_length``); None
            when no tokenizer was given.
        warnings: Things to look at that do not stop training.
    """

    n_rows: int
    empty_assistant_rows: int = 0
    identical_preference_rows: int = 0
    dropped_rows: int = 0
    long_rows: int = 0
    long_row_share: float = 0.0
    max_length: int
    longest_row_tokens: int | None = None
    mean_row_tokens: float | None = None
    warnings: list[str] = Field(default_factory=list)


class PreparedData(BaseModel):
    """A validated train (and eval) set written as JSONL in the trainer's format.

    Attributes:
        train_path: The train JSONL file.
        eval_path: The eval JSONL file, or None when not evaluating.
        source_format: The format the data came in (detected or from ``data.format``).
        trainer_format: The format of the written rows (TRL dataset format).
        n_train: Train rows written.
        n_eval: Eval rows written.
        fingerprint: sha256 hex of the written split content and the split seed; equal
            fingerprints mean identical train and eval sets.
        eval_source: Where the eval rows came from, e.g. ``split 'test'``.
        report: The data report.
    """

    train_path: str
    eval_path: str | None
    source_format: SourceFormat
    trainer_format: TrainerFormat
    n_train: int
    n_eval: int
    fingerprint: str
    eval_source: str
    report: DataReport


def summary_table(prepared: PreparedData) -> list[dict[str, str | int | float]]:
    """Return the data summary as ``{"metric", "value"}`` rows (for a table artifact).

    Args:
        prepared: The prepared data.

    Returns:
        One row per metric, then one per warning.
    """
    report = prepared.report
    items: list[tuple[str, str | int | float]] = [
        ("source format", prepared.source_format),
        ("trainer format", prepared.trainer_format),
        ("rows read", report.n_rows),
        ("train rows", prepared.n_train),
        ("eval rows", prepared.n_eval),
        ("eval source", prepared.eval_source),
        ("empty assistant rows", report.empty_assistant_rows),
        ("identical chosen/rejected rows", report.identical_preference_rows),
        ("dropped rows", report.dropped_rows),
        ("max length (tokens)", report.max_length),
        (
            "longest row (tokens)",
            report.longest_row_tokens if report.longest_row_tokens is not None else "not checked",
        ),
        ("rows over max length", report.long_rows),
        ("share over max length", round(report.long_row_share, 4)),
        ("fingerprint", prepared.fingerprint),
    ]
    items += [("warning", w) for w in report.warnings]
    rows: list[dict[str, str | int | float]] = [{"metric": m, "value": v} for m, v in items]
    return rows
