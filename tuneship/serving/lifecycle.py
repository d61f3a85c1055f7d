"""Deployment lifecycle: a server is left running only when the run succeeded and the
user asked for it.

:func:`managed_deployment` starts a server, records it in the registry, and stops it on
any exception, ``KeyboardInterrupt`` or SIGTERM (Prefect's cancellation signal), and on a
normal exit unless ``keep`` is set. :func:`stop_deployment` stops a recorded deployment
on any target from any process (``tuneship deployments stop NAME``).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from tuneship.config import ServeConfig
from tuneship.errors import ServingError, TuneshipError
from tuneship.serving.base import DeploymentInfo, ServingTarget

logger = logging.getLogger(__name__)

STATUS_STARTING = "starting"
STATUS_RUNNING = "running"
STATUS_STOPPED = "stopped"
STATUS_FAILED = "failed"


class TerminationRequested(BaseException):
    """Raised by the SIGTERM handler inside :func:`managed_deployment`.

    A ``BaseException`` (like ``KeyboardInterrupt``) so that ``except Exception`` in user
    code does not swallow a termination request.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(f"received signal {signum}")
        self.signum = signum


def _registry(url: str | None) -> Any:
    from tuneship.registry import Registry

    return Registry(url)


def _record(registry_url: str | None, info: DeploymentInfo, status: str) -> None:
    """Write the deployment and its status to the registry (no secrets)."""
    if registry_url is None:
        return
    from tuneship.registry import DeploymentEntry

    entry = DeploymentEntry(
        name=info.name,
        model_name=info.model_name or info.model,
        model_version=info.model_version or "unversioned",
        target=info.target,
        url=info.url,
        served_model_name=info.served_model_name,
        status=status,
        details=info.registry_details(),
    )
    with contextlib.closing(_registry(registry_url)) as registry:
        registry.upsert_deployment(entry)


def _set_status(registry_url: str | None, name: str, status: str) -> None:
    """Record a status while cleaning up; a registry failure must not hide the real error."""
    if registry_url is None:
        return
    try:
        with contextlib.closing(_registry(registry_url)) as registry:
            registry.set_deployment_status(name, status)
    except TuneshipError as exc:
        logger.error("could not record status %r of deployment %r: %s", status, name, exc)


