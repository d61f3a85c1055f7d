"""A deployment name that is still serving: stop and replace the old server, or refuse.

Deploying a name whose earlier server was kept running used to overwrite its registry row,
leaving the first vLLM process running and untracked. :func:`make_way_for` stops it first
(``serve.on_existing: replace``, the default) or refuses, naming the running server.
"""

from __future__ import annotations

import contextlib
import logging

from tuneship.errors import ServingError
from tuneship.serving.process import process_start_time

logger = logging.getLogger(__name__)


def is_alive(details: dict[str, object]) -> bool:
    """Whether the recorded server's group leader still runs (and is the same process)."""
    pid = details.get("pid")
    if not isinstance(pid, int):
        return False
    started = process_start_time(pid)
    return started is not None and started == details.get("pid_start_time")


def make_way_for(name: str, registry_url: str | None, on_existing: str) -> str | None:
    """Deal with a live server recorded under ``name`` before a new one starts.

    Args:
        name: The deployment name about to be (re)deployed.
        registry_url: The registry (None: nothing is recorded, nothing to do).
        on_existing: ``replace`` stops the running server; ``refuse`` raises.

    Returns:
        What was done, for the log; None when no live server had that name.

    Raises:
        ServingError: A live server has that name and ``on_existing`` is ``refuse``.
    """
    if registry_url is None:
        return None
    from tuneship.registry import Registry
    from tuneship.serving.lifecycle import STATUS_RUNNING, STATUS_STARTING, stop_deployment

    with contextlib.closing(Registry(registry_url)) as registry:
        entry = registry.get_deployment(name)
    if (
        entry is None
        or entry.status not in (STATUS_RUNNING, STATUS_STARTING)
        or not is_alive(entry.details or {})
    ):
        return None
    where = f"{entry.url} (pid {(entry.details or {}).get('pid')})"
    if on_existing == "refuse":
        raise ServingError(
            f"deployment {name!r} is still serving at {where}; stop it with "
            f"`tuneship deployments stop {name}` or set serve.on_existing=replace"
        )
    stop_deployment(name, registry_url)
    message = f"stopped the running deployment {name!r} at {where} to replace it"
    logger.warning("%s", message)
    return message
