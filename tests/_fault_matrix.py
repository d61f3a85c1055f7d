"""Helpers of the fault-matrix test: run the real CLI, see its stages start, find leftovers.

The CLI runs in a child Python through :data:`PROBE`, which imports the real command and
only adds observation points: it prints ``fault-matrix: <stage>`` when a stage starts.
At the stage under test it holds there (sleeps) until the signal arrives, so the signal
lands inside that stage however busy the machine is; the vLLM stages need no hold (the
CLI waits seconds for the server to become ready).
"""

from __future__ import annotations

import os
import re
import resource
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml

STAGE_ENV = "TUNESHIP_FAULT_STAGE"

PROBE = r"""
import functools, os, sys, time

from tuneship.serving import local_vllm
from tuneship.tasks import data, publishing, serving, training

TARGET = os.environ.get("TUNESHIP_FAULT_STAGE", "")


def announce(stage, hold):
    print(f"fault-matrix: {stage}", flush=True)
    if hold and stage == TARGET:
        time.sleep(600)  # the test's signal ends this sleep


def at_start(task, stage):
    inner = task.fn

    @functools.wraps(inner)
    def observed(*args, **kwargs):
        announce(stage, True)
        return inner(*args, **kwargs)

    task.fn = observed


at_start(data.prepare_dataset_split, "data")
at_start(training.merge_adapter, "merge")
at_start(publishing.publish_model, "publish")
at_start(publishing.register_model, "register")
at_start(serving.smoke_test_endpoint, "smoke-test")

seen_training = []


def on_progress(progress):
    # The first report comes from inside the trainer's loop.
    if not seen_training:
        seen_training.append(progress)
        announce("training", True)


training.PROGRESS_LISTENERS.append(on_progress)

register_child = local_vllm.register_child


def register_and_announce(proc):
    register_child(proc)
    announce("vllm", False)


local_vllm.register_child = register_and_announce

from tuneship.cli.main import main

sys.argv[0] = "tuneship"
main()
"""

FINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
_PREFECT_PORT = re.compile(r"Starting temporary server on http://127\.0\.0\.1:(\d+)")


@dataclass
class Chain:
    """The folders one signal's cases share, as a user's machine keeps them between runs."""

    root: Path

    @property
    def home(self) -> Path:
        """``TUNESHIP_HOME``: run folders, model store, registry, deployments."""
        return self.root / "home"

    @property
    def prefect_home(self) -> Path:
        """``PREFECT_HOME``: the temporary API's database."""
        return self.root / "prefect-home"

    def env(self, stage: str) -> dict[str, str]:
        """The CLI's environment; it starts its own temporary Prefect API, as for a user."""
        env = {
            **os.environ,
            "TUNESHIP_HOME": str(self.home),
            "PREFECT_HOME": str(self.prefect_home),
            STAGE_ENV: stage,
        }
        env.pop("PREFECT_API_URL", None)
        return env

    def write_config(self, name: str, values: dict[str, Any]) -> Path:
        """Write a config file into the chain's folder."""
        path = self.root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(values, sort_keys=False), encoding="utf-8")
        return path


