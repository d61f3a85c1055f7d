"""The local serving target: vLLM's OpenAI-compatible server as a managed child process.

The server is started from an argument list (never a shell) in its own process group,
with its output in a log file. It is ready once ``/health`` answers and ``/v1/models``
lists the served name (with the API key). When it exits, times out or answers wrongly,
the whole group is stopped, the log is kept, and the error quotes vLLM's own lines.

The API key reaches vLLM through ``VLLM_API_KEY`` (vLLM reads it like ``--api-key``) so
it does not show in ``ps`` output or in the logged command line.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from tuneship.config import ServeConfig, default_home
from tuneship.errors import ServingError
from tuneship.serving.api_keys import choose_api_key, write_api_key_file
from tuneship.serving.base import DeploymentInfo, LocalDeploymentInfo, describe_devices
from tuneship.serving.engine import resolve_engine_command
from tuneship.serving.http import http_get, vllm_healthy
from tuneship.serving.placement import LocalPlan, plan_local_server
from tuneship.serving.process import (
    dying_with_parent,
    process_start_time,
    register_child,
    stop_process_group,
)
from tuneship.serving.vllm_options import VllmOptions, build_vllm_options

if TYPE_CHECKING:
    from tuneship.planning.inventory import LocalGpu

TARGET_NAME = "local-vllm"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# "(EngineCore pid=12) ERROR 11-29 16:06:14 [core.py:99] message" -> "message"
_VLLM_PREFIX = re.compile(
    r"^(?:\(\w+(?: pid=\d+)?\)\s+)?(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL)\s+"
    r"\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?\s+\[[^\]]*\]\s?"
)
_EXCEPTION_LINE = re.compile(
    r"^(?:[A-Za-z_][\w.]*\.)?(?:[A-Z]\w*)?(?:Error|Exception|Exit)(?::.*)?$"
)
# argparse: "api_server.py: error: argument --max-num-seqs: invalid int value: 'x'"
_ARGPARSE_ERROR = re.compile(r"^[\w.\-]+: error: .+")
_MEMORY_HINTS = (
    "out of memory",
    "outofmemoryerror",
    "free memory on device",
    "no available memory for the cache blocks",
    "kv cache is needed",
    "cannot auto-fit max_model_len",
    "cannot allocate memory",
    "vllm_cpu_kvcache_space",
)


class ServerStartError(ServingError):
    """The vLLM server exited, timed out or misbehaved before it was ready."""

    def __init__(self, message: str, log_path: Path | None, engine_lines: list[str]) -> None:
        super().__init__(message)
        self.log_path = log_path
        self.engine_lines = engine_lines


def find_free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that nothing listens on right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def build_server_args(
    engine_command: Sequence[str], options: VllmOptions, *, host: str, port: int
) -> list[str]:
    """Return the full argument list that starts the server (no secrets in it)."""
    return [*engine_command, *options.as_args(host, port)]


def build_server_env(
    plan: LocalPlan, *, model_is_local: bool, api_key: str, base: dict[str, str] | None = None
) -> dict[str, str]:
    """Return the server's environment: the key, offline mode, KV space or GPU choice."""
    env = dict(os.environ if base is None else base)
    env.update(
        VLLM_API_KEY=api_key,
        VLLM_NO_USAGE_STATS="1",
        DO_NOT_TRACK="1",
        PYTHONUNBUFFERED="1",
    )
    if model_is_local:
        # A local folder needs no Hub; offline mode stops vLLM from asking the Hub anyway.
        env["HF_HUB_OFFLINE"] = "1"
    if plan.backend == "cpu" and plan.cpu_kvcache_space_gib is not None:
        env["VLLM_CPU_KVCACHE_SPACE"] = str(plan.cpu_kvcache_space_gib)
    env.update(plan.cuda_env())
    return env


