"""Training on RunPod before any rental: the GPU ranking and the checks a run must pass.

Everything here is decided from the config, the base model's config.json and the GPU
catalogue (RunPod's live ``gpuTypes`` when a client is given): nothing is rented, so
``tuneship validate`` and the flow's pre-flight can refuse a run that would waste money.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tuneship.config import PipelineConfig, RunPodComputeConfig
from tuneship.errors import ConfigError

if TYPE_CHECKING:
    from pydantic import SecretStr

    from tuneship.planning.gpus import GpuSpec, RunpodGpuSource
    from tuneship.planning.training import TrainingOption, TrainingPlan


@dataclass(frozen=True)
class RunPodTrainingChoice:
    """The GPU options a RunPod training run tries, in order, and the plan they came from."""

    plan: TrainingPlan
    options: list[TrainingOption]

    @property
    def first(self) -> TrainingOption:
        """The option tried first (the cheapest fitting, or the first of ``gpu_types``)."""
        return self.options[0]

    def describe(self) -> str:
        """One line: the GPU, its price, and the budget's hours on it."""
        best = self.first
        return (
            f"{best.gpu_count} x {best.gpu} ({best.runpod_gpu_id}) at "
            f"${best.usd_per_hour:.2f}/h, peak {best.peak_gib:.2f} of {best.usable_gib:.2f} GiB"
        )


def plan_runpod_training(
    config: PipelineConfig, base_model_dir: str | Path, gpus: Sequence[GpuSpec] | None = None
) -> TrainingPlan:
    """The training memory plan of a run over RunPod's rentable GPUs.

    Args:
        config: The run's configuration.
        base_model_dir: Local folder of the base model (only config.json is read).
        gpus: The GPU types to consider (default: the shipped RunPod snapshot).

    Returns:
        The plan, cheapest fitting option first.
    """
    from tuneship.planning import load_gpu_catalog, load_model_facts, plan_training

    return plan_training(
        load_model_facts(base_model_dir),
        config.training.adapter,
        seq_len=config.data.max_length,
        batch_size=config.training.per_device_train_batch_size,
        gradient_checkpointing=config.training.gradient_checkpointing,
        lora_r=config.training.lora.r,
        gpus=list(gpus) if gpus is not None else load_gpu_catalog().rentable(),
        counts=(config.compute.gpu_count,),
    )


def rank_training_options(
    plan: TrainingPlan, settings: RunPodComputeConfig
) -> list[TrainingOption]:
    """The fitting, priced RunPod options to try, in order.

    ``compute.runpod.gpu_types`` restricts and orders the types; otherwise the plan's
    order (cheapest first) is kept.
    """
    fitting = [o for o in plan.options if o.fits and o.runpod_gpu_id and o.usd_per_hour is not None]
    if settings.gpu_types is None:
        return fitting
    by_id = {o.runpod_gpu_id: o for o in fitting}
    return [by_id[g] for g in settings.gpu_types if g in by_id]


def check_runpod_training(
    config: PipelineConfig,
    base_model_dir: str | Path,
    runpod_api_key: SecretStr | None,
    catalog: RunpodGpuSource | None = None,
) -> RunPodTrainingChoice:
    """Check a ``compute.provider: runpod`` run before anything is rented.

    Every problem is collected, so one message lists all of them: the Hub must be the
    publish target (the pod pushes the model there), a RunPod key must be set, some
    rentable GPU must fit the training plan, and ``max_usd`` must buy at least an hour
    of the cheapest one.

    Args:
        config: The run's configuration.
        base_model_dir: Local folder of the base model.
        runpod_api_key: The RunPod key the run would use, or None.
        catalog: Source of RunPod's live GPU list (a client); None uses the snapshot.

    Returns:
        The GPU options to try, in order.

    Raises:
        ConfigError: One or more problems, each on its own line.
    """
    from tuneship.planning.gpus import load_runpod_catalog

    settings = config.compute.runpod
    problems = []
    if config.publish.target != "hub":
        problems.append(
            "compute.provider=runpod: the pod pushes the trained model to the Hugging Face "
            "Hub, so publish.target must be 'hub' (it is "
            f"{config.publish.target!r}); set publish.repo_id to a repo of your namespace"
        )
    if runpod_api_key is None:
        problems.append(
            "compute.provider=runpod needs a RunPod API key: set compute.runpod."
            "credentials_block to a RunPodCredentials block, or RUNPOD_API_KEY for local use"
        )
    plan = plan_runpod_training(config, base_model_dir, load_runpod_catalog(catalog))
    options = rank_training_options(plan, settings)
    if not options:
        if settings.gpu_types is not None and any(o.fits for o in plan.options):
            problems.append(
                f"compute.runpod.gpu_types={settings.gpu_types} holds no GPU type that fits "
                f"{config.training.adapter} training (peak {plan.peak_gib:.2f} GiB per GPU); "
                "fitting types: "
                + ", ".join(sorted({str(o.runpod_gpu_id) for o in plan.options if o.fits}))
            )
        else:
            problems.append(
                f"{config.training.adapter} training of {config.model.base} needs "
                f"{plan.peak_gib:.2f} GiB per GPU with {config.compute.gpu_count} GPU(s), more "
                "than any rentable RunPod GPU holds; use training.adapter=qlora, "
                "training.gradient_checkpointing=true, a shorter data.max_length, a smaller "
                "batch, or more GPUs (compute.gpu_count)"
            )
    else:
        cheapest = min(float(o.usd_per_hour or 0.0) for o in options)
        if settings.max_usd < cheapest:
            problems.append(
                f"compute.runpod.max_usd={settings.max_usd:g} buys less than one hour of the "
                f"cheapest fitting GPU ({options[0].gpu} at ${cheapest:.2f}/h); raise it"
            )
    if problems:
        raise ConfigError(
            "this run cannot train on RunPod (nothing was rented):\n"
            + "\n".join(f"  - {p}" for p in problems)
        )
    return RunPodTrainingChoice(plan=plan, options=options)