@dataclass
class CliRun:
    """A ``tuneship run`` child: its output, the processes and ports it was seen with."""

    proc: subprocess.Popen[str]
    log_path: Path
    lines: list[str] = field(default_factory=list)
    pids: set[int] = field(default_factory=set)
    ports: set[int] = field(default_factory=set)
    started: float = field(default_factory=time.monotonic)
    cpu_before: float = 0.0
    _seen: threading.Condition = field(default_factory=threading.Condition)
    _reader: threading.Thread | None = None

    @classmethod
    def start(cls, chain: Chain, config: Path, stage: str, log_name: str) -> CliRun:
        """Start the probed CLI on ``config`` in a session of its own (a shell job)."""
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.Popen(
            [sys.executable, "-c", PROBE, "run", str(config)],
            env=chain.env(stage),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        run = cls(proc, chain.root / log_name, cpu_before=usage.ru_utime + usage.ru_stime)
        run._reader = threading.Thread(target=run._read, daemon=True)
        run._reader.start()
        return run

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.log_path.open("w", encoding="utf-8") as log:
            for line in self.proc.stdout:
                log.write(line)
                log.flush()
                with self._seen:
                    self.lines.append(line.rstrip("\n"))
                    self._seen.notify_all()

    @property
    def output(self) -> str:
        """Everything the CLI printed so far (stdout and stderr)."""
        with self._seen:
            return "\n".join(self.lines)

    def wait_for_stage(self, stage: str, timeout_s: float = 900.0) -> None:
        """Return once the probe announced ``stage``; fail if the run ended first."""
        marker = f"fault-matrix: {stage}"
        deadline = time.monotonic() + timeout_s
        with self._seen:
            while marker not in self.lines:
                if self.proc.poll() is not None and not self._reader_alive():
                    raise AssertionError(
                        f"the run ended (rc {self.proc.returncode}) before stage {stage!r}:\n"
                        + "\n".join(self.lines[-60:])
                    )
                if time.monotonic() > deadline:
                    raise AssertionError(f"stage {stage!r} did not start in {timeout_s:.0f} s")
                self._seen.wait(timeout=0.5)

    def _reader_alive(self) -> bool:
        return self._reader is not None and self._reader.is_alive()

    def snapshot(self) -> None:
        """Add the run's current descendants and their listening ports to what was seen."""
        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return
        for child in children:
            self.pids.add(child.pid)
            try:
                self.ports.update(
                    c.laddr.port for c in child.net_connections("inet") if c.status == "LISTEN"
                )
            except psutil.Error:
                continue

    def send(self, signum: int) -> None:
        """SIGINT as a terminal's Ctrl-C (the job's whole process group); others as ``kill``."""
        self.snapshot()
        if signum == signal.SIGINT:
            os.killpg(self.proc.pid, signum)
        else:
            self.proc.send_signal(signum)

    def wait(self, timeout_s: float = 900.0) -> int:
        """Wait for the CLI to exit, noting every descendant seen meanwhile; return its code."""
        deadline = time.monotonic() + timeout_s
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError(f"the run did not exit in {timeout_s:.0f} s:\n{self.output}")
            self.snapshot()
            time.sleep(0.2)
        if self._reader is not None:
            self._reader.join(timeout=30)
        for match in _PREFECT_PORT.finditer(self.output):
            self.ports.add(int(match.group(1)))
        return self.proc.returncode

    def cost(self) -> tuple[float, float]:
        """Wall seconds since the start and CPU seconds of the run's (reaped) process tree."""
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = usage.ru_utime + usage.ru_stime - self.cpu_before
        return time.monotonic() - self.started, cpu

    def kill_tree(self) -> None:
        """Last resort after a failed assertion: no test leaves processes behind."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped does not count)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def listening(port: int) -> bool:
    """Whether something accepts connections on ``127.0.0.1:port``."""
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def processes_of(home: Path) -> list[psutil.Process]:
    """Live processes whose environment has ``TUNESHIP_HOME=home``: every process a run
    started inherits it, so this finds them even after they were re-parented."""
    wanted = f"TUNESHIP_HOME={home}"
    found = []
    for proc in psutil.process_iter(["pid", "status"]):
        if proc.pid == os.getpid() or proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            with open(f"/proc/{proc.pid}/environ", "rb") as handle:
                environ = handle.read().split(b"\0")
        except OSError:
            continue
        if wanted.encode() in environ:
            found.append(proc)
    return found


def wait_until_gone(pids: set[int], home: Path, timeout_s: float = 30.0) -> list[str]:
    """Wait for the run's processes to end; return the ones still alive (killed then)."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = {p for p in pids if alive(p)} | {p.pid for p in processes_of(home)}
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    described = []
    for pid in sorted(left):
        try:
            proc = psutil.Process(pid)
            described.append(f"{pid} {' '.join(proc.cmdline())[:200]}")
            proc.kill()
        except psutil.Error:
            continue
    return described


def flow_run_states(prefect_home: Path) -> list[tuple[str, str]]:
    """``(name, state type)`` of every flow run in the temporary API's database."""
    with sqlite3.connect(prefect_home / "prefect.db") as db:
        return [(str(n), str(s)) for n, s in db.execute("select name, state_type from flow_run")]
