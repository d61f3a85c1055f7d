"""A fake RunPod API on 127.0.0.1 for the official ``runpod`` SDK (1.12) and tuneship's client.

It serves:

* ``POST /graphql``: the queries and mutations the SDK and ``tuneship.runpod.client`` send
  (``gpuTypes``, ``myself { endpoints podTemplates pods }``, ``pod``, ``saveTemplate``,
  ``deleteTemplate``, ``saveEndpoint``, ``deleteEndpoint``, ``podFindAndDeployOnDemand``,
  ``podRentInterruptable``, ``podTerminate``). A small GraphQL parser reads the literal
  queries the SDK builds, so an unescaped quote in a value is a syntax error here as it is
  on RunPod. Required fields are checked, and errors use RunPod's shapes: HTTP 200 with
  ``{"errors": [{"message", "path", "extensions"}], "data": null}``, HTTP 400 for a syntax
  error, HTTP 401 for a bad key.
* ``/v2/<endpoint>/run|runsync|status/<job>|cancel/<job>|health|purge-queue|openai/v1/...``:
  the serverless API. A simulated worker takes queued jobs the way worker-vllm v2.24+
  does (``openai_route``/``openai_input``, ``route``/``body``/``method``, and the legacy
  ``messages``/``prompt`` form) and forwards them to a real vLLM server (``backend``).
  Workers start only on the official worker image; any other image "runs" but never takes
  a job (requests stay IN_QUEUE, as in seed 001).
* ``/proxy/<pod>-<port>/...``: a pod's HTTPS proxy. It answers 502 until the pod's runtime
  is up, checks the pod's ``VLLM_API_KEY`` and forwards to the same vLLM server; for a pod
  that runs its command for real, a port named in ``pod_port_env`` goes to the local port
  its process listens on instead (502 while nothing listens, as on RunPod).

Every operation can be told to fail (``fail("saveEndpoint")``, ``fail("openai")``...).
Sources for the shapes: runpod-python 1.12 (``api/mutations``, ``api/queries``,
``endpoint/runner.py``) and the RunPod docs, as summarised in docs/runpod.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

GPU_TYPES = [
    {"id": "NVIDIA GeForce RTX 4090", "displayName": "RTX 4090", "memoryInGb": 24},
    {"id": "NVIDIA GeForce RTX 3090", "displayName": "RTX 3090", "memoryInGb": 24},
    {"id": "NVIDIA RTX A5000", "displayName": "RTX A5000", "memoryInGb": 24},
    {"id": "NVIDIA L4", "displayName": "L4", "memoryInGb": 24},
    {"id": "NVIDIA L40S", "displayName": "L40S", "memoryInGb": 48},
    {"id": "NVIDIA RTX A6000", "displayName": "RTX A6000", "memoryInGb": 48},
    {"id": "NVIDIA A40", "displayName": "A40", "memoryInGb": 48},
    {"id": "NVIDIA A100 80GB PCIe", "displayName": "A100 PCIe", "memoryInGb": 80},
    {"id": "NVIDIA H100 80GB HBM3", "displayName": "H100 SXM", "memoryInGb": 80},
    # The live catalogue lists these too; a CUDA image never starts on them.
    {"id": "AMD Instinct MI300X OAM", "displayName": "MI300X", "memoryInGb": 192},
    {
        "id": "NVIDIA H100 80GB HBM3 MIG 1g.10gb",
        "displayName": "H100 MIG 1g.10gb",
        "memoryInGb": 10,
    },
]
NVIDIA_WHOLE = {g["id"] for g in GPU_TYPES if g["id"].startswith("NVIDIA") and "MIG" not in g["id"]}
# Input types RunPod's schema declares (the fields tuneship and the SDK send); anything
# else is refused like RunPod refuses it (unknown field, string for Int, quoted enum).
_S, _I, _F, _B, _E, _ENV, _LS = "String", "Int", "Float", "Boolean", "Enum", "EnvList", "[String]"
_POD_INPUT = {
    "name": _S,
    "imageName": _S,
    "gpuTypeId": _S,
    "gpuCount": _I,
    "cloudType": _E,
    "containerDiskInGb": _I,
    "volumeInGb": _I,
    "minVcpuCount": _I,
    "minMemoryInGb": _I,
    "dockerArgs": _S,
    "ports": _S,
    "volumeMountPath": _S,
    "env": _ENV,
    "startSsh": _B,
    "supportPublicIp": _B,
    "networkVolumeId": _S,
    "allowedCudaVersions": _LS,
    "dataCenterId": _S,
    "templateId": _S,
}
INPUT_TYPES: dict[str, dict[str, str]] = {
    "podFindAndDeployOnDemand": _POD_INPUT,
    "podRentInterruptable": {**_POD_INPUT, "bidPerGpu": _F},
    "saveTemplate": {
        "id": _S,
        "name": _S,
        "imageName": _S,
        "dockerArgs": _S,
        "containerDiskInGb": _I,
        "volumeInGb": _I,
        "volumeMountPath": _S,
        "ports": _S,
        "env": _ENV,
        "isServerless": _B,
        "startSsh": _B,
        "readme": _S,
        "isPublic": _B,
        "containerRegistryAuthId": _S,
    },
    "saveEndpoint": {
        "id": _S,
        "name": _S,
        "templateId": _S,
        "gpuIds": _S,
        "gpuCount": _I,
        "networkVolumeId": _S,
        "locations": _S,
        "idleTimeout": _I,
        "scalerType": _S,
        "scalerValue": _I,
        "workersMin": _I,
        "workersMax": _I,
        "allowedCudaVersions": _S,
        "flashBootType": _E,
    },
    "pod": {"podId": _S},
    "podTerminate": {"podId": _S},
    "gpuTypes": {"id": _S},
    "lowestPrice": {"gpuCount": _I},
}
_PORTS = {"ip", "isIpPublic", "privatePort", "publicPort", "type"}
SELECTIONS: dict[str, dict[str, Any]] = {
    "pod": {
        "id",
        "name",
        "desiredStatus",
        "imageName",
        "costPerHr",
        "gpuCount",
        "machineId",
        "dockerArgs",
        "env",
        "uptimeSeconds",
        "volumeInGb",
        "containerDiskInGb",
        "ports",
        "lastStatusChange",
        "interruptible",
        "gpuTypeId",
        ("runtime", "uptimeInSeconds", ("ports", *_PORTS)),
        ("machine", "gpuDisplayName", "podHostId"),
    },
    "gpuTypes": {
        "id",
        "displayName",
        "manufacturer",
        "memoryInGb",
        "maxGpuCount",
        "securePrice",
        "communityPrice",
        "secureSpotPrice",
        "communitySpotPrice",
        "secureCloud",
        "communityCloud",
        ("lowestPrice", "minimumBidPrice", "uninterruptablePrice"),
    },
    "endpoint": {
        "id",
        "name",
        "templateId",
        "gpuIds",
        "gpuCount",
        "networkVolumeId",
        "locations",
        "idleTimeout",
        "scalerType",
        "scalerValue",
        "workersMin",
        "workersMax",
        "allowedCudaVersions",
        "flashBootType",
    },
    "template": {
        "id",
        "name",
        "imageName",
        "isServerless",
        "containerDiskInGb",
        "volumeInGb",
        "volumeMountPath",
        "dockerArgs",
        "ports",
        "readme",
        ("env", "key", "value"),
    },
    "created_pod": {"id", "imageName", "env", "machineId", ("machine", "podHostId")},
}
SELECTIONS["myself"] = {
    "id",
    ("endpoints", *SELECTIONS["endpoint"]),
    ("podTemplates", *SELECTIONS["template"]),
    ("pods", *SELECTIONS["pod"]),
    ("networkVolumes", "id", "name", "size", "dataCenterId"),
}
FIELD_SELECTION = {
    "pod": "pod",
    "gpuTypes": "gpuTypes",
    "myself": "myself",
    "saveEndpoint": "endpoint",
    "saveTemplate": "template",
    "podFindAndDeployOnDemand": "created_pod",
    "podRentInterruptable": "created_pod",
}
POOLS = {
    "AMPERE_16",
    "AMPERE_24",
    "ADA_24",
    "ADA_32_PRO",
    "AMPERE_48",
    "ADA_48_PRO",
    "AMPERE_80",
    "ADA_80_PRO",
    "BLACKWELL_96",
    "HOPPER_141",
    "BLACKWELL_180",
}
NO_CAPACITY = (
    "There are no longer any instances available with the requested specifications. "
    "Please refresh and try again."
)
WORKER_IMAGE = re.compile(r"^runpod/worker-v1-vllm:v2\.(2[4-9]|[3-9]\d)\.\d+$")
# Variables worker-vllm v2.24+ reads (wrapper variables and flag names it maps).
KNOWN_WORKER_ENV = {
    "MODEL_NAME",
    "MODEL_REVISION",
    "TOKENIZER_NAME",
    "OPENAI_SERVED_MODEL_NAME_OVERRIDE",
    "SERVED_MODEL_NAME",
    "CUSTOM_CHAT_TEMPLATE",
    "MAX_MODEL_LEN",
    "GPU_MEMORY_UTILIZATION",
    "TENSOR_PARALLEL_SIZE",
    "DTYPE",
    "QUANTIZATION",
    "TRUST_REMOTE_CODE",
    "ENFORCE_EAGER",
    "MAX_NUM_SEQS",
    "MAX_NUM_BATCHED_TOKENS",
    "KV_CACHE_DTYPE",
    "ENABLE_PREFIX_CACHING",
    "SPECULATIVE_CONFIG",
    "HF_TOKEN",
    "BASE_PATH",
    "MAX_CONCURRENCY",
    "VLLM_STARTUP_TIMEOUT",
    "REQUEST_TIMEOUT",
    "VLLM_EXTRA_ARGS",
}
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"}
# Host CUDA versions RunPod's allowedCudaVersions filter knows.
CUDA_VERSIONS = {"11.8", *(f"12.{m}" for m in range(10)), "13.0"}


# --------------------------------------------------------------------------- GraphQL
class GraphQLSyntaxError(Exception):
    """The query text is not valid GraphQL."""


_TOKEN = re.compile(
    r"""(?P<ws>[\s,]+|\#[^\n]*)
      |(?P<string>"(?:[^"\\\n]|\\.)*")
      |(?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
      |(?P<name>[_A-Za-z][_0-9A-Za-z]*)
      |(?P<punct>[{}()\[\]:!$=@])""",
    re.VERBOSE,
)


class _Enum(str):
    pass


class _Var(str):
    pass


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            raise GraphQLSyntaxError(f"Syntax Error: Unexpected character {text[pos]!r} at {pos}")
        kind = match.lastgroup or ""
        if kind != "ws":
            out.append((kind, match.group()))
        pos = match.end()
    return out


class _Parser:
    def __init__(self, text: str, variables: dict[str, Any]) -> None:
        self.toks = _tokens(text)
        self.i = 0
        self.variables = variables

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (value is not None and tok[1] != value):
            raise GraphQLSyntaxError(f"Syntax Error: Expected {value!r}, found {tok!r}")
        self.i += 1
        return tok

    def document(self) -> tuple[str, list[dict[str, Any]]]:
        op = "query"
        tok = self.peek()
        if tok and tok[1] in ("query", "mutation"):
            op = self.take()[1]
            if self.peek() and self.peek()[0] == "name":  # type: ignore[index]
                self.take()
            if self.peek() and self.peek()[1] == "(":  # type: ignore[index]
                depth = 0
                while True:
                    t = self.take()[1]
                    depth += t == "("
                    depth -= t == ")"
                    if depth == 0:
                        break
        fields = self.selection()
        if self.peek() is not None:
            raise GraphQLSyntaxError(f"Syntax Error: Unexpected {self.peek()!r}")
        return op, fields

    def selection(self) -> list[dict[str, Any]]:
        self.take("{")
        fields = []
        while self.peek() and self.peek()[1] != "}":  # type: ignore[index]
            kind, name = self.take()
            if kind != "name":
                raise GraphQLSyntaxError(f"Syntax Error: Expected Name, found {name!r}")
            args: dict[str, Any] = {}
            if self.peek() and self.peek()[1] == "(":  # type: ignore[index]
                self.take("(")
                while self.peek() and self.peek()[1] != ")":  # type: ignore[index]
                    key = self.take()[1]
                    self.take(":")
                    args[key] = self.value()
                self.take(")")
            sub = self.selection() if self.peek() and self.peek()[1] == "{" else []  # type: ignore[index]
            fields.append({"name": name, "args": args, "fields": sub})
        self.take("}")
        return fields

    def value(self) -> Any:
        kind, text = self.take()
        if kind == "string":
            return json.loads(text)
        if kind == "number":
            return json.loads(text)
        if text == "$":
            return self.variables.get(self.take()[1])
        if kind == "name":
            return {"true": True, "false": False, "null": None}.get(text, _Enum(text))
        if text == "[":
            items = []
            while self.peek() and self.peek()[1] != "]":  # type: ignore[index]
                items.append(self.value())
            self.take("]")
            return items
        if text == "{":
            obj = {}
            while self.peek() and self.peek()[1] != "}":  # type: ignore[index]
                key = self.take()[1]
                self.take(":")
                obj[key] = self.value()
            self.take("}")
            return obj
        raise GraphQLSyntaxError(f"Syntax Error: Unexpected {text!r}")


def parse_graphql(text: str, variables: dict[str, Any] | None = None) -> tuple[str, list[dict]]:
    """Parse one operation: ``(operation type, top-level fields with args)``."""
    return _Parser(text, variables or {}).document()


def _type_ok(kind: str, value: Any) -> bool:
    if value is None:
        return True
    if kind == _E:
        return isinstance(value, _Enum)
    if isinstance(value, _Enum):
        return False
    if kind == _S:
        return isinstance(value, str)
    if kind == _I:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == _F:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == _B:
        return isinstance(value, bool)
    if kind == _LS:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if kind == _ENV:
        return isinstance(value, list) and all(
            isinstance(v, dict) and set(v) == {"key", "value"} for v in value
        )
    return False


def check_input(field_name: str, values: dict[str, Any]) -> None:
    """Refuse unknown input fields and values of the wrong type, as RunPod's schema does."""
    schema = INPUT_TYPES.get(field_name)
    if schema is None:
        return
    for key, value in values.items():
        if key not in schema:
            raise ApiError(
                f'Field "{key}" is not defined by type "{field_name}Input".',
                400,
                "GRAPHQL_VALIDATION_FAILED",
            )
        if not _type_ok(schema[key], value):
            raise ApiError(
                f'{schema[key]} cannot represent value: {json.dumps(value)} ("{key}")',
                400,
                "GRAPHQL_VALIDATION_FAILED",
            )


def check_selection(type_name: str, selected: list[dict[str, Any]], allowed: Any) -> None:
    """Refuse selections of fields the type does not have."""
    known: dict[str, Any] = {}
    for item in allowed:
        if isinstance(item, tuple):
            known[item[0]] = item[1:]
        else:
            known[item] = None
    for f in selected:
        if f["name"] not in known:
            raise ApiError(
                f'Cannot query field "{f["name"]}" on type "{type_name}".',
                400,
                "GRAPHQL_VALIDATION_FAILED",
            )
        for arg in ("input",):
            if arg in f["args"] and isinstance(f["args"][arg], dict):
                check_input(f["name"], f["args"][arg])
        sub = known[f["name"]]
        if f["fields"] and sub is None:
            raise ApiError(
                f'Field "{f["name"]}" must not have a selection since it is a scalar.',
                400,
                "GRAPHQL_VALIDATION_FAILED",
            )
        if f["fields"]:
            check_selection(f["name"], f["fields"], sub)


# --------------------------------------------------------------------------- state
class ApiError(Exception):
    """A RunPod GraphQL error (HTTP 200, ``errors`` list) or an HTTP error status."""

    def __init__(self, message: str, status: int = 200, code: str = "BAD_USER_INPUT") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


@dataclass
class Failure:
    """An injected failure for one operation."""

    op: str
    message: str
    status: int
    times: int


@dataclass
class Job:
    """A serverless job."""

    id: str
    endpoint_id: str
    input: dict[str, Any]
    status: str = "IN_QUEUE"
    output: Any = None
    error: str | None = None
    created: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)


