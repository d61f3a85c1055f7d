"""Dataset preparation: read, validate, split and convert training data (no Prefect here).

The entry point is :func:`prepare_dataset`; its result, :class:`PreparedData`, holds the
paths of the written JSONL files, the counts, a fingerprint and a :class:`DataReport`.
"""

from tuneship.data.prepare import prepare_dataset
from tuneship.data.report import DataReport, PreparedData, summary_table

__all__ = ["DataReport", "PreparedData", "prepare_dataset", "summary_table"]
