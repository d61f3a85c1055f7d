"""The vLLM server options, built once from a plan and the ``serve`` section, and rendered.

Every target starts the same ``vllm serve``: :func:`build_vllm_options` decides the flag
set once; each target only renders it:

* :meth:`VllmOptions.as_args`: the argument list of a local process;
* :meth:`VllmOptions.as_pod_args`: the ``vllm/vllm-openai`` image's arguments on a pod;
* :meth:`VllmOptions.as_worker_env`: ``runpod/worker-v1-vllm``'s variables (v2.24 and
  later turn every variable named like a flag, ``MAX_MODEL_LEN``, into that flag).

Value rules, the same in every rendering: ``None`` leaves a flag out; ``True`` is the bare
flag (``true`` in the worker's variables); ``False`` is ``--no-<flag>`` (vLLM declares its
boolean options with ``argparse.BooleanOptionalAction``) and ``false`` in the worker's
variables, so a flag whose default is on can be turned off; an unplanned ``max_model_len``
is ``auto`` (vLLM 0.14 and later fit it to the memory). Secrets are never flags: the API
key travels in ``VLLM_API_KEY``.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from typing import Protocol

from tuneship.config import ServeConfig

FlagValue = str | int | float | bool


class EngineLimits(Protocol):
    """What a plan fixes for the engine: every target's plan provides these."""

    @property
    def tensor_parallel_size(self) -> int:
        """GPUs the model is split across."""
        ...

    @property
    def max_model_len(self) -> int | None:
        """Context length; None lets vLLM fit it."""
        ...

    @property
    def gpu_memory_utilization(self) -> float | None:
        """Share of each GPU's memory; None on the CPU backend."""
        ...


def flag_name(option: str) -> str:
    """``max_num_seqs`` or ``--max-num-seqs`` -> ``max_num_seqs`` (the one key form)."""
    return option.lstrip("-").replace("-", "_")


def flag_args(flags: dict[str, FlagValue]) -> list[str]:
    """Render flags as command-line arguments (see the module's value rules)."""
    args: list[str] = []
    for key, value in flags.items():
        flag = key.replace("_", "-")
        if value is True:
            args.append(f"--{flag}")
        elif value is False:
            args.append(f"--no-{flag}")
        else:
            args += [f"--{flag}", str(value)]
    return args


def flag_env(flags: dict[str, FlagValue]) -> dict[str, str]:
    """Render flags as worker-vllm variables: ``max_num_seqs`` -> ``MAX_NUM_SEQS``."""
    return {
        key.upper(): json.dumps(value) if isinstance(value, bool) else str(value)
        for key, value in flags.items()
    }


@dataclass(frozen=True)
class VllmOptions:
    """One server's options: the model, its served name, and the engine flags."""

    model: str
    served_model_name: str
    flags: dict[str, FlagValue] = field(default_factory=dict)
    revision: str | None = None

    def as_args(self, host: str, port: int) -> list[str]:
        """``vllm serve`` arguments for a process listening on ``host:port``."""
        args = ["--model", self.model]
        if self.revision:
            args += ["--revision", self.revision]
        args += ["--served-model-name", self.served_model_name]
        args += ["--host", host, "--port", str(port)]
        return args + flag_args(self.flags)

    def as_pod_args(self, port: int) -> str:
        """The pod's ``dockerArgs``: the same arguments, listening on every interface."""
        return shlex.join(self.as_args("0.0.0.0", port))

    def as_worker_env(self) -> dict[str, str]:
        """The serverless worker's variables (its aliases for model, revision and name)."""
        env = {
            "MODEL_NAME": self.model,
            "OPENAI_SERVED_MODEL_NAME_OVERRIDE": self.served_model_name,
            "SERVED_MODEL_NAME": self.served_model_name,
        }
        if self.revision:
            env["MODEL_REVISION"] = self.revision
        return env | flag_env(self.flags)


def build_vllm_options(
    model: str,
    served_model_name: str,
    plan: EngineLimits,
    serve: ServeConfig,
    *,
    revision: str | None = None,
    max_num_seqs: int | None = None,
) -> VllmOptions:
    """Build the flag set for ``model`` from the plan and the ``serve`` section.

    Args:
        model: Model folder (local) or Hub repo id.
        served_model_name: The ``model`` field clients send.
        plan: The target's plan (TP, context length, memory share).
        serve: The ``serve`` section: ``dtype``, and ``extra_options`` (any vLLM option,
            applied last so the user has the last word).
        revision: Hub revision to serve.
        max_num_seqs: Concurrent sequences (``serve.runpod.max_num_seqs`` on RunPod).
    """
    flags: dict[str, FlagValue] = {
        "max_model_len": plan.max_model_len or "auto",
        "tensor_parallel_size": plan.tensor_parallel_size,
        "dtype": serve.dtype,
    }
    if plan.gpu_memory_utilization is not None:
        flags["gpu_memory_utilization"] = f"{plan.gpu_memory_utilization:.2f}"
    if max_num_seqs is not None:
        flags["max_num_seqs"] = max_num_seqs
    for key, value in serve.extra_options.items():
        if value is not None:
            flags[flag_name(key)] = value
    return VllmOptions(model, served_model_name, flags, revision)
