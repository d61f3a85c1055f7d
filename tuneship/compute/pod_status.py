"""The training pod's status endpoint: live progress and a stop action, behind a run token.

:mod:`tuneship.compute.pod_job` starts it first thing, on the pod's exposed HTTP port
(:data:`STATUS_PORT`), so the flow reaches it through RunPod's proxy
(``https://<pod>-<port>.proxy.runpod.net``) without a Hub commit per update:

* ``GET /status``: the phase (``starting``, the running stage such as ``train`` or
  ``merge``, ``stopped``, ``done``, ``failed``), the newest training progress report,
  steps per second since the pod's first report, and after a stop the newest checkpoint
  and where it was pushed.
* ``POST /stop``: ask training to save (and push) a checkpoint and stop; the budget
  enforcement uses it.

Every request must carry the run's token in the :data:`TOKEN_HEADER` header. The token is
random per run and comes from the pod's :data:`STATUS_TOKEN_ENV` environment secret; it
is never logged (the request log is off). Only the standard library is used: the pod
runs this before anything else is imported.
"""

from __future__ import annotations

import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

STATUS_PORT = 8765
STATUS_PORT_ENV = "TUNESHIP_STATUS_PORT"
STATUS_TOKEN_ENV = "TUNESHIP_STATUS_TOKEN"
TOKEN_HEADER = "X-Tuneship-Token"
STOPPED_EXIT = 3
"""pod_job's exit status after a requested stop (the checkpoint is pushed)."""


class PodStatus:
    """What the pod is doing, shared by the stage runner and the HTTP handler.

    Args:
        progress_file: The JSONL file the training job appends progress reports to.
        stop_file: Created when a stop is asked for; the training job's callback sees it.
    """

    def __init__(self, progress_file: Path, stop_file: Path) -> None:
        self.progress_file = progress_file
        self.stop_file = stop_file
        self.phase = "starting"
        self.started = time.time()
        self.checkpoint: str | None = None
        self.checkpoint_repo: str | None = None
        self.error: str | None = None
        self._lock = threading.Lock()
        self._first: tuple[int, float] | None = None
        self._offset = 0
        self._newest: dict[str, Any] | None = None
        self._logs: dict[str, float] = {}

    @property
    def stop_requested(self) -> bool:
        """Whether a stop was asked for."""
        return self.stop_file.exists()

    def request_stop(self) -> None:
        """Ask the training job to save a checkpoint and stop (idempotent)."""
        self.stop_file.parent.mkdir(parents=True, exist_ok=True)
        self.stop_file.touch()

    def set_phase(self, phase: str, **fields: Any) -> None:
        """Move to ``phase``, e.g. ``train``; ``fields`` set ``checkpoint`` and the like."""
        with self._lock:
            self.phase = phase
            for key, value in fields.items():
                setattr(self, key, value)

    def _read_progress(self) -> dict[str, Any] | None:
        """The newest report, its ``logs`` holding the newest value of every metric so far.

        A report carries only the values logged at its own step, so an eval loss (logged
        every ``eval_steps``) would vanish from the next report; the file is read on from
        where the last call stopped and every value kept.
        """
        try:
            with self.progress_file.open("rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except OSError:
            return self._newest
        end = chunk.rfind(b"\n") + 1  # a line still being written is read next time
        self._offset += end
        for line in chunk[:end].splitlines():
            try:
                report: dict[str, Any] = json.loads(line)
            except ValueError:
                continue
            self._logs.update(report.get("logs") or {})
            self._newest = report
        if self._newest is None:
            return None
        return {**self._newest, "logs": dict(self._logs)}

    def snapshot(self) -> dict[str, Any]:
        """The JSON the endpoint answers with."""
        now = time.time()
        steps_per_s = None
        with self._lock:
            progress = self._read_progress()
            if progress is not None:
                step = int(progress.get("step", 0))
                if self._first is None:
                    self._first = (step, now)
                elif step > self._first[0] and now > self._first[1]:
                    steps_per_s = (step - self._first[0]) / (now - self._first[1])
            return {
                "phase": self.phase,
                "uptime_s": round(now - self.started, 1),
                "progress": progress,
                "steps_per_s": steps_per_s,
                "stop_requested": self.stop_requested,
                "checkpoint": self.checkpoint,
                "checkpoint_repo": self.checkpoint_repo,
                "error": self.error,
            }


class _Handler(BaseHTTPRequestHandler):
    status: PodStatus
    token: str

    def log_message(self, format: str, *args: Any) -> None:
        """No request log: nothing about callers (or their headers) reaches the pod log."""

    def _authorized(self) -> bool:
        given = self.headers.get(TOKEN_HEADER) or ""
        return hmac.compare_digest(given.encode(), self.token.encode())

    def _reply(self, code: int, data: dict[str, Any]) -> None:
        body = json.dumps(data).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        """``/status``."""
        if not self._authorized():
            self._reply(401, {"error": "missing or wrong token"})
        elif self.path.rstrip("/") == "/status":
            self._reply(200, self.status.snapshot())
        else:
            self._reply(404, {"error": "not found"})

    def do_POST(self) -> None:
        """``/stop``."""
        if not self._authorized():
            self._reply(401, {"error": "missing or wrong token"})
        elif self.path.rstrip("/") == "/stop":
            self.status.request_stop()
            self._reply(202, {"stop_requested": True})
        else:
            self._reply(404, {"error": "not found"})


def serve_status(status: PodStatus, token: str, port: int = STATUS_PORT) -> ThreadingHTTPServer:
    """Serve ``status`` on ``0.0.0.0:port`` from a daemon thread; return the server.

    Raises:
        ValueError: The token is empty (an open endpoint would let anyone stop the run).
    """
    if not token:
        raise ValueError(f"the status endpoint needs a token ({STATUS_TOKEN_ENV})")
    handler = type("StatusHandler", (_Handler,), {"status": status, "token": token})
    server = ThreadingHTTPServer(("0.0.0.0", port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="pod-status", daemon=True).start()
    return server