def extract_engine_errors(log_text: str, limit: int = 12) -> list[str]:
    """Return vLLM's own error lines from a server log (ERROR records, exception lines).

    Args:
        log_text: The server log.
        limit: Keep at most this many lines (the last ones: the cause is reported last).

    Returns:
        The lines without colour codes or vLLM's ``(Proc pid=N) ERROR date [file]`` prefix,
        duplicates removed.
    """
    found: list[str] = []
    for raw in log_text.splitlines():
        line = _ANSI.sub("", raw).rstrip()
        match = _VLLM_PREFIX.match(line)
        if match:
            if match.group("level") not in ("ERROR", "CRITICAL"):
                continue
            text = line[match.end() :]
            # logger.exception prefixes every traceback line; keep only unindented ones.
            if not text.strip() or text[0].isspace():
                continue
            text = text.strip()
            if text.startswith(("Traceback", "During handling", "The above exception")):
                continue
        else:
            text = line.strip()
            if not (_EXCEPTION_LINE.match(text) or _ARGPARSE_ERROR.match(text)):
                continue
        if text not in found:
            found.append(text)
    return found[-limit:]


def is_memory_error(lines: Sequence[str]) -> bool:
    """Return whether vLLM's error lines say memory ran out (weights, KV cache, RAM)."""
    text = "\n".join(lines).lower()
    return any(hint in text for hint in _MEMORY_HINTS)


def start_failure(
    head: str, log_text: str, log_path: Path | None, plan: LocalPlan, *, strip_ansi: bool = True
) -> ServerStartError:
    """Return the error for a server that did not start, for the caller to raise.

    Args:
        head: What failed, ending where the quoted log begins.
        log_text: The server log (empty when there is none).
        log_path: Where the full log is.
        plan: The plan it was started with (for the memory suggestion).
        strip_ansi: Remove colour codes from the log tail quoted when vLLM logged no error.

    Returns:
        The error with vLLM's own error lines (else the log's last 15 lines), a
        suggestion after a memory error, and the log's path.
    """
    lines = extract_engine_errors(log_text)
    if lines:
        quoted = "vLLM said:\n" + "\n".join(f"  {line}" for line in lines)
    else:
        tail = [ln for ln in log_text.splitlines() if ln.strip()][-15:]
        shown = [_ANSI.sub("", ln) if strip_ansi else ln for ln in tail]
        quoted = "last log lines:\n" + "\n".join(f"  {ln}" for ln in shown)
    message = f"{head}\n{quoted}"
    if is_memory_error(lines):
        message += f"\nSuggestion: {memory_suggestion(plan)}"
    message += f"\nFull log: {log_path}"
    return ServerStartError(message, log_path, lines)


def memory_suggestion(plan: LocalPlan) -> str:
    """Return what to change after a memory error; the planner's advice when it has some."""
    if plan.backend == "cpu":
        return (
            "lower serve.max_model_len or raise serve.cpu_kvcache_space_gib "
            f"(now {plan.cpu_kvcache_space_gib} GiB)"
        )
    advice = (
        "lower serve.max_model_len, raise serve.tensor_parallel_size, free GPU memory, or "
        "run `tuneship plan serve` for a configuration that fits"
    )
    if plan.largest_fitting_model_len:
        return (
            f"the planner estimates at most max_model_len {plan.largest_fitting_model_len:,} "
            f"fits ({plan.planner_summary}); {advice}"
        )
    return advice


