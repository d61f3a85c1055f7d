"""The one rule for "is this a Hugging Face Hub repo id?" (models, datasets, publish targets).

The syntax is huggingface_hub's own (``validate_repo_id``); on top of it tuneship treats
a name as local when it is path-like, names a data file, is a ``scheme://`` sentinel such
as the demo model, or exists on disk.
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

DATA_FILE_SUFFIXES = (".json", ".jsonl", ".parquet", ".csv", ".gz")
"""Endings that mark a data file: ``data/train.jsonl`` is valid id syntax but never a repo."""


def is_valid_repo_id(value: str, *, namespaced: bool = False) -> bool:
    """Whether ``value`` has the syntax of a Hub repo id.

    Args:
        value: The candidate, e.g. ``meta-llama/Llama-3.1-8B`` or ``gpt2``.
        namespaced: Require ``namespace/name`` (publish targets always have a namespace).

    Returns:
        True when huggingface_hub accepts it (and it has a namespace, when required).
    """
    if namespaced and value.count("/") != 1:
        return False
    try:
        validate_repo_id(value)
    except HFValidationError:
        return False
    return True


def is_hub_id(value: str, *, namespaced: bool = False) -> bool:
    """Whether ``value`` names a Hub repo rather than a local path, data file or sentinel.

    Args:
        value: A configured model or dataset.
        namespaced: Require ``namespace/name``.

    Returns:
        False for ``scheme://`` values (the demo model), path-like strings (``./x``,
        ``/x``, ``~/x``), data file names and anything that exists locally; otherwise
        whether the syntax is a valid repo id.
    """
    if "://" in value or value.startswith((".", "/", "~")):
        return False
    if value.lower().endswith(DATA_FILE_SUFFIXES):
        return False
    if not is_valid_repo_id(value, namespaced=namespaced):
        return False
    return not Path(value).expanduser().exists()
