"""RunPod: the API client (one module), plans and prices, and cleanup by name.

Pure Python (no Prefect). The serving targets are :mod:`tuneship.serving.runpod_serverless`
and :mod:`tuneship.serving.runpod_pod`; docs/runpod.md explains blocks, config and costs.
"""

from tuneship.runpod.client import RunPodClient
from tuneship.runpod.deployment import (
    POD_TARGET,
    RUNPOD_TARGETS,
    SERVERLESS_TARGET,
    RunPodDeploymentInfo,
    delete_resources_named,
    runpod_client_for,
    stop_runpod_deployment,
)
from tuneship.runpod.errors import (
    QueueStuckError,
    RunPodApiError,
    RunPodAuthError,
    RunPodBudgetError,
    RunPodCapacityError,
    RunPodTransientError,
)
from tuneship.runpod.specs import RunPodPlan, plan_pod, plan_serverless, resource_name

__all__ = [
    "POD_TARGET",
    "RUNPOD_TARGETS",
    "SERVERLESS_TARGET",
    "QueueStuckError",
    "RunPodApiError",
    "RunPodAuthError",
    "RunPodBudgetError",
    "RunPodCapacityError",
    "RunPodClient",
    "RunPodDeploymentInfo",
    "RunPodPlan",
    "RunPodTransientError",
    "delete_resources_named",
    "plan_pod",
    "plan_serverless",
    "resource_name",
    "runpod_client_for",
    "stop_runpod_deployment",
]