def _read_log(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def url_host(host: str) -> str:
    """Return the host to put in a URL (clients reach a wildcard bind via loopback)."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


class LocalVllmTarget:
    """Serve with vLLM on this machine.

    Args:
        deployments_dir: Where each deployment's logs and key file go
            (default: ``$TUNESHIP_HOME/deployments``).
        gpus: GPU readings to plan with; None reads NVML (tests pass recorded readings).
        poll_interval_s: Longest pause between readiness probes.
        on_start: Called with the ``Popen`` right after the server starts (for callers
            that must be able to stop it before ``deploy`` returns).
    """

    name = TARGET_NAME
    record_type: type[DeploymentInfo] = LocalDeploymentInfo

    def __init__(
        self,
        deployments_dir: Path | None = None,
        gpus: Sequence[LocalGpu] | None = None,
        poll_interval_s: float = 2.0,
        on_start: Callable[[subprocess.Popen[bytes]], None] | None = None,
    ) -> None:
        self.deployments_dir = deployments_dir
        self.gpus = gpus
        self.poll_interval_s = poll_interval_s
        self.on_start = on_start

    def _deployment_dir(self, name: str) -> Path:
        root = self.deployments_dir or default_home() / "deployments"
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def plan(self, model: str | Path, options: ServeConfig, *, name: str = "") -> LocalPlan:
        """Return where and how ``model`` would be served (no process is started)."""
        return plan_local_server(model, options, gpus=self.gpus)

    def deploy(
        self,
        model: str | Path,
        options: ServeConfig,
        *,
        name: str,
        model_name: str | None = None,
        model_version: str | None = None,
        plan: LocalPlan | None = None,
        on_created: Callable[[DeploymentInfo], None] | None = None,
    ) -> LocalDeploymentInfo:
        """Start vLLM on ``model`` and return once it serves; see :class:`ServingTarget`.

        Args:
            model: A model folder or a Hub repo id.
            options: The ``serve`` section.
            name: Deployment name; also the served model name unless the config sets one.
            model_name: Registered model name, recorded with the deployment.
            model_version: Registered model version, recorded with the deployment.
            plan: The plan from :meth:`plan` (the flow's planning task passes it); made
                here, once, only when the caller has none.

        Raises:
            EngineNotFoundError: vLLM is not installed (the message has the command).
            ServerStartError: The server did not become ready; it is stopped, its log kept.
            ServingError: The options do not fit this machine.
        """
        command = resolve_engine_command(options)
        local = Path(model).expanduser()
        model_is_local = local.is_dir()
        model_arg = str(local.resolve()) if model_is_local else str(model)
        plan = plan or self.plan(model_arg, options)
        served = options.served_model_name or name
        port = options.port or find_free_port(options.host)
        api_key = choose_api_key(options)
        folder = self._deployment_dir(name)
        key_file = write_api_key_file(folder, api_key)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        log_path = folder / f"server-{stamp}-{os.getpid()}.log"
        engine_options = build_vllm_options(model_arg, served, plan, options, dtype=plan.dtype)
        args = build_server_args(command, engine_options, host=options.host, port=port)
        env = build_server_env(plan, model_is_local=model_is_local, api_key=api_key)
        with log_path.open("wb") as log:
            log.write(f"# tuneship: {json.dumps(args)}\n# plan: {'; '.join(plan.notes)}\n".encode())
            log.flush()
            try:
                proc = subprocess.Popen(
                    args,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,  # own process group: stopping reaches workers too
                    close_fds=True,
                    # A server that is not kept dies with tuneship, even a SIGKILLed one.
                    preexec_fn=None if options.keep_serving else dying_with_parent(),
                )
            except OSError as exc:
                raise ServingError(f"cannot start vLLM ({args[0]}): {exc}") from None
        register_child(proc)
        started = time.monotonic()
        try:
            info = LocalDeploymentInfo(
                name=name,
                target=self.name,
                url=f"http://{url_host(options.host)}:{port}/v1",
                served_model_name=served,
                api_key=api_key,
                api_key_file=str(key_file),
                model=model_arg,
                model_name=model_name,
                model_version=model_version,
                host=options.host,
                port=port,
                pid=proc.pid,
                pgid=proc.pid,
                pid_start_time=process_start_time(proc.pid),
                log_path=str(log_path),
                backend=plan.backend,
                gpu_indices=plan.gpu_indices,
                tensor_parallel_size=plan.tensor_parallel_size,
                max_model_len=plan.max_model_len,
                gpu_memory_utilization=plan.gpu_memory_utilization,
            )
            if self.on_start is not None:
                self.on_start(proc)
            if on_created is not None:
                on_created(info)
            self._wait_until_ready(proc, info, options, plan)
        except BaseException:
            # Any failure or interruption while starting (SIGTERM, Ctrl-C) stops the group.
            stop_process_group(proc.pid, 30.0, proc)
            raise
        info.ready_after_s = round(time.monotonic() - started, 2)
        return info

    def _wait_until_ready(
        self,
        proc: subprocess.Popen[bytes],
        info: LocalDeploymentInfo,
        options: ServeConfig,
        plan: LocalPlan,
    ) -> None:
        base = info.url.removesuffix("/v1")
        deadline = time.monotonic() + options.startup_timeout_s
        pause = 0.5
        healthy = False
        while True:
            code = proc.poll()
            if code is not None:
                self._fail(info, options, plan, f"vLLM exited with code {code} while starting")
            try:
                if not healthy:
                    status, _ = http_get(f"{base}/health", None, 5.0)
                    healthy = status == 200
                if healthy:
                    status, body = http_get(f"{base}/v1/models", info.api_key, 10.0)
                    if status in (401, 403):
                        self._fail(
                            info,
                            options,
                            plan,
                            f"vLLM refused the API key at /v1/models (HTTP {status}); a custom "
                            "serve.engine_command must pass VLLM_API_KEY through",
                        )
                    if status == 200:
                        served = [m.get("id") for m in json.loads(body).get("data", [])]
                        if info.served_model_name in served:
                            return
                        self._fail(
                            info,
                            options,
                            plan,
                            f"vLLM serves {served}, not {info.served_model_name!r}",
                        )
            except (OSError, ValueError):
                pass  # not listening yet (connection refused, reset, or a partial answer)
            if time.monotonic() >= deadline:
                self._fail(
                    info,
                    options,
                    plan,
                    f"vLLM was not ready after serve.startup_timeout_s="
                    f"{options.startup_timeout_s:g} s (raise it for large models)",
                )
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 1.5, self.poll_interval_s)

    def _fail(
        self, info: LocalDeploymentInfo, options: ServeConfig, plan: LocalPlan, reason: str
    ) -> None:
        self.stop(info)
        log_path = Path(info.log_path) if info.log_path else None
        text = _read_log(log_path) if log_path else ""
        raise start_failure(
            f"deployment {info.name!r} of {info.model} failed: {reason}.", text, log_path, plan
        )

    def health(self, deployment: DeploymentInfo) -> bool:
        """Whether vLLM's ``/health`` answers 200."""
        return vllm_healthy(deployment.url)

    def describe(self, deployment: DeploymentInfo) -> str:
        """``pid 123 on GPUs 0,1, log /path`` (or ``on the CPU``)."""
        assert isinstance(deployment, LocalDeploymentInfo)
        where = describe_devices(deployment.backend, deployment.gpu_indices)
        return f"pid {deployment.pid} on {where}, log {deployment.log_path}"

    def stop(self, deployment: DeploymentInfo, timeout_s: float = 30.0) -> None:
        """Stop the server's whole process group (SIGTERM, then SIGKILL); idempotent.

        Works from any process: the record holds the process group and the start time of
        its leader, which guards against signalling a reused pid.

        Raises:
            ServingError: Some process of the group survived SIGKILL, or it belongs to
                another user.
        """
        assert isinstance(deployment, LocalDeploymentInfo)
        if deployment.pgid is None:
            return
        if deployment.pid is not None:
            started = process_start_time(deployment.pid)
            if started is not None and started != deployment.pid_start_time:
                return  # the pid now belongs to another process; ours is long gone
        try:
            stopped = stop_process_group(deployment.pgid, timeout_s)
        except PermissionError as exc:
            raise ServingError(
                f"deployment {deployment.name!r}: not allowed to stop process group "
                f"{deployment.pgid} ({exc}); run as the user that started it"
            ) from None
        if not stopped:
            raise ServingError(
                f"deployment {deployment.name!r}: processes of group {deployment.pgid} "
                "survived SIGKILL"
            )
