"""Serving: run a model behind an OpenAI-compatible endpoint, check it, stop it.

Domain code only (no Prefect): ``engine`` finds vLLM, ``gpu_select`` plans GPUs and
limits, ``local_vllm`` runs the server (``docker`` runs it in a container), ``smoke``
checks it, ``lifecycle`` makes sure it stops. See ``docs/serving.md``.
"""

from tuneship.serving.base import DeploymentInfo, ServingTarget
from tuneship.serving.docker import DockerDeploymentInfo, DockerEngineError, DockerTarget
from tuneship.serving.engine import EngineNotFoundError, find_engine_python, install_command
from tuneship.serving.gpu_select import ServingPlan, plan_serving
from tuneship.serving.lifecycle import TerminationRequested, managed_deployment, stop_deployment
from tuneship.serving.local_vllm import LocalVllmTarget, ServerStartError
from tuneship.serving.smoke import SmokeResult, SmokeTestError, run_smoke_test

__all__ = [
    "DeploymentInfo",
    "DockerDeploymentInfo",
    "DockerEngineError",
    "DockerTarget",
    "EngineNotFoundError",
    "LocalVllmTarget",
    "ServerStartError",
    "ServingPlan",
    "ServingTarget",
    "SmokeResult",
    "SmokeTestError",
    "TerminationRequested",
    "find_engine_python",
    "install_command",
    "managed_deployment",
    "plan_serving",
    "run_smoke_test",
    "stop_deployment",
]
