"""A model version's lineage from the registry: data -> run -> training -> artifact -> endpoints.

``tuneship models show NAME --lineage`` prints it: the dataset (path and fingerprint), the
Prefect flow run that trained it, the method and metrics, the published revision, every
deployment of that version with its status and URL, and what those deployments cost.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from pydantic import BaseModel, Field

from tuneship.registry.endpoints import DeploymentCost, deployment_cost, format_hourly, format_usd
from tuneship.registry.models import DeploymentEntry, ModelEntry
from tuneship.registry.registry import Registry


class DeploymentLineage(BaseModel):
    """One deployment of the model version and its cost."""

    deployment: DeploymentEntry
    cost: DeploymentCost


class Lineage(BaseModel):
    """Everything the registry knows about where a model version came from and went."""

    model: ModelEntry
    flow_run_url: str | None = Field(
        None, description="The flow run in the Prefect UI (when PREFECT_UI_URL is set)."
    )
    deployments: list[DeploymentLineage] = Field(default_factory=list)
    usd_so_far: float | None = Field(
        None, description="Sum of the priced deployments' cost so far (None when none priced)."
    )


def flow_run_url(flow_run_id: str | None) -> str | None:
    """The flow run's page in the Prefect UI, from ``$PREFECT_UI_URL`` (None when unset)."""
    ui = os.environ.get("PREFECT_UI_URL", "").rstrip("/")
    return f"{ui}/runs/flow-run/{flow_run_id}" if ui and flow_run_id else None


def build_lineage(
    registry: Registry, name: str, version: str | None = None, now: datetime | None = None
) -> Lineage | None:
    """Collect the lineage of ``name`` at ``version`` (the latest when None).

    Args:
        registry: The registry to read.
        name: Model name.
        version: Model version; None for the latest.
        now: The time live deployments' cost is counted to (default: now).

    Returns:
        The lineage, or None when there is no such model version.
    """
    details = registry.describe_model(name, version)
    if details is None:
        return None
    now = now or datetime.now(UTC)
    deployments = [
        DeploymentLineage(deployment=d, cost=deployment_cost(d, now)) for d in details.deployments
    ]
    priced = [d.cost.usd_so_far for d in deployments if d.cost.usd_so_far is not None]
    return Lineage(
        model=ModelEntry(**details.model_dump(exclude={"deployments"})),
        flow_run_url=flow_run_url(details.flow_run_id),
        deployments=deployments,
        usd_so_far=round(sum(priced), 4) if priced else None,
    )


def _metric(value: float) -> str:
    return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.0f}"


def render_lineage(lineage: Lineage) -> str:
    """The lineage as an indented chain of steps, one arrow per hop."""
    m = lineage.model
    steps: list[tuple[str, list[str]]] = []
    steps.append(
        (
            "dataset",
            [
                f"path: {m.dataset_path or '- (not recorded)'}",
                f"fingerprint: {m.dataset_fingerprint or '-'}",
            ],
        )
    )
    run = [f"id: {m.flow_run_id or '-'}"]
    if lineage.flow_run_url:
        run.append(f"ui: {lineage.flow_run_url}")
    steps.append(("flow run", run))
    metrics = ", ".join(f"{k} {_metric(v)}" for k, v in sorted(m.metrics.items())) or "-"
    steps.append(
        (
            "training",
            [
                f"base: {m.base_model or '-'}",
                f"method: {m.method or '-'} / {m.adapter or '-'}",
                f"metrics: {metrics}",
            ],
        )
    )
    steps.append(
        (
            "published",
            [
                f"{m.name} version {m.version}",
                f"{m.artifact_target or '-'}: {m.artifact_location or '-'}",
                f"revision: {m.artifact_revision or '-'}",
            ],
        )
    )
    deployed = []
    for item in lineage.deployments:
        d, cost = item.deployment, item.cost
        when = f"since {cost.since:%Y-%m-%d %H:%M} UTC" if cost.since else ""
        if cost.until is not None:
            when = f"{when}, stopped {cost.until:%Y-%m-%d %H:%M} UTC"
        deployed.append(f"{d.name} [{d.status}] {d.target} {d.url or '-'} ({when.strip(', ')})")
        total = "so far" if cost.until is None else "in all"
        spent = f", {format_usd(cost.usd_so_far)} {total}" if cost.usd_so_far is not None else ""
        deployed.append(f"  cost: {format_hourly(d, cost)}{spent}")
    steps.append(("deployments", deployed or ["(none)"]))
    steps.append(
        (
            "cost",
            [
                f"deployments so far: {format_usd(lineage.usd_so_far)}"
                + (" (serverless busy time not included)" if _has_serverless(lineage) else "")
            ],
        )
    )
    lines = [f"Lineage of {m.name} version {m.version}"]
    for index, (title, body) in enumerate(steps):
        lines.append(("  -> " if index else "     ") + title)
        lines += [f"       {line}" for line in body]
    return "\n".join(lines)


def _has_serverless(lineage: Lineage) -> bool:
    return any(d.deployment.target == "runpod-serverless" for d in lineage.deployments)