def _mark_stopped_if_starting(registry_url: str | None, name: str) -> None:
    """Record ``stopped`` for a start that was interrupted, if its `starting` row got in."""
    if registry_url is None:
        return
    try:
        with contextlib.closing(_registry(registry_url)) as registry:
            entry = registry.get_deployment(name)
            if entry is not None and entry.status == STATUS_STARTING:
                registry.set_deployment_status(name, STATUS_STOPPED)
    except TuneshipError as exc:
        logger.error("could not record deployment %r as stopped: %s", name, exc)


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into :class:`TerminationRequested` while the block runs.

    A handler that was installed before (Prefect's, say) runs first; if it raises, its
    exception unwinds the block instead. Signal handlers can only be set from the main
    thread; elsewhere the block runs unchanged and the caller's own cleanup applies.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    fired = False

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal fired
        if fired:
            return  # already unwinding: a second SIGTERM must not interrupt the cleanup
        fired = True
        if callable(previous):
            previous(signum, frame)
        raise TerminationRequested(signum)

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stop_quietly(target: ServingTarget, info: DeploymentInfo) -> bool:
    try:
        target.stop(info)
    except ServingError as exc:
        logger.error("could not stop deployment %r: %s", info.name, exc)
        return False
    return True


@contextlib.contextmanager
def managed_deployment(
    model: str | Path,
    options: ServeConfig,
    *,
    name: str,
    model_name: str | None = None,
    model_version: str | None = None,
    registry_url: str | None = None,
    keep: bool | None = None,
    target: ServingTarget | None = None,
    plan: Any = None,
) -> Iterator[DeploymentInfo]:
    """Serve ``model`` for the duration of a ``with`` block.

    The server is stopped (and its status recorded) on any exception, on
    ``KeyboardInterrupt`` and on SIGTERM, also while it is still starting; on a normal
    exit it is stopped unless ``keep`` is true.

    Args:
        model: Model folder or Hub repo id.
        options: The ``serve`` section.
        name: Deployment name.
        model_name: Registered model name, recorded with the deployment.
        model_version: Registered model version, recorded with the deployment.
        registry_url: Registry to record the deployment in; None records nothing.
        keep: Leave the server running after a normal exit (default:
            ``options.keep_serving``).
        target: Serving target (default: the registered target ``options.target`` names,
            made without credentials; ``none`` means the local one).
        plan: The target's plan (from ``target.plan``); the target makes it when None.

    Yields:
        The ready deployment (``info.api_key`` holds the key).

    Raises:
        ServingError: The server could not start; nothing is left running.
    """
    if target is None:
        from tuneship.serving.targets import get_target

        # Targets that need credentials (RunPod) are passed in by the caller.
        target = get_target("local" if options.target == "none" else options.target)
    keep = options.keep_serving if keep is None else keep
    # The target sees the effective choice: a server that is not kept dies with this process.
    options = options.model_copy(update={"keep_serving": keep})
    created: list[DeploymentInfo] = []

    def record_starting(starting: DeploymentInfo) -> None:
        # Recorded before the wait for readiness: a tuneship killed while the server starts
        # (SIGKILL, no handler runs) leaves a row that `deployments list` shows and
        # `deployments stop` ends; a kept server would otherwise run on, untracked.
        # Noted first: an interrupt may cut the write short after the row is in.
        created.append(starting)
        _record(registry_url, starting, STATUS_STARTING)

    with _sigterm_raises():
        try:
            info = target.deploy(
                model,
                options,
                name=name,
                model_name=model_name,
                model_version=model_version,
                plan=plan,
                on_created=record_starting,
            )
        except ServingError as exc:
            logger.error("deployment %r failed to start: %s", name, exc)
            if registry_url is not None:
                from tuneship.registry import DeploymentEntry

                with contextlib.closing(_registry(registry_url)) as registry:
                    registry.upsert_deployment(
                        DeploymentEntry(
                            name=name,
                            model_name=model_name or str(model),
                            model_version=model_version or "unversioned",
                            target=target.name,
                            status=STATUS_FAILED,
                            details={"error": str(exc)[:2000]},
                        )
                    )
            raise
        except BaseException:
            # Interrupted while starting: the target stopped the server.
            if created:
                _mark_stopped_if_starting(registry_url, name)
            raise
        status = STATUS_FAILED
        try:
            _record(registry_url, info, STATUS_RUNNING)
            logger.info("deployment %r serves %s at %s", name, info.served_model_name, info.url)
            yield info
            status = STATUS_RUNNING if keep else STATUS_STOPPED
        except BaseException as exc:
            # Ctrl-C, SIGTERM (ours, or Prefect's TerminationSignal bridge that runs first)
            # and SIGHUP are a user stopping the server, not a failure of it.
            if not isinstance(exc, Exception):
                status = STATUS_STOPPED
            raise
        finally:
            if status != STATUS_RUNNING:
                if not _stop_quietly(target, info):
                    status = STATUS_FAILED
                _set_status(registry_url, name, status)


def stop_deployment(
    name: str,
    registry_url: str | None = None,
    timeout_s: float = 30.0,
    *,
    target: ServingTarget | None = None,
) -> Any:
    """Stop a recorded deployment on whichever target runs it, and mark it stopped.

    The one stop path for every target: the registry entry names the target, the target
    rebuilds its record from the entry and stops it (a local process group, guarded
    against a reused pid; a RunPod endpoint or pod).

    Args:
        name: Deployment name.
        registry_url: Registry URL (None: the default registry).
        timeout_s: Grace period before SIGKILL (local processes).
        target: The target, with its credentials (the CLI loads them); default: the
            registered target of the entry's name, with credentials from the environment.

    Returns:
        The updated :class:`~tuneship.registry.DeploymentEntry`.

    Raises:
        RegistryError: No deployment has that name.
        ServingError: It could not be stopped.
    """
    from tuneship.errors import RegistryError
    from tuneship.serving.targets import get_target

    with contextlib.closing(_registry(registry_url)) as registry:
        entry = registry.get_deployment(name)
        if entry is None:
            known = ", ".join(d.name for d in registry.list_deployments()) or "none"
            raise RegistryError(f"no deployment named {name!r} (known: {known})")
        target = target or get_target(entry.target)
        target.stop(target.record_type.from_entry(entry), timeout_s)
        return registry.set_deployment_status(name, STATUS_STOPPED)
