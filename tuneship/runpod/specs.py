"""What tuneship asks RunPod for, worked out before anything is created (pure functions).

Facts come from ``runpod-workers/worker-vllm`` v2.25.2 and the RunPod docs as checked in
the project's research notes (docs/runpod.md lists them):

* the serverless image is ``runpod/worker-v1-vllm:<release tag>``; from v2.24 the worker
  turns every env var named like a vLLM flag (``MAX_MODEL_LEN`` -> ``--max-model-len``)
  into that flag, ``MODEL_NAME``/``MODEL_REVISION``/``OPENAI_SERVED_MODEL_NAME_OVERRIDE``
  are aliases of ``--model``/``--revision``/``--served-model-name``, and
  ``TENSOR_PARALLEL_SIZE`` must be set (it is no longer derived from the GPU count);
  ``MAX_MODEL_LENGTH`` is ignored;
* v2.19 and later need hosts with CUDA 13.0, v2.14-v2.18 CUDA 12.8/12.9, v2.11-v2.13
  CUDA 12.4-12.9 (each tag's Dockerfile and ``.runpod/hub.json``);
* the worker logs its whole ``vllm serve`` command line, and ``HF_TOKEN`` is also passed as
  ``--hf-token``: the token is therefore only sent for private or gated repos.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

from pydantic import BaseModel, Field

from tuneship.config import ServeConfig
from tuneship.errors import ConfigError
from tuneship.runpod.errors import RunPodBudgetError

RESOURCE_PREFIX = "tuneship-"
WORKER_REPO = "runpod/worker-v1-vllm"
POD_REPO = "vllm/vllm-openai"
POD_PORT = 8000
SECONDS_PER_DAY = 86_400
MIN_WORKER_VERSION = (2, 24, 0)
_TAG = re.compile(r"^v(\d+)\.(\d+)\.(\d+)$")
_SLUG = re.compile(r"[^a-z0-9-]+")

Kind = Literal["serverless", "pod"]


def resource_name(run: str) -> str:
    """The name every RunPod resource of a run carries: ``tuneship-<run>``.

    Deterministic, so cleanup hooks in another process find the resources by name.
    """
    slug = _SLUG.sub("-", run.lower()).strip("-") or "run"
    if not slug.startswith(RESOURCE_PREFIX):
        slug = RESOURCE_PREFIX + slug
    return slug[:63].rstrip("-")


def _split_image(image: str) -> tuple[str, str]:
    repo, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:
        return image, ""
    return repo, tag


def worker_cuda_versions(image: str) -> list[str]:
    """CUDA versions a ``runpod/worker-v1-vllm`` release needs on the host.

    Raises:
        ConfigError: Not the official worker at a release tag (``:latest``, ``stable-*``,
            the old ``runpod/worker-vllm`` name or a branch build).
    """
    repo, tag = _split_image(image)
    match = _TAG.match(tag)
    if repo != WORKER_REPO or not match:
        raise ConfigError(
            f"serve.runpod.worker_image={image!r}: use the official serverless worker at a "
            f"pinned release tag, e.g. {WORKER_REPO}:v2.25.2 (':latest' moves, "
            "'runpod/worker-vllm:stable-*' is vLLM 0.4 from 2024, and a pod image such as "
            "vllm/vllm-openai never takes serverless jobs: requests stay in the queue)"
        )
    version = tuple(int(x) for x in match.groups())
    if version < MIN_WORKER_VERSION:
        raise ConfigError(
            f"serve.runpod.worker_image={image!r}: worker-vllm releases before v2.24 are "
            "refused: they do not answer the readiness job ({'route': '/v1/models'}) and "
            "read their variables differently (TENSOR_PARALLEL_SIZE, MAX_MODEL_LEN), so the "
            "endpoint would look stuck; use runpod/worker-v1-vllm:v2.25.2"
        )
    return ["13.0"]  # v2.19 and later are built on CUDA 13.0


def pod_cuda_versions(image: str) -> list[str] | None:
    """Host CUDA versions a pod image runs on (``allowedCudaVersions``), None if unknown.

    ``vllm/vllm-openai`` v0.27 and later are built on CUDA 13.0 (a host driver for 13.0 is
    needed); earlier releases since v0.9 on CUDA 12.8, which newer drivers also run.
    """
    repo, tag = _split_image(image)
    match = _TAG.match(tag)
    if not repo.endswith("vllm-openai") or not match:
        return None
    version = tuple(int(x) for x in match.groups())
    if version >= (0, 27, 0):
        return ["13.0"]
    return ["12.8", "12.9", "13.0"]


def check_pod_image(image: str) -> None:
    """Require ``vllm/vllm-openai`` (or a mirror of it) at a pinned version tag.

    Raises:
        ConfigError: A moving tag, or the serverless worker (it exits in a pod).
    """
    repo, tag = _split_image(image)
    if repo.endswith(WORKER_REPO) or "worker-vllm" in repo:
        raise ConfigError(
            f"serve.runpod.pod_image={image!r} is a serverless worker: outside serverless it "
            f"exits at once ('test_input.json not found'); use {POD_REPO}:v0.27.1"
        )
    if not _TAG.match(tag):
        raise ConfigError(
            f"serve.runpod.pod_image={image!r}: pin a release tag such as {POD_REPO}:v0.27.1 "
            "(':latest' changes under a running deployment)"
        )


class RunPodPlan(BaseModel):
    """Where and how a model is served on RunPod, with its prices (small, JSON-safe)."""

    kind: Kind
    model: str
    revision: str | None = None
    served_model_name: str
    gpu_count: int = Field(description="GPUs per worker or pod; also the TP size.")
    gpu_ids: list[str] = Field(
        description="Serverless pools or pod GPU type ids, in priority order."
    )
    gpu_names: list[str] = Field(default_factory=list, description="Readable GPU names.")
    max_model_len: int | None = None
    gpu_memory_utilization: float | None = None
    usd_per_second: dict[str, float | None] = Field(
        default_factory=dict, description="Price per worker-second for each pool (serverless)."
    )
    usd_per_hour: dict[str, float | None] = Field(
        default_factory=dict, description="Price per hour of all GPUs of one worker or pod."
    )
    worst_usd_per_hour: float | None = Field(
        None, description="Dearest option's hourly price (all GPUs of one worker or pod)."
    )
    usd_per_day_at_max_workers: float | None = None
    workers_max: int = 1
    weights_gb: float = 0.0
    container_disk_gb: int = 20
    notes: list[str] = Field(default_factory=list)

    @property
    def tensor_parallel_size(self) -> int:
        """Every GPU of a worker or pod serves the one model (TP = GPU count)."""
        return self.gpu_count


def check_budget(plan: RunPodPlan, options: ServeConfig) -> None:
    """Refuse a plan whose worst-case price exceeds the budget (before creating anything).

    Raises:
        RunPodBudgetError: Over budget, or a price is unknown while a budget is set.
    """
    rp = options.runpod
    if plan.kind == "serverless" and rp.budget_usd_per_day is not None:
        unknown = [p for p, price in plan.usd_per_second.items() if price is None]
        if unknown:
            raise RunPodBudgetError(
                f"serve.runpod.budget_usd_per_day is set but pools {unknown} have no known "
                "price; restrict serve.runpod.gpu_pools to priced pools"
            )
        day = plan.usd_per_day_at_max_workers or 0.0
        if day > rp.budget_usd_per_day:
            rows = ", ".join(
                f"{pool} ${(price or 0) * SECONDS_PER_DAY:.2f}/day per worker"
                for pool, price in plan.usd_per_second.items()
            )
            raise RunPodBudgetError(
                f"serverless endpoint over budget: {plan.workers_max} worker(s) busy all day on "
                f"the dearest pool cost ${day:,.2f}/day, above serve.runpod."
                f"budget_usd_per_day=${rp.budget_usd_per_day:,.2f} ({rows}). Lower "
                "serve.runpod.workers_max, restrict serve.runpod.gpu_pools to cheaper pools, "
                "or raise the budget. Nothing was created."
            )
    if plan.kind == "pod" and rp.budget_usd_per_hour is not None:
        cheapest = min((p for p in plan.usd_per_hour.values() if p is not None), default=None)
        if cheapest is None or cheapest > rp.budget_usd_per_hour:
            rows = ", ".join(
                f"{gpu} ${price:.2f}/h" if price is not None else f"{gpu} (no price)"
                for gpu, price in plan.usd_per_hour.items()
            )
            raise RunPodBudgetError(
                f"no pod fits serve.runpod.budget_usd_per_hour=${rp.budget_usd_per_hour:.2f} "
                f"for {plan.gpu_count} GPU(s): {rows}. Raise the budget, or serve a smaller "
                "model or context. Nothing was created."
            )


def _facts_and_plan(
    model: str,
    options: ServeConfig,
    gpus: list[Any],
    price_basis: Literal["serverless", "pod"],
    *,
    revision: str | None,
    token: str | None,
    facts: Any = None,
) -> tuple[Any, Any, int]:
    from dataclasses import replace

    from tuneship.planning import load_model_facts, plan_serving
    from tuneship.planning.serving import ServeRequest

    facts = facts or load_model_facts(model, revision=revision, token=token)
    request = replace(ServeRequest.from_serve_config(options), price_basis=price_basis)
    plan = plan_serving(facts, request, gpus=gpus)
    chosen = plan.ensure_fits()
    return facts, plan, chosen.gpu_count


def _disk_gb(weights_gb: float, options: ServeConfig) -> int:
    if options.runpod.container_disk_gb:
        return options.runpod.container_disk_gb
    # Weights are downloaded into the container (no network volume): room for them, the
    # HF cache's temporary copy and the image's own layers.
    return math.ceil(weights_gb * 1.5 + 20)


def plan_serverless(
    model: str,
    options: ServeConfig,
    *,
    name: str,
    revision: str | None = None,
    token: str | None = None,
    facts: Any = None,
) -> RunPodPlan:
    """Plan a serverless endpoint: GPU count (= TP), pools in priority order, prices.

    Pools are the planner's fitting options at the chosen GPU count, cheapest first (or
    ``serve.runpod.gpu_pools`` in the user's order). ``max_model_len`` and the memory
    share are the smallest any chosen pool allows, since one template serves all pools
    (a set ``serve.max_model_len`` is every fitting option's length already).

    Raises:
        PlanningError: Nothing fits (the message says what would).
        ConfigError: A requested pool does not fit or does not exist.
    """
    from tuneship.planning import load_gpu_catalog

    rp = options.runpod
    catalog = [g for g in load_gpu_catalog().rentable() if g.serverless_pool]
    if rp.gpu_pools:
        known = {str(g.serverless_pool) for g in catalog}
        unknown = [p for p in rp.gpu_pools if p not in known]
        if unknown:
            raise ConfigError(
                f"serve.runpod.gpu_pools: unknown pools {unknown}; known: {sorted(known)}"
            )
        catalog = [g for g in catalog if g.serverless_pool in rp.gpu_pools]
    facts, plan, count = _facts_and_plan(
        model, options, catalog, "serverless", revision=revision, token=token, facts=facts
    )
    fitting = [o for o in plan.options if o.fits and o.gpu_count == count and o.serverless_pool]
    pools: list[str] = []
    chosen = []
    for option in fitting:
        if option.serverless_pool not in pools:
            pools.append(str(option.serverless_pool))
            chosen.append(option)
    if rp.gpu_pools:
        missing = [p for p in rp.gpu_pools if p not in pools]
        if missing:
            reasons = {
                o.serverless_pool: "; ".join(o.reasons)
                for o in plan.options
                if o.serverless_pool in missing and o.gpu_count == count
            }
            raise ConfigError(
                f"serve.runpod.gpu_pools: {missing} cannot serve {model} with {count} GPU(s): "
                f"{reasons}"
            )
        order = {p: i for i, p in enumerate(rp.gpu_pools)}
        chosen.sort(key=lambda o: order[str(o.serverless_pool)])
    else:
        chosen = chosen[: rp.max_pools]
    pools = [str(o.serverless_pool) for o in chosen]
    per_second: dict[str, float | None] = {}
    per_hour: dict[str, float | None] = {}
    for option in chosen:
        hourly = option.usd_per_hour
        per_hour[str(option.serverless_pool)] = hourly
        per_second[str(option.serverless_pool)] = (
            round(hourly / 3600, 6) if hourly is not None else None
        )
    known_hourly = [p for p in per_hour.values() if p is not None]
    worst = max(known_hourly) if known_hourly else None
    return RunPodPlan(
        kind="serverless",
        gpu_ids=pools,
        usd_per_second=per_second,
        usd_per_hour=per_hour,
        worst_usd_per_hour=worst,
        usd_per_day_at_max_workers=(
            round(worst * 24 * rp.workers_max, 2) if worst is not None else None
        ),
        workers_max=rp.workers_max,
        notes=[f"endpoint {resource_name(name)}: {o.summary()}" for o in chosen],
        **_common_plan_fields(model, options, revision, facts, count, chosen),
    )


def _common_plan_fields(
    model: str,
    options: ServeConfig,
    revision: str | None,
    facts: Any,
    count: int,
    chosen: list[Any],
) -> dict[str, Any]:
    """The :class:`RunPodPlan` fields both kinds fill the same way from the chosen options.

    The served length and memory share are the smallest over the chosen GPU types, so
    that one flag set works on whichever type RunPod hands out.
    """
    lengths = [o.max_model_len for o in chosen if o.max_model_len]
    utils = [o.gpu_memory_utilization for o in chosen if o.gpu_memory_utilization]
    weights_gb = facts.weight_bytes / 1e9
    return {
        "model": model,
        "revision": revision,
        "served_model_name": options.served_model_name or model,
        "gpu_count": count,
        "gpu_names": [o.gpu for o in chosen],
        "max_model_len": min(lengths) if lengths else None,
        "gpu_memory_utilization": min(utils) if utils else None,
        "weights_gb": round(weights_gb, 2),
        "container_disk_gb": _disk_gb(weights_gb, options),
    }


def plan_pod(
    model: str,
    options: ServeConfig,
    *,
    name: str,
    revision: str | None = None,
    token: str | None = None,
    gpus: list[Any] | None = None,
    facts: Any = None,
) -> RunPodPlan:
    """Plan a pod: GPU count (= TP) and GPU types to try in order, with hourly prices.

    Args:
        gpus: GPU types to consider (live ones from ``load_runpod_catalog(client)``);
            the shipped catalog by default.

    Raises:
        PlanningError: Nothing fits.
        ConfigError: A requested GPU type does not fit.
    """
    from tuneship.planning import load_gpu_catalog

    rp = options.runpod
    catalog = list(gpus) if gpus is not None else load_gpu_catalog().rentable()
    if rp.gpu_types:
        wanted = set(rp.gpu_types)
        catalog = [g for g in catalog if g.runpod_id in wanted or g.name in wanted]
        if not catalog:
            raise ConfigError(f"serve.runpod.gpu_types={rp.gpu_types}: no such RunPod GPU ids")
    facts, plan, count = _facts_and_plan(
        model, options, catalog, "pod", revision=revision, token=token, facts=facts
    )
    chosen = [o for o in plan.options if o.fits and o.gpu_count == count and o.runpod_gpu_id]
    if rp.gpu_types:
        order = {g: i for i, g in enumerate(rp.gpu_types)}
        chosen.sort(key=lambda o: order.get(str(o.runpod_gpu_id), order.get(o.gpu, 99)))
    if rp.budget_usd_per_hour is not None:
        within = [
            o
            for o in chosen
            if o.usd_per_hour is not None and o.usd_per_hour <= rp.budget_usd_per_hour
        ]
        chosen = within or chosen  # check_budget reports the over-budget case
    if not rp.gpu_types:
        chosen = chosen[: rp.max_pools]
    per_hour = {str(o.runpod_gpu_id): o.usd_per_hour for o in chosen}
    known = [p for p in per_hour.values() if p is not None]
    return RunPodPlan(
        kind="pod",
        gpu_ids=[str(o.runpod_gpu_id) for o in chosen],
        usd_per_hour=per_hour,
        worst_usd_per_hour=max(known) if known else None,
        notes=[f"pod {resource_name(name)}: {o.summary()}" for o in chosen],
        **_common_plan_fields(model, options, revision, facts, count, chosen),
    )


def model_needs_token(model: str, revision: str | None, token: str | None) -> bool:
    """Whether the Hub repo is private or gated (then the worker needs ``HF_TOKEN``).

    A repo the Hub does not show without a token is treated as private.

    Raises:
        ConfigError: The repo does not exist even with the token.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    api = HfApi()
    try:
        info = api.model_info(model, revision=revision, token=False)
    except GatedRepoError:
        return True
    except RepositoryNotFoundError:
        if not token:
            raise ConfigError(
                f"model {model!r} is not on the Hub (or it is private: set HF_TOKEN or "
                "serve.runpod.hf_credentials_block)"
            ) from None
        try:
            api.model_info(model, revision=revision, token=token)
        except RepositoryNotFoundError:
            raise ConfigError(
                f"model {model!r} not found on the Hub, even with the token"
            ) from None
        return True
    return bool(info.private) or bool(info.gated)
