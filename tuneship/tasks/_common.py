"""What every tuneship task shares: the transient-only retry rule and a safe logger."""

from __future__ import annotations

import logging
from typing import Any

from tuneship.errors import TransientError

TRANSIENT_TYPES: tuple[type[BaseException], ...] = (TransientError, ConnectionError, TimeoutError)


def is_transient(exc: BaseException) -> bool:
    """Return True for errors worth retrying (network blips, rate limits, busy resources)."""
    return isinstance(exc, TRANSIENT_TYPES)


def retry_on_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry only transient errors.

    A bad config or bad data fails the same way every time, so retrying it would only
    waste time (and, on rented GPUs, money).
    """
    try:
        state.result()
    except Exception as exc:  # the state re-raises the task's own exception here
        return is_transient(exc)
    return False


def get_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """Return the Prefect run logger inside a run, else a module logger."""
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("tuneship")


def artifact_key(*parts: str) -> str:
    """Build an artifact key: Prefect allows only lowercase letters, digits and dashes."""
    import re

    raw = "-".join(p for p in parts if p)
    return re.sub(r"[^a-z0-9-]+", "-", raw.lower()).strip("-")[:100]
