"""How the CLI ends: signals become one exception, children die with it, exit codes say why."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from tuneship.cli.shutdown import (
    TerminationRequested,
    exit_code_for,
    signal_of,
    signals_raise,
)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_unwind_like_ctrl_c_once(signum: int) -> None:
    before = signal.getsignal(signum)
    with pytest.raises(TerminationRequested) as caught, signals_raise():
        os.kill(os.getpid(), signum)
        time.sleep(5)  # the handler raises before this ends
    assert caught.value.signum == signum
    assert isinstance(caught.value, KeyboardInterrupt)
    # Outside the block the previous handlers are back.
    assert signal.getsignal(signum) is before


def test_a_second_signal_does_not_cut_the_cleanup_short() -> None:
    cleaned = False
    with pytest.raises(TerminationRequested), signals_raise():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)  # ignored while cleaning up
            time.sleep(0.1)
            cleaned = True
    assert cleaned


def test_exit_codes_follow_the_shell_convention() -> None:
    from prefect.exceptions import TerminationSignal

    assert exit_code_for(KeyboardInterrupt()) == 130
    assert exit_code_for(TerminationRequested(signal.SIGTERM)) == 143
    assert exit_code_for(TerminationRequested(signal.SIGHUP)) == 129
    assert signal_of(TerminationSignal(signal=signal.SIGTERM)) == signal.SIGTERM


PARENT = """
import subprocess, sys, time
from tuneship.cli.shutdown import popen_dying_with_parent

popen = popen_dying_with_parent(subprocess.Popen)
child = popen([sys.executable, "-c", "import time; time.sleep(120)"])
print(child.pid, flush=True)
time.sleep(120)
"""


def test_a_started_server_has_its_own_session_and_dies_with_tuneship(tmp_path: Path) -> None:
    """A terminal's Ctrl-C does not reach it, and SIGKILL of tuneship still ends it."""
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(PARENT), encoding="utf-8")
    parent = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert parent.stdout is not None
        child_pid = int(parent.stdout.readline())
        assert os.getsid(child_pid) == child_pid != os.getsid(parent.pid)
        parent.kill()  # no handler runs: the kernel's PR_SET_PDEATHSIG must end the child
        parent.wait(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if psutil.Process(child_pid).status() == psutil.STATUS_ZOMBIE:
                    break
            except psutil.NoSuchProcess:
                break
            time.sleep(0.1)
        else:
            os.kill(child_pid, signal.SIGKILL)
            pytest.fail("the child outlived its killed parent")
    finally:
        if parent.poll() is None:
            parent.kill()