# ---------------------------------------------------------------------- pod processes
class _PodProcesses:
    """Pods that run their command for real (on when ``run_pod_commands`` is set).

    A created pod runs its ``dockerArgs`` as a local process group: the pod's env plus
    ``pod_env`` (the fake Hub as HF_ENDPOINT...), a work folder of its own, ``python`` this
    interpreter and ``pip`` a no-op (the image's packages are this venv's). Its status
    follows the process (EXITED when it ends); terminate stops it, ``kill_pod`` plays a
    host that went away, ``freeze_pod`` one whose container hangs (still RUNNING).

    Pods share this host's network, so an exposed port cannot be the same number for every
    pod: for each private port in ``pod_port_env`` a free local port is picked, told to the
    process in the named environment variable, and the proxy URL maps to it.
    """

    lock: threading.RLock
    pods: dict[str, dict[str, Any]]
    run_pod_commands: bool
    pod_env: dict[str, str]
    pod_root: Path | None
    pod_processes: dict[str, subprocess.Popen[bytes]]
    pod_port_env: dict[int, str]

    def _start_pod_process(self, pod: dict[str, Any]) -> None:
        root = self.pod_root or Path(tempfile.mkdtemp(prefix="fake-pods-"))
        workdir = root / pod["id"]
        workdir.mkdir(parents=True, exist_ok=True)
        # The pod image has none of this machine's settings (nor its vLLM engine).
        hidden = ("PYTHONPATH", "HF_TOKEN", "TUNESHIP_VLLM_PYTHON")
        env = {k: v for k, v in os.environ.items() if k not in hidden}
        env.update(pod["env_map"])
        env.update(self.pod_env)
        env["TUNESHIP_POD_WORKDIR"] = str(workdir)
        pod["port_map"] = {}
        for private, variable in self.pod_port_env.items():
            if f"{private}/http" in str(pod["ports"]).split(","):
                pod["port_map"][private] = env[variable] = str(_free_port())
        env["PATH"] = f"{_pod_bin(root)}{os.pathsep}{env.get('PATH', '')}"
        log = (workdir / "pod.log").open("wb")
        process = subprocess.Popen(
            shlex.split(pod["dockerArgs"]),
            env=env,
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pod_processes[pod["id"]] = process
        pod["log_path"] = str(workdir / "pod.log")

        def watch() -> None:
            process.wait()
            log.close()
            with self.lock:
                if pod["id"] in self.pods:
                    pod["desiredStatus"] = "EXITED"

        threading.Thread(target=watch, daemon=True).start()

    def _stop_pod_process(self, pod_id: str) -> None:
        process = self.pod_processes.pop(pod_id, None)
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def freeze_pod(self, pod_id: str) -> None:
        """Play a hung container: the process stops (SIGSTOP) but the pod stays RUNNING."""
        process = self.pod_processes.get(pod_id)
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGSTOP)

    def thaw_pod(self, pod_id: str) -> None:
        """Let a frozen pod's process go on (SIGCONT)."""
        process = self.pod_processes.get(pod_id)
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGCONT)

    def kill_pod(self, pod_id: str) -> None:
        """Play a dead pod: kill its process and drop it, as when a host goes away."""
        self._stop_pod_process(pod_id)
        with self.lock:
            self.pods.pop(pod_id, None)

    def pod_log(self, pod_id: str) -> str:
        """What a pod process printed so far (its container log)."""
        path = (self.pods.get(pod_id) or {}).get("log_path")
        return Path(path).read_text(errors="replace") if path else ""


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pod_bin(root: Path) -> Path:
    bin_dir = root / "bin"
    if not bin_dir.is_dir():
        bin_dir.mkdir(parents=True)
        # A wrapper, not a symlink: Python finds its venv from the path it was started as.
        for name, body in (
            ("python", f'exec {shlex.quote(sys.executable)} "$@"'),
            ("pip", "exit 0"),
        ):
            tool = bin_dir / name
            tool.write_text(f"#!/bin/sh\n{body}\n")
            tool.chmod(0o755)
    return bin_dir


