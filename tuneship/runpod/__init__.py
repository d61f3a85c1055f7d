"""RunPod: the API client and the request specs (plans, prices, budgets), nothing more.

Pure Python (no Prefect). The serving targets are :mod:`tuneship.serving.runpod_serverless`
and :mod:`tuneship.serving.runpod_pod` (their shared part :mod:`tuneship.serving.runpod_base`);
docs/runpod.md explains blocks, config and costs.
"""

from tuneship.runpod.client import RunPodClient
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
    "QueueStuckError",
    "RunPodApiError",
    "RunPodAuthError",
    "RunPodBudgetError",
    "RunPodCapacityError",
    "RunPodClient",
    "RunPodPlan",
    "RunPodTransientError",
    "plan_pod",
    "plan_serverless",
    "resource_name",
]
