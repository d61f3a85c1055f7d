"""Ending a CLI run cleanly: signals become exceptions, and Prefect's temporary API dies with us.

Python's default SIGTERM and SIGHUP actions kill the interpreter without unwinding, so no
``finally`` block, no ``atexit`` hook and no Prefect crash handler runs: the ephemeral
Prefect API server (a uvicorn subprocess) and any vLLM server were left running. Here both
signals raise :class:`TerminationRequested`, a ``KeyboardInterrupt``, so every clean-up path
that already handles Ctrl-C (serving lifecycle, Prefect's crash states, ``atexit``) runs.

The ephemeral API is started here, in the main thread, with a generous start-up timeout and
with ``PR_SET_PDEATHSIG`` so that the kernel ends it even when this process is killed with
SIGKILL or dies in a way no handler sees.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from tuneship.errors import TuneshipError

#: Seconds Prefect's temporary API server may take to start (its own default is 20 s, too
#: short on a loaded two-core machine).
EPHEMERAL_API_STARTUP_TIMEOUT_S = 120

_PR_SET_PDEATHSIG = 1


class TerminationRequested(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived; unwinds like Ctrl-C so every clean-up path runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"received {signal.Signals(signum).name}")
        self.signum = signum


class PrefectApiStartError(TuneshipError):
    """Prefect's temporary API server did not start."""


def exit_code_for(exc: KeyboardInterrupt) -> int:
    """Shell convention: 128 + the signal number (130 for Ctrl-C)."""
    signum = exc.signum if isinstance(exc, TerminationRequested) else signal.SIGINT
    return 128 + int(signum)


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into :class:`TerminationRequested` while the block runs.

    Only the first signal raises: a second one while clean-up runs is ignored, so it cannot
    cut the clean-up short. Outside the main thread the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = False

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal fired
        if fired:
            return
        fired = True
        raise TerminationRequested(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    # Runs between fork and exec: the kernel sends SIGTERM to the child when the thread that
    # forked it ends, which for the CLI's main thread is when the process ends, however.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def popen_dying_with_parent(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``subprocess.Popen`` so its children get ``PR_SET_PDEATHSIG`` (Linux only)."""

    def popen(*args: Any, **kwargs: Any) -> Any:
        if sys.platform.startswith("linux") and kwargs.get("preexec_fn") is None:
            kwargs["preexec_fn"] = _die_with_parent
        return original(*args, **kwargs)

    return popen


def _needs_ephemeral_api() -> bool:
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    return not settings.api.url and bool(settings.server.ephemeral.enabled)


@contextlib.contextmanager
def ephemeral_prefect_api(timeout_s: int = EPHEMERAL_API_STARTUP_TIMEOUT_S) -> Iterator[None]:
    """Start Prefect's temporary API server for the block, and stop it after, always.

    Does nothing when ``PREFECT_API_URL`` points at a server. Prefect would start the same
    server lazily on first use (from whichever thread asks first, with a 20 s limit); starting
    it here gives it the longer limit, ties its life to this process and turns a failed start
    into one line.

    Raises:
        PrefectApiStartError: The server did not answer within ``timeout_s``.
    """
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", str(timeout_s))
    if not _needs_ephemeral_api():
        yield
        return
    from prefect.server.api import server as server_module

    # The singleton that Prefect's clients look up (``SubprocessASGIServer()``, port None).
    server = server_module.SubprocessASGIServer()
    original_popen = subprocess.Popen
    server_module.subprocess.Popen = popen_dying_with_parent(original_popen)  # type: ignore[misc,assignment]
    try:
        server.start(timeout=timeout_s)
    except Exception as exc:  # Prefect raises RuntimeError or httpx errors here
        server.stop()
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PrefectApiStartError(
            f"Prefect's temporary API server did not start within {timeout_s} s ({first[:200]}); "
            "the machine may be overloaded: retry, raise "
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, or run `prefect server start` "
            "and set PREFECT_API_URL"
        ) from None
    finally:
        server_module.subprocess.Popen = original_popen  # type: ignore[misc]
    try:
        yield
    finally:
        _send_queued_logs()
        server.stop()


def _send_queued_logs(timeout_s: float = 10.0) -> None:
    # Prefect sends run logs to its API in the background. Logs still queued when the
    # temporary server stops would be sent at exit to a dead server, which prints
    # "--- Error logging to API ---" after the run's own `error:` line.
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=timeout_s)
