"""Process-group helpers: the server runs in its own group, and stopping kills all of it.

vLLM's API server spawns an engine-core process and worker processes; they share the
server's process group, so signalling the group reaches every one of them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

_PROC = Path("/proc")
_children: dict[int, subprocess.Popen[bytes]] = {}
"""Group leaders this process started, by pid, so that stopping them also reaps them."""


def register_child(proc: subprocess.Popen[bytes]) -> None:
    """Remember a group leader this process started (see :func:`stop_process_group`)."""
    _children[proc.pid] = proc


def _stat_fields(pid: int) -> list[str] | None:
    """Return the fields of /proc/<pid>/stat after the command name, or None."""
    try:
        raw = (_PROC / str(pid) / "stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    # The command name may hold spaces and parentheses; it ends at the last ')'.
    return raw[raw.rfind(")") + 2 :].split()


def process_start_time(pid: int) -> int | None:
    """Return the kernel start time of ``pid`` (clock ticks since boot), or None.

    Stored with a deployment so that a later ``stop`` never signals a process group
    whose id the kernel has since given to something else.
    """
    fields = _stat_fields(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def group_members(pgid: int) -> list[int]:
    """Return the live (non-zombie) processes of group ``pgid``.

    Zombies are left out: an orphaned child that nobody reaps yet has exited.
    Without /proc (not Linux), a live group is reported as ``[pgid]``.
    """
    if not _PROC.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        except PermissionError:
            return [pgid]
        return [pgid]
    members = []
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields and len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
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
