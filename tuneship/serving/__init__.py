"""Serving: run a model behind an OpenAI-compatible endpoint, check it, stop it.

Domain code only (no Prefect): ``engine`` finds vLLM, ``placement`` gives this machine's
GPUs to the planner, ``vllm_options`` builds the server's flags once, ``local_vllm`` runs
the server, ``smoke`` checks it, ``lifecycle`` makes sure it stops, ``targets`` finds a
target by name. See ``docs/serving.md``.
"""

from tuneship.serving.base import DeploymentInfo, ServingTarget
from tuneship.serving.engine import EngineNotFoundError, find_engine_python, install_command
from tuneship.serving.lifecycle import TerminationRequested, managed_deployment, stop_deployment
from tuneship.serving.local_vllm import LocalVllmTarget, ServerStartError
from tuneship.serving.placement import LocalPlan, plan_local_server
from tuneship.serving.smoke import SmokeResult, SmokeTestError, run_smoke_test

__all__ = [
    "DeploymentInfo",
    "EngineNotFoundError",
    "LocalPlan",
    "LocalVllmTarget",
    "ServerStartError",
    "ServingTarget",
    "SmokeResult",
    "SmokeTestError",
    "TerminationRequested",
    "find_engine_python",
    "install_command",
    "managed_deployment",
    "plan_local_server",
    "run_smoke_test",
    "stop_deployment",
]
