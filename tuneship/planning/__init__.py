"""GPU and memory planning: model facts, the GPU catalog, vLLM serving and training plans.

Pure Python (no Prefect). The CLI is :mod:`tuneship.cli.plan`; docs/planner.md explains
the arithmetic and its sources.
"""

from tuneship.planning.gpus import (
    GpuCatalog,
    GpuSpec,
    custom_gpu,
    find_gpu,
    load_gpu_catalog,
    load_runpod_catalog,
)
from tuneship.planning.inventory import LocalGpu, list_local_gpus, pick_least_loaded
from tuneship.planning.model_facts import ModelFacts, facts_from_config, load_model_facts
from tuneship.planning.render import (
    plan_table_rows,
    render_serving_plan,
    render_training_plan,
)
from tuneship.planning.serving import ServingOption, ServingPlan, plan_serving
from tuneship.planning.training import TrainingOption, TrainingPlan, plan_training

__all__ = [
    "GpuCatalog",
    "GpuSpec",
    "LocalGpu",
    "ModelFacts",
    "ServingOption",
    "ServingPlan",
    "TrainingOption",
    "TrainingPlan",
    "custom_gpu",
    "facts_from_config",
    "find_gpu",
    "list_local_gpus",
    "load_gpu_catalog",
    "load_model_facts",
    "load_runpod_catalog",
    "pick_least_loaded",
    "plan_serving",
    "plan_table_rows",
    "plan_training",
    "render_serving_plan",
    "render_training_plan",
]
