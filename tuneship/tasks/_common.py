"""What every tuneship task shares: one decorator, one retry policy per service, a logger."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from prefect import Task, task
from prefect.cache_policies import NO_CACHE

from tuneship.errors import is_transient

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class RetryPolicy:
    """How often, and how long apart, a task is retried after a transient error."""

    retries: int
    delays_s: tuple[float, ...] = ()


NO_RETRY = RetryPolicy(0)
"""Local work whose failures repeat on a retry (bad data, a bad merge, a full disk)."""
HUB_RETRY = RetryPolicy(3, (10, 30, 90))
"""Hugging Face Hub calls: rate limits and 5xx clear within minutes."""
REGISTRY_RETRY = RetryPolicy(2, (5,))
"""The registry database (a busy SQLite file or a dropped Postgres connection)."""
GPU_RETRY = RetryPolicy(2, (5,))
"""Local GPUs: a device another process is still releasing."""
TRAINING_RETRY = RetryPolicy(1, (10,))
"""A training job: one more try after a transient failure (it resumes from checkpoints)."""
ENDPOINT_RETRY = RetryPolicy(2, (5,))
"""Requests to a served endpoint that has just come up."""


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


def pipeline_task(
    name: str, policy: RetryPolicy = NO_RETRY, run_name: str | Callable[..., str] | None = None
) -> Callable[[Callable[P, R]], Task[P, R]]:
    """Decorate a function as a tuneship task: named, uncached, retried per ``policy``.

    Results are never cached (a run's inputs are files that change under the same path),
    and only transient errors are retried.

    Args:
        name: The task's name in the Prefect UI.
        policy: The retry policy of the service the task talks to.
        run_name: The task run's name, saying what it works on: a format string over the
            task's parameters (``"train-{run_name}"``, ``"{config.name}"``) or a callable
            taking ``parameters`` (Prefect's ``task_run_name``).

    Returns:
        A decorator turning a function into a Prefect task.
    """

    return task(
        name=name,
        retries=policy.retries,
        retry_delay_seconds=list(policy.delays_s) or 0,
        retry_condition_fn=retry_on_transient if policy.retries else None,
        cache_policy=NO_CACHE,
        task_run_name=run_name,
    )


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
