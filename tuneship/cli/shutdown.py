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


class TerminationRequested(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived; unwinds like Ctrl-C so every clean-up path runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"received {signal.Signals(signum).name}")
        self.signum = signum


class PrefectApiStartError(TuneshipError):
    """Prefect's temporary API server did not start."""


def signal_of(exc: BaseException) -> signal.Signals:
    """The signal behind an interruption: ours, Prefect's ``TerminationSignal``, or Ctrl-C."""
    if isinstance(exc, TerminationRequested):
        return signal.Signals(exc.signum)
    prefect_signal = getattr(exc, "signal", None)  # prefect.exceptions.TerminationSignal
    if isinstance(prefect_signal, int):
        return signal.Signals(prefect_signal)
    return signal.SIGINT


def exit_code_for(exc: BaseException) -> int:
    """Shell convention: 128 + the signal number (130 for Ctrl-C, 143 for SIGTERM)."""
    return 128 + int(signal_of(exc))


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


def popen_dying_with_parent(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``subprocess.Popen``: its children die with this process and only with it.

    A child gets ``PR_SET_PDEATHSIG`` (Linux only) and its own session, so a terminal's
    Ctrl-C or hang-up, which the terminal sends to the whole foreground process group,
    reaches tuneship alone. Were Prefect's API server in that group, it would exit at the
    same moment, before tuneship could record the flow run as crashed: the run stayed
    ``Running`` for ever, and every log sent meanwhile printed a traceback.
    """

    from tuneship.serving.process import dying_with_parent

    def popen(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("preexec_fn") is None:
            kwargs["preexec_fn"] = dying_with_parent()
        kwargs.setdefault("start_new_session", True)
        return original(*args, **kwargs)

    return popen


def flush_to_api(timeout_s: float = 30.0) -> None:
    """Send the logs and events still queued for the Prefect API, waiting at most ``timeout_s``.

    Prefect's log and event workers send in batches from a background thread and flush at
    interpreter exit. Flushed after the temporary API server is stopped, each batch fails
    and is retried: a run then took about 75 s to exit and printed ``Error logging to API``.
    """
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        try:
            worker.drain_all(timeout=timeout_s)
        except Exception as exc:  # a lost log batch must not fail a finished run
            print(
                f"could not send Prefect's queued {worker.__name__} items: {exc}", file=sys.stderr
            )


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
        flush_to_api()
        server.stop()