class FakeRunPod(_PodProcesses):
    """In-memory RunPod state plus an HTTP server on 127.0.0.1.

    Attributes:
        url: Base URL (set ``RUNPOD_API_BASE_URL`` to it; endpoints are ``url + "/v2"``).
        api_key: The only accepted API key.
        backend: ``(base_url, api_key)`` of the real vLLM server workers and pods forward
            to, or None.
        capacity: GPU type ids with no capacity (``"*"`` for all; ``"<id>|SECURE"`` or
            ``"*|COMMUNITY"`` for one cloud type only).
        crash_loop: Pod names whose container keeps restarting (as on an AMD or MIG GPU,
            where every pod's container crash-loops).
        template_refusal_s: How long after an endpoint's deletion its template cannot be
            deleted (about 2 minutes on RunPod).
        workers_start: False keeps every worker from starting (a stuck queue).
        pod_boot_polls: ``pod`` queries answered with ``runtime: null`` before it is up.
        graphql_log: ``(field, args)`` of every GraphQL field called, in order.
        worker_warnings: Template env variables the worker would ignore.
    """

    def __init__(self, api_key: str = "rpa_FAKEKEY0123456789abcdefghijklmnop") -> None:
        self.api_key = api_key
        self.lock = threading.RLock()
        self.templates: dict[str, dict[str, Any]] = {}
        self.endpoints: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, Job] = {}
        self.failures: list[Failure] = []
        self.graphql_log: list[tuple[str, dict[str, Any]]] = []
        self.requests: list[str] = []
        self.worker_warnings: list[str] = []
        self.backend: tuple[str, str] | None = None
        self.capacity: set[str] = set()
        self.workers_start = True
        self.pod_boot_polls = 2
        self.crash_loop: set[str] = set()
        self.template_refusal_s = 0.3
        self.template_last_used: dict[str, float] = {}
        self.openai_wait_s = 120.0
        self._poll_counts: dict[str, int] = {}
        # Pods that run their command for real (see "pod processes" below).
        self.run_pod_commands = False
        self.pod_env: dict[str, str] = {}
        self.pod_root: Path | None = None
        self.pod_processes: dict[str, subprocess.Popen[bytes]] = {}
        self.pod_port_env: dict[int, str] = {}
        self._stop = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self.url = ""

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> FakeRunPod:
        """Serve on a free port and start the simulated workers."""
        fake = self

        class Handler(_Handler):
            runpod = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        threading.Thread(target=self._work, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop serving and working (and every pod process still running)."""
        for pod_id in list(self.pod_processes):
            self._stop_pod_process(pod_id)
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def endpoint_base(self) -> str:
        """``runpod.endpoint_url_base`` for this fake."""
        return self.url + "/v2"

    @property
    def proxy_template(self) -> str:
        """Pod proxy URL template for this fake."""
        return self.url + "/proxy/{pod_id}-{port}"

    # ------------------------------------------------------------------ test helpers
    def fail(
        self, op: str, message: str = "Something went wrong", *, status: int = 200, times: int = 1
    ) -> None:
        """Make the next ``times`` calls of ``op`` fail (a GraphQL field or a REST op)."""
        with self.lock:
            self.failures.append(Failure(op, message, status, times))

    def leftovers(self) -> dict[str, list[str]]:
        """Every resource still present (what a clean run must leave empty)."""
        with self.lock:
            return {
                "templates": [t["name"] for t in self.templates.values()],
                "endpoints": [e["name"] for e in self.endpoints.values()],
                "pods": [p["name"] for p in self.pods.values()],
            }

    def calls(self, name: str) -> list[dict[str, Any]]:
        """Arguments of each GraphQL call of ``name``."""
        return [args for n, args in self.graphql_log if n == name]

    def _maybe_fail(self, op: str) -> None:
        with self.lock:
            for failure in self.failures:
                if failure.op == op and failure.times > 0:
                    failure.times -= 1
                    raise ApiError(failure.message, failure.status, "INTERNAL_SERVER_ERROR")

    # ------------------------------------------------------------------ GraphQL ops
    def graphql(self, op: str, fields: list[dict[str, Any]]) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for f in fields:
            with self.lock:
                self.graphql_log.append((f["name"], f["args"]))
            self._maybe_fail(f["name"])
            if isinstance(f["args"].get("input"), dict):
                check_input(f["name"], f["args"]["input"])
            kind = FIELD_SELECTION.get(f["name"])
            if kind is not None:
                check_selection(f["name"], f["fields"], SELECTIONS[kind])
            handler = getattr(self, f"_gql_{f['name']}", None)
            if handler is None:
                raise ApiError(
                    f'Cannot query field "{f["name"]}" on type "{op.title()}".',
                    400,
                    "GRAPHQL_VALIDATION_FAILED",
                )
            with self.lock:
                data[f["name"]] = handler(f)
        return data

    @staticmethod
    def _input(f: dict[str, Any], *required: str) -> dict[str, Any]:
        values = f["args"].get("input")
        if not isinstance(values, dict):
            raise ApiError(
                f'Field "{f["name"]}" argument "input" of type required, but not provided.',
                400,
                "GRAPHQL_VALIDATION_FAILED",
            )
        missing = [r for r in required if values.get(r) in (None, "")]
        if missing:
            raise ApiError(
                f'Field "{missing[0]}" of required type was not provided.',
                400,
                "GRAPHQL_VALIDATION_FAILED",
            )
        return values

    def _gql_gpuTypes(self, f: dict[str, Any]) -> list[dict[str, Any]]:  # noqa: N802 - GraphQL field name
        wanted = (f["args"].get("input") or {}).get("id")
        rows = []
        for gpu in GPU_TYPES:
            if wanted and gpu["id"] != wanted:
                continue
            price = round(0.02 * gpu["memoryInGb"], 2)
            rows.append(
                {
                    **gpu,
                    "manufacturer": "AMD" if gpu["id"].startswith("AMD") else "Nvidia",
                    "maxGpuCount": 8,
                    "securePrice": price,
                    "communityPrice": round(price * 0.8, 2),
                    "secureSpotPrice": round(price * 0.5, 2),
                    "communitySpotPrice": round(price * 0.4, 2),
                    "lowestPrice": {
                        "minimumBidPrice": round(price * 0.4, 2),
                        "uninterruptablePrice": price,
                    },
                }
            )
        return rows

    def _gql_myself(self, f: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": "user1",
            "endpoints": [self._endpoint_view(e) for e in self.endpoints.values()],
            "podTemplates": [dict(t) for t in self.templates.values()],
            "pods": [self._pod_view(p, count=False) for p in self.pods.values()],
            "networkVolumes": [],
        }

    def _gql_pod(self, f: dict[str, Any]) -> dict[str, Any] | None:
        pod_id = (f["args"].get("input") or {}).get("podId")
        pod = self.pods.get(pod_id)
        return self._pod_view(pod) if pod else None

    def _gql_saveTemplate(self, f: dict[str, Any]) -> dict[str, Any]:  # noqa: N802 - GraphQL field name
        values = self._input(f, "name", "imageName", "containerDiskInGb")
        if "env" not in values or "dockerArgs" not in values or "volumeInGb" not in values:
            raise ApiError(
                'Field "env", "dockerArgs" and "volumeInGb" are required.',
                400,
                "GRAPHQL_VALIDATION_FAILED",
            )
        template_id = values.get("id")
        if template_id:
            if template_id not in self.templates:
                raise ApiError(f"Template {template_id} not found")
        elif any(t["name"] == values["name"] for t in self.templates.values()):
            raise ApiError("Template name must be unique")
        for item in values["env"]:
            if values.get("isServerless") and item["key"] not in KNOWN_WORKER_ENV:
                self.worker_warnings.append(item["key"])
        template = {
            "id": template_id or "tpl" + secrets.token_hex(4),
            "name": values["name"],
            "imageName": values["imageName"],
            "dockerArgs": values.get("dockerArgs", ""),
            "containerDiskInGb": values["containerDiskInGb"],
            "volumeInGb": values.get("volumeInGb", 0),
            "volumeMountPath": values.get("volumeMountPath", "/workspace"),
            "ports": values.get("ports", ""),
            "env": [{"key": e["key"], "value": e["value"]} for e in values["env"]],
            "isServerless": bool(values.get("isServerless")),
            "readme": values.get("readme", ""),
        }
        self.templates[template["id"]] = template
        return dict(template)

    def _gql_deleteTemplate(self, f: dict[str, Any]) -> None:  # noqa: N802 - GraphQL field name
        name = f["args"].get("templateName")
        found = [t for t in self.templates.values() if t["name"] == name]
        if not found:
            raise ApiError(f"Template {name} not found")
        if any(e["templateId"] == found[0]["id"] for e in self.endpoints.values()):
            raise ApiError("Template is in use by an endpoint and cannot be deleted")
        last = self.template_last_used.get(found[0]["id"])
        if last is not None and time.monotonic() - last < self.template_refusal_s:
            raise ApiError("Template was used recently; try again in a few minutes")
        del self.templates[found[0]["id"]]

    def _gql_saveEndpoint(self, f: dict[str, Any]) -> dict[str, Any]:  # noqa: N802 - GraphQL field name
        values = self._input(f, "name", "templateId", "gpuIds")
        if values["templateId"] not in self.templates:
            raise ApiError(f"Template {values['templateId']} not found")
        pools = [p for p in str(values["gpuIds"]).split(",") if p and not p.startswith("-")]
        unknown = [p for p in pools if p not in POOLS]
        if unknown:
            raise ApiError(f"Invalid gpuIds: {unknown} (serverless takes GPU pool ids)")
        if (
            int(values.get("workersMin") or 0) > int(values.get("workersMax") or 0)
            and values.get("workersMax") is not None
        ):
            raise ApiError("workersMin cannot be greater than workersMax")
        endpoint_id = values.get("id")
        existing = self.endpoints.get(endpoint_id, {}) if endpoint_id else {}
        if endpoint_id and not existing:
            raise ApiError(f"Endpoint {endpoint_id} not found")
        # A save replaces the whole endpoint: fields left out go back to their defaults.
        current = {k: existing[k] for k in ("worker", "worker_since") if k in existing}
        endpoint = {
            "id": endpoint_id or "ep" + secrets.token_hex(5),
            "name": values["name"],
            "templateId": values["templateId"],
            "gpuIds": values["gpuIds"],
            "gpuCount": int(values.get("gpuCount", current.get("gpuCount", 1))),
            "networkVolumeId": values.get("networkVolumeId", current.get("networkVolumeId", "")),
            "locations": values.get("locations", current.get("locations", "")),
            "idleTimeout": int(values.get("idleTimeout", current.get("idleTimeout", 5))),
            "scalerType": values.get("scalerType", current.get("scalerType", "QUEUE_DELAY")),
            "scalerValue": int(values.get("scalerValue", current.get("scalerValue", 4))),
            "workersMin": int(values.get("workersMin", current.get("workersMin", 0))),
            "workersMax": int(values.get("workersMax", current.get("workersMax", 3))),
            "allowedCudaVersions": values.get(
                "allowedCudaVersions", current.get("allowedCudaVersions", "")
            ),
            "flashBootType": str(values.get("flashBootType", current.get("flashBootType", "OFF"))),
            "worker": current.get("worker", "none"),
            "worker_since": current.get("worker_since", 0.0),
        }
        self.endpoints[endpoint["id"]] = endpoint
        return self._endpoint_view(endpoint)

    def _gql_deleteEndpoint(self, f: dict[str, Any]) -> None:  # noqa: N802 - GraphQL field name
        endpoint_id = f["args"].get("id")
        endpoint = self.endpoints.get(endpoint_id)
        if endpoint is None:
            raise ApiError(f"Endpoint {endpoint_id} not found")
        if endpoint["workersMax"] or endpoint["workersMin"]:
            raise ApiError("Endpoint has workers: set min and max workers to 0 before deleting it")
        del self.endpoints[endpoint_id]
        self.template_last_used[endpoint["templateId"]] = time.monotonic()
        for job in self.jobs.values():
            if job.endpoint_id == endpoint_id and job.status not in FINAL:
                self._finish(job, "CANCELLED")

    def _deploy_pod(self, values: dict[str, Any], spot: bool) -> dict[str, Any]:
        gpu = values["gpuTypeId"]
        bad_cuda = [v for v in values.get("allowedCudaVersions") or [] if v not in CUDA_VERSIONS]
        if bad_cuda:
            raise ApiError(
                f"Invalid allowedCudaVersions: {bad_cuda} (known: {sorted(CUDA_VERSIONS)})"
            )
        if gpu not in {g["id"] for g in GPU_TYPES}:
            raise ApiError(f"Invalid GPU type: {gpu}")
        if gpu not in NVIDIA_WHOLE:
            self.crash_loop.add(values["name"])  # a CUDA image never starts there
        cloud = str(values.get("cloudType", "ALL"))
        if {"*", gpu, f"{gpu}|{cloud}", f"*|{cloud}"} & self.capacity:
            raise ApiError(NO_CAPACITY)
        env: dict[str, str] = {}
        for item in values.get("env") or []:
            env[item["key"]] = item["value"]
        pod = {
            "id": "pod" + secrets.token_hex(5),
            "name": values["name"],
            "imageName": values["imageName"],
            "dockerArgs": values.get("dockerArgs", ""),
            "gpuTypeId": gpu,
            "gpuCount": int(values.get("gpuCount", 1)),
            "cloudType": str(values.get("cloudType", "ALL")),
            "containerDiskInGb": values.get("containerDiskInGb"),
            "ports": values.get("ports", ""),
            "env_map": env,
            "desiredStatus": "RUNNING",
            "costPerHr": round(
                0.02 * next(g["memoryInGb"] for g in GPU_TYPES if g["id"] == gpu), 2
            ),
            "interruptible": spot,
            "allowedCudaVersions": values.get("allowedCudaVersions"),
        }
        self.pods[pod["id"]] = pod
        self._poll_counts[pod["id"]] = 0
        if self.run_pod_commands and pod["dockerArgs"]:
            self._start_pod_process(pod)
        return {
            "id": pod["id"],
            "imageName": pod["imageName"],
            "env": [f"{k}={v}" for k, v in env.items()],
            "machineId": "m1",
            "machine": {"podHostId": pod["id"] + "-host"},
        }

    def _gql_podFindAndDeployOnDemand(self, f: dict[str, Any]) -> dict[str, Any]:  # noqa: N802 - GraphQL field name
        values = self._input(f, "name", "imageName", "gpuTypeId", "cloudType")
        return self._deploy_pod(values, spot=False)

    def _gql_podRentInterruptable(self, f: dict[str, Any]) -> dict[str, Any]:  # noqa: N802 - GraphQL field name
        values = self._input(f, "name", "imageName", "gpuTypeId", "bidPerGpu")
        row = next(
            (g for g in self._gql_gpuTypes({"args": {}}) if g["id"] == values["gpuTypeId"]), None
        )
        floor = row["lowestPrice"]["minimumBidPrice"] if row else 0.0
        if float(values["bidPerGpu"]) < floor:
            raise ApiError(f"Your bid of {values['bidPerGpu']} is below the minimum bid of {floor}")
        return self._deploy_pod(values, spot=True)

    def _gql_podTerminate(self, f: dict[str, Any]) -> None:  # noqa: N802 - GraphQL field name
        pod_id = (f["args"].get("input") or {}).get("podId")
        if pod_id not in self.pods:
            raise ApiError(f"Pod {pod_id} not found")
        del self.pods[pod_id]
        self._stop_pod_process(pod_id)

    def _pod_view(self, pod: dict[str, Any], count: bool = True) -> dict[str, Any]:
        view = {k: v for k, v in pod.items() if k not in ("env_map", "allowedCudaVersions")}
        view["env"] = [f"{k}={v}" for k, v in pod["env_map"].items()]
        view["machine"] = {"gpuDisplayName": pod["gpuTypeId"]}
        if count:
            self._poll_counts[pod["id"]] = self._poll_counts.get(pod["id"], 0) + 1
        booted = self._poll_counts.get(pod["id"], 0) > self.pod_boot_polls
        if booted and "worker-v1-vllm" in pod["imageName"]:
            # The serverless worker finds no job queue in a pod and exits.
            pod["desiredStatus"] = "EXITED"
            view["desiredStatus"] = "EXITED"
        polls = self._poll_counts.get(pod["id"], 0) - self.pod_boot_polls
        if booted and pod["desiredStatus"] == "RUNNING" and pod["name"] in self.crash_loop:
            # The container restarts over and over: RUNNING, uptime going back to 0.
            view["runtime"] = {"uptimeInSeconds": polls % 2, "ports": []}
            return view
        if booted and pod["desiredStatus"] == "RUNNING":
            ports = []
            for spec in str(pod["ports"]).split(","):
                if "/" in spec:
                    number, kind = spec.split("/")
                    ports.append(
                        {
                            "ip": "100.65.0.2",
                            "isIpPublic": False,
                            "privatePort": int(number),
                            "publicPort": 60000 + int(number) % 1000,
                            "type": kind,
                        }
                    )
            view["runtime"] = {"uptimeInSeconds": 5 + polls, "ports": ports}
        else:
            view["runtime"] = None
        return view

    @staticmethod
    def _endpoint_view(endpoint: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in endpoint.items() if k not in ("worker", "worker_since")}

    # ------------------------------------------------------------------ workers
    def _worker_can_start(self, endpoint: dict[str, Any]) -> bool:
        return self.workers_start and endpoint["workersMax"] > 0

    def health(self, endpoint_id: str) -> dict[str, Any]:
        with self.lock:
            endpoint = self.endpoints[endpoint_id]
            jobs = [j for j in self.jobs.values() if j.endpoint_id == endpoint_id]
            state = endpoint["worker"]
        workers = {
            "idle": 0,
            "initializing": 0,
            "ready": 0,
            "running": 0,
            "throttled": 0,
            "unhealthy": 0,
        }
        if state in workers:
            workers[state] = 1
        return {
            "jobs": {
                "completed": sum(j.status == "COMPLETED" for j in jobs),
                "failed": sum(j.status == "FAILED" for j in jobs),
                "inProgress": sum(j.status == "IN_PROGRESS" for j in jobs),
                "inQueue": sum(j.status == "IN_QUEUE" for j in jobs),
                "retried": 0,
            },
            "workers": workers,
        }

    def _work(self) -> None:
        while not self._stop.is_set():
            job = None
            with self.lock:
                for endpoint in self.endpoints.values():
                    queued = [
                        j
                        for j in self.jobs.values()
                        if j.endpoint_id == endpoint["id"] and j.status == "IN_QUEUE"
                    ]
                    if not queued or not self._worker_can_start(endpoint):
                        if not queued and endpoint["worker"] == "idle":
                            endpoint["worker"] = "none" if endpoint["workersMin"] == 0 else "idle"
                        continue
                    template = self.templates.get(endpoint["templateId"], {})
                    env = {e["key"]: e["value"] for e in template.get("env", [])}
                    if not WORKER_IMAGE.match(template.get("imageName", "")) or not env.get(
                        "MODEL_NAME"
                    ):
                        endpoint["worker"] = "running"  # runs, but never asks for jobs
                        continue
                    if endpoint["worker"] == "none":
                        endpoint["worker"], endpoint["worker_since"] = (
                            "initializing",
                            time.monotonic(),
                        )
                        continue
                    if (
                        endpoint["worker"] == "initializing"
                        and time.monotonic() - endpoint["worker_since"] < 0.2
                    ):
                        continue
                    job = queued[0]
                    job.status = "IN_PROGRESS"
                    endpoint["worker"] = "running"
                    break
            if job is None:
                time.sleep(0.05)
                continue
            self._run_job(job)

    def _finish(self, job: Job, status: str, output: Any = None, error: str | None = None) -> None:
        job.status, job.output, job.error = status, output, error
        job.done.set()

    def _run_job(self, job: Job) -> None:
        inp = job.input
        with self.lock:
            endpoint = self.endpoints.get(job.endpoint_id)
            template = self.templates.get(endpoint["templateId"], {}) if endpoint else {}
        env = {e["key"]: e["value"] for e in template.get("env", [])}
        if "openai_route" in inp:
            route, body = inp["openai_route"], inp.get("openai_input")
            method = "GET" if route.endswith("/models") else "POST"
        elif "route" in inp:
            route, body, method = inp["route"], inp.get("body"), inp.get("method", "POST")
        elif "messages" in inp or "prompt" in inp:
            route = "/v1/chat/completions" if "messages" in inp else "/v1/completions"
            body = {k: inp[k] for k in ("messages", "prompt", "stream", "model") if k in inp}
            body.update(inp.get("sampling_params") or {})
            body.setdefault(
                "model",
                env.get("SERVED_MODEL_NAME")
                or env.get("OPENAI_SERVED_MODEL_NAME_OVERRIDE")
                or env.get("MODEL_NAME"),
            )
            method = "POST"
        else:
            self._finish(
                job,
                "FAILED",
                error="Unsupported input: expected openai_route, route, messages or prompt",
            )
            self._idle(job)
            return
        if self.backend is None:
            self._finish(
                job,
                "COMPLETED",
                [{"error": {"message": "no vLLM backend", "type": "worker_error", "code": None}}],
            )
            self._idle(job)
            return
        status, _, data = forward(self.backend, method, route, body)
        if body and isinstance(body, dict) and body.get("stream") and status == 200:
            text = data.decode()
            chunks = [text[i : i + 97] for i in range(0, len(text), 97)]  # arbitrary boundaries
            self._finish(job, "COMPLETED", chunks)
        elif status == 200:
            self._finish(job, "COMPLETED", [json.loads(data)])
        else:
            try:
                message = json.loads(data).get("error", {}).get("message") or data.decode()
            except (ValueError, AttributeError):
                message = data.decode(errors="replace")
            self._finish(
                job,
                "COMPLETED",
                [{"error": {"message": message, "type": "worker_error", "code": None}}],
            )
        self._idle(job)

    def _idle(self, job: Job) -> None:
        with self.lock:
            endpoint = self.endpoints.get(job.endpoint_id)
            if endpoint is not None:
                endpoint["worker"] = "idle"

    def queue(self, endpoint_id: str, job_input: dict[str, Any]) -> Job:
        job = Job("job-" + secrets.token_hex(6), endpoint_id, job_input)
        with self.lock:
            self.jobs[job.id] = job
        return job


def forward(backend: tuple[str, str], method: str, route: str, body: Any) -> tuple[int, str, bytes]:
    """Send a request to the real vLLM server; return status, content type and body."""
    base, key = backend
    data = json.dumps(body).encode() if body is not None and method != "GET" else None
    request = urllib.request.Request(base.rstrip("/") + route, data=data, method=method)
    request.add_header("Authorization", f"Bearer {key}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()
    except OSError as exc:
        return 502, "text/plain", str(exc).encode()


class _Handler(BaseHTTPRequestHandler):
    runpod: FakeRunPod
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        if status in (429, 503):
            self.send_header("Retry-After", "0")  # RunPod says when to come back
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, data: Any) -> None:
        self._send(status, json.dumps(data).encode())

    def _authorized(self) -> bool:
        return self.headers.get("Authorization") == f"Bearer {self.runpod.api_key}"

    def _dispatch(self, method: str) -> None:
        fake = self.runpod
        parts = urlsplit(self.path)
        body = self._body()
        fake.requests.append(f"{method} {parts.path}")
        try:
            if parts.path == "/graphql" and method == "POST":
                self._graphql(body)
            elif parts.path.startswith("/v2/"):
                self._serverless(method, parts.path, parse_qs(parts.query), body)
            elif parts.path.startswith("/proxy/"):
                self._proxy(method, parts.path, body)
            else:
                self._json(404, {"error": "not found"})
        except ApiError as exc:
            if parts.path == "/graphql":
                self._json(
                    exc.status,
                    {
                        "errors": [
                            {"message": exc.message, "path": None, "extensions": {"code": exc.code}}
                        ],
                        "data": None,
                    },
                )
            else:
                self._json(exc.status if exc.status != 200 else 500, {"error": exc.message})

    def _graphql(self, raw: bytes) -> None:
        fake = self.runpod
        if not self._authorized():
            self._json(
                401,
                {
                    "errors": [
                        {"message": "Unauthorized", "extensions": {"code": "UNAUTHENTICATED"}}
                    ]
                },
            )
            return
        payload = json.loads(raw or b"{}")
        try:
            op, fields = parse_graphql(payload.get("query", ""), payload.get("variables"))
        except GraphQLSyntaxError as exc:
            self._json(
                400,
                {"errors": [{"message": str(exc), "extensions": {"code": "GRAPHQL_PARSE_FAILED"}}]},
            )
            return
        try:
            data = fake.graphql(op, fields)
        except ApiError as exc:
            if exc.status != 200:
                raise
            path = [fields[0]["name"]] if fields else None
            self._json(
                200,
                {
                    "errors": [
                        {
                            "message": exc.message,
                            "locations": [{"line": 1, "column": 1}],
                            "path": path,
                            "extensions": {"code": exc.code},
                        }
                    ],
                    "data": None,
                },
            )
            return
        self._json(200, {"data": data})

    def _serverless(self, method: str, path: str, query: dict[str, list[str]], raw: bytes) -> None:
        fake = self.runpod
        if not self._authorized():
            self._json(401, {"error": "Unauthorized"})
            return
        match = re.match(r"^/v2/([^/]+)/(.*)$", path)
        if not match:
            raise ApiError("not found", 404)
        endpoint_id, rest = match.groups()
        with fake.lock:
            if endpoint_id not in fake.endpoints:
                raise ApiError(f"endpoint {endpoint_id} not found", 404)
        op = rest.split("/")[0]
        fake._maybe_fail("openai" if op == "openai" else op)
        payload = json.loads(raw) if raw else {}
        if op == "health":
            self._json(200, fake.health(endpoint_id))
        elif op in ("run", "runsync"):
            if not isinstance(payload.get("input"), dict):
                raise ApiError("input is required", 400)
            job = fake.queue(endpoint_id, payload["input"])
            if op == "run":
                self._json(200, {"id": job.id, "status": "IN_QUEUE"})
                return
            wait = min(float(query.get("wait", ["90000"])[0]) / 1000, 300.0)
            job.done.wait(wait)
            self._json(200, _job_view(job))
        elif op == "status":
            job = fake.jobs.get(rest.split("/")[1])
            if job is None:
                raise ApiError("job not found", 404)
            self._json(200, _job_view(job))
        elif op == "cancel":
            job = fake.jobs.get(rest.split("/")[1])
            if job is None:
                raise ApiError("job not found", 404)
            if job.status not in FINAL:
                fake._finish(job, "CANCELLED")
            self._json(200, {"id": job.id, "status": job.status})
        elif op == "purge-queue":
            removed = 0
            for job in list(fake.jobs.values()):
                if job.endpoint_id == endpoint_id and job.status == "IN_QUEUE":
                    fake._finish(job, "CANCELLED")
                    removed += 1
            self._json(200, {"removed": removed, "status": "completed"})
        elif op == "openai":
            route = "/" + rest.split("/", 2)[2] if rest.count("/") >= 2 else "/"
            route = route if route.startswith("/v1/") else "/v1" + route
            job = fake.queue(endpoint_id, {"openai_route": route, "openai_input": payload or None})
            if not job.done.wait(fake.openai_wait_s):
                fake._finish(job, "CANCELLED")
                raise ApiError("request timed out waiting in the queue", 504)
            output = job.output or []
            error = next((o["error"] for o in output if isinstance(o, dict) and "error" in o), None)
            if error:
                self._json(400, {"error": error})
            elif payload.get("stream"):
                self._send(200, "".join(output).encode(), "text/event-stream")
            else:
                self._json(200, output[0])
        else:
            raise ApiError(f"unknown route {rest}", 404)

    def _proxy(self, method: str, path: str, raw: bytes) -> None:
        fake = self.runpod
        match = re.match(r"^/proxy/([^/]+)-(\d+)(/.*)?$", path)
        if not match:
            raise ApiError("not found", 404)
        pod_id, port, route = match.group(1), int(match.group(2)), match.group(3) or "/"
        fake._maybe_fail("proxy")
        with fake.lock:
            pod = fake.pods.get(pod_id)
            up = pod is not None and fake._poll_counts.get(pod_id, 0) > fake.pod_boot_polls
            key = pod["env_map"].get("VLLM_API_KEY") if pod else None
        if pod is None:
            self._send(404, b"404 page not found", "text/plain")
            return
        if not up or pod["desiredStatus"] != "RUNNING" or f"{port}/http" not in pod["ports"]:
            self._send(502, b"<html>502 Bad Gateway</html>", "text/html")
            return
        local = (pod.get("port_map") or {}).get(port)
        if local is not None:
            self._forward_local(method, f"http://127.0.0.1:{local}{route}", raw)
            return
        if (
            route.startswith("/v1/")
            and key
            and self.headers.get("Authorization") != f"Bearer {key}"
        ):
            self._json(401, {"error": "Unauthorized"})
            return
        if fake.backend is None:
            self._send(502, b"<html>502 Bad Gateway</html>", "text/html")
            return
        body = json.loads(raw) if raw else None
        status, content_type, data = forward(fake.backend, method, route, body)
        self._send(status, data, content_type or "application/json")

    def _forward_local(self, method: str, url: str, raw: bytes) -> None:
        """Pass a request to a pod process's port, headers and body as they came."""
        request = urllib.request.Request(url, data=raw or None, method=method)
        for name, value in self.headers.items():
            if name.lower() not in ("host", "content-length", "connection"):
                request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, kind, data = (
                    response.status,
                    response.headers.get("Content-Type"),
                    (response.read()),
                )
        except urllib.error.HTTPError as exc:
            status, kind, data = exc.code, exc.headers.get("Content-Type"), exc.read()
        except OSError:
            # Nothing listens (yet), or the process hangs: what RunPod's proxy answers.
            status, kind, data = 502, "text/html", b"<html>502 Bad Gateway</html>"
        self._send(status, data, kind or "application/json")


def _job_view(job: Job) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": job.id,
        "status": job.status,
        "delayTime": 10,
        "executionTime": 20,
    }
    if job.status in FINAL:
        if job.output is not None:
            view["output"] = job.output
        if job.error:
            view["error"] = job.error
    return view


@pytest.fixture
def fake_runpod(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeRunPod]:
    """A running FakeRunPod with the SDK's variables and tuneship's pointed at it."""
    fake = FakeRunPod().start()
    monkeypatch.setenv("RUNPOD_API_KEY", fake.api_key)
    monkeypatch.setenv("RUNPOD_API_BASE_URL", fake.url)
    monkeypatch.setenv("RUNPOD_ENDPOINT_BASE_URL", fake.endpoint_base)
    monkeypatch.setenv("TUNESHIP_RUNPOD_POD_PROXY_URL", fake.proxy_template)
    try:
        yield fake
    finally:
        fake.stop()
