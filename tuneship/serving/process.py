"""Process-group helpers: the server runs in its own group, and stopping kills all of it.

vLLM's API server spawns an engine-core process and worker processes; they share the
server's process group, so signalling the group reaches every one of them.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import psutil

_PR_SET_PDEATHSIG = 1
# Looked up once, here: the forked child must not load libraries (another thread of the
# parent may have held the loader's lock at fork time).
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def _set_parent_death_signal() -> None:  # pragma: no cover - runs in the forked child
    # Between fork and exec: the kernel sends SIGTERM to this child when the thread that
    # forked it ends; for the CLI's main thread, when the process ends, however it ends.
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def dying_with_parent() -> Callable[[], None] | None:
    """Return a ``preexec_fn`` that ends the child when this process ends (Linux only).

    For children that must not outlive tuneship even when it is killed with SIGKILL or
    dies of a crash that no handler sees; None where the platform has no such signal.
    """
    return _set_parent_death_signal if _prctl is not None else None


_children: dict[int, subprocess.Popen[bytes]] = {}
"""Group leaders this process started, by pid, so that stopping them also reaps them."""


def register_child(proc: subprocess.Popen[bytes]) -> None:
    """Remember a group leader this process started (see :func:`stop_process_group`)."""
    _children[proc.pid] = proc


def process_start_time(pid: int) -> float | None:
    """Return when ``pid`` started (seconds since the epoch, psutil's), or None if gone.

    Stored with a deployment so that a later ``stop`` never signals a process group
    whose id the kernel has since given to something else. The value is fixed for the
    life of the process (boot time plus the kernel's start ticks), so it compares exactly.
    """
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def group_members(pgid: int) -> list[int]:
    """Return the live (non-zombie) processes of group ``pgid``.

    Zombies are left out: an orphaned child that nobody reaps yet has exited. The group,
    not the leader's process tree, is what counts: vLLM's workers stay in the group even
    when the leader dies and they are re-parented.
    """
    members = []
    for proc in psutil.process_iter(["status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(proc.pid) == pgid:
                members.append(proc.pid)
        except (ProcessLookupError, psutil.Error):
            continue  # exited while we looked
    return members


def group_alive(pgid: int) -> bool:
    """Return whether any live process is left in group ``pgid``."""
    return bool(group_members(pgid))


def _wait_group(pgid: int, timeout_s: float, child: subprocess.Popen[bytes] | None) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        if child is not None:
            child.poll()  # reap the leader so it does not linger as a zombie
        if not group_alive(pgid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)


def stop_process_group(
    pgid: int, timeout_s: float = 30.0, child: subprocess.Popen[bytes] | None = None
) -> bool:
    """Stop every process in group ``pgid``: SIGTERM, then SIGKILL after ``timeout_s``.

    Args:
        pgid: The process group (the server's pid, since it started a new session).
        timeout_s: Grace period for a clean shutdown before SIGKILL.
        child: The ``Popen`` of the group leader when this process started it (reaped);
            leaders passed to :func:`register_child` are found without it.

    Returns:
        True when no process of the group is left.
    """
    # A leader this process started must be reaped, or it lingers as a zombie member.
    child = _children.pop(pgid, None) or child
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        if _wait_group(pgid, wait_s, child):
            return True
    return False
