"""Day-2 views of recorded deployments: which are live, what they cost, how to call them.

Everything here reads the registry's deployment rows (and, for local servers, ``/proc``);
nothing calls RunPod. Prices are the ones the planner chose at deploy time and the
deployment recorded (``details.usd_per_hour``: all GPUs of one pod or one serverless worker).
"""

from __future__ import annotations

import re
import shlex
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field

from tuneship.registry.models import DeploymentEntry

LIVE_STATUSES = ("running", "starting", "ready")
SERVERLESS_TARGET = "runpod-serverless"
POD_TARGET = "runpod-pod"
RUNPOD_KEY_ENV = "RUNPOD_API_KEY"
ExportFormat = Literal["openai-env", "litellm"]


def process_alive(details: dict[str, Any]) -> bool | None:
    """Whether a recorded local server still runs (None when it had no local process).

    A recorded pid whose kernel start time changed belongs to another process now.
    """
    from tuneship.serving.process import group_alive, process_start_time

    pgid, pid = details.get("pgid"), details.get("pid")
    if not isinstance(pgid, int):
        return None
    if isinstance(pid, int):
        started = process_start_time(pid)
        if started is not None and started != details.get("pid_start_time"):
            return False
    return group_alive(pgid)


def is_live(entry: DeploymentEntry) -> bool:
    """Whether the deployment is recorded as serving and (for a local server) still runs."""
    return entry.status in LIVE_STATUSES and process_alive(entry.details) is not False


def started_at(entry: DeploymentEntry) -> datetime | None:
    """When the deployment started (its recorded start, else when it was first recorded)."""
    raw = entry.details.get("started_at")
    if isinstance(raw, str):
        try:
            parsed = datetime.fromisoformat(raw)
        except ValueError:
            parsed = None
        if parsed is not None:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return entry.created_at


class DeploymentCost(BaseModel):
    """What a deployment costs, from the price recorded at deploy time."""

    usd_per_hour: float | None = Field(
        None,
        description=(
            "What it costs per hour now: a pod's price, a serverless endpoint's warm "
            "(workers_min) workers; 0 for a local server; None when unpriced."
        ),
    )
    usd_per_active_worker_hour: float | None = Field(
        None, description="Serverless: price of one worker while it runs (billed per second)."
    )
    usd_per_hour_max: float | None = Field(
        None, description="Serverless: the hourly cost with workers_max workers busy."
    )
    since: datetime | None = Field(None, description="When it started.")
    until: datetime | None = Field(None, description="When it stopped (None while live).")
    hours: float | None = Field(None, description="Hours from since to until (or now).")
    usd_so_far: float | None = Field(
        None,
        description=(
            "Cost at usd_per_hour over those hours: exact for pods, the warm-worker floor "
            "for serverless (busy workers add to it)."
        ),
    )
    note: str = ""


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def deployment_cost(entry: DeploymentEntry, now: datetime | None = None) -> DeploymentCost:
    """Return the hourly cost and the cost so far of a recorded deployment.

    Args:
        entry: The deployment row.
        now: The time to count to for a live deployment (default: now).

    Returns:
        The cost; ``usd_so_far`` is None when the deployment has no price.
    """
    now = now or datetime.now(UTC)
    since = started_at(entry)
    live = entry.status in LIVE_STATUSES
    until = None if live else entry.updated_at
    hours = None
    if since is not None:
        hours = max(((until or now) - since).total_seconds(), 0.0) / 3600
    details = entry.details
    price = _float(details.get("usd_per_hour"))
    if entry.target == POD_TARGET:
        rate, note = price, "pod: billed per second while it exists"
        extra: dict[str, float | None] = {}
    elif entry.target == SERVERLESS_TARGET:
        warm = int(details.get("workers_min") or 0)
        busy = int(details.get("workers_max") or 1)
        rate = price * warm if price is not None else None
        extra = {
            "usd_per_active_worker_hour": price,
            "usd_per_hour_max": price * busy if price is not None else None,
        }
        note = f"serverless: {warm} warm worker(s) billed always, up to {busy} while busy"
    elif entry.target.startswith("runpod"):
        rate, note, extra = price, "", {}
    else:
        rate, note, extra = 0.0, "runs on this machine", {}
    so_far = round(rate * hours, 4) if rate is not None and hours is not None else None
    return DeploymentCost(
        usd_per_hour=rate,
        since=since,
        until=until,
        hours=round(hours, 4) if hours is not None else None,
        usd_so_far=so_far,
        note=note,
        **extra,
    )


def format_usd(value: float | None) -> str:
    """``$1.23`` (or ``-`` when unknown)."""
    return "-" if value is None else f"${value:,.2f}"


def format_hourly(entry: DeploymentEntry, cost: DeploymentCost) -> str:
    """The hourly cost as a reader wants it, e.g. ``$0.00/h (+$1.19/h per busy worker)``."""
    if cost.usd_per_hour is None and cost.usd_per_active_worker_hour is None:
        return "unpriced" if entry.target.startswith("runpod") else "-"
    text = f"{format_usd(cost.usd_per_hour)}/h"
    if cost.usd_per_active_worker_hour is not None:
        text += f" (+{format_usd(cost.usd_per_active_worker_hour)}/h per busy worker)"
    return text


# Where a client finds its key


class KeySource(BaseModel):
    """Where the key for an endpoint lives (never the key itself)."""

    kind: Literal["file", "runpod-block", "env", "none"]
    location: str = Field(description="A file path, a block name or a variable name.")

    def describe(self) -> str:
        """A human description, e.g. ``file /home/u/.tuneship/deployments/x/api-key``."""
        if self.kind == "runpod-block":
            return f"the RunPod API key in block runpod-credentials/{self.location}"
        if self.kind == "env":
            return f"${self.location}"
        if self.kind == "file":
            return f"file {self.location}"
        return "no key recorded"


def key_source(entry: DeploymentEntry) -> KeySource:
    """Where the endpoint's key lives: its 0600 file, or the RunPod key for serverless."""
    details = entry.details
    if entry.target == SERVERLESS_TARGET:
        # Serverless endpoints authenticate with the account's RunPod API key.
        block = details.get("credentials_block")
        if isinstance(block, str) and block:
            return KeySource(kind="runpod-block", location=block)
        return KeySource(kind="env", location=RUNPOD_KEY_ENV)
    key_file = details.get("api_key_file")
    if isinstance(key_file, str) and key_file:
        return KeySource(kind="file", location=key_file)
    return KeySource(kind="none", location="")


def read_key(source: KeySource) -> str | None:
    """Read the key from a file or the environment (blocks are read by the caller).

    Returns:
        The key, or None when it cannot be read here.
    """
    import os

    if source.kind == "file":
        try:
            return Path(source.location).read_text(encoding="utf-8").strip() or None
        except OSError:
            return None
    if source.kind == "env":
        return os.environ.get(source.location, "").strip() or None
    return None


def env_prefix(name: str) -> str:
    """An environment-variable prefix from a deployment name (``my-run`` -> ``MY_RUN``)."""
    prefix = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").upper()
    return prefix if prefix and not prefix[0].isdigit() else f"D_{prefix}"


class ExportedEndpoint(BaseModel):
    """What a client needs to call one endpoint."""

    name: str
    base_url: str
    served_model_name: str
    key_source: KeySource
    key: str | None = Field(None, repr=False, description="Only with include_keys.")
    model: str = Field(description="Registered model name:version.")
    target: str


def export_rows(
    entries: list[DeploymentEntry], keys: dict[str, str] | None = None
) -> list[ExportedEndpoint]:
    """The exportable view of live deployments (entries without a URL are left out).

    Args:
        entries: Deployment rows (callers pass the live ones).
        keys: Keys by deployment name, when the caller chose to include them.

    Returns:
        One row per endpoint, in the order given.
    """
    rows = []
    for entry in entries:
        if not entry.url:
            continue
        rows.append(
            ExportedEndpoint(
                name=entry.name,
                base_url=entry.url,
                served_model_name=entry.served_model_name or entry.name,
                key_source=key_source(entry),
                key=(keys or {}).get(entry.name),
                model=f"{entry.model_name}:{entry.model_version}",
                target=entry.target,
            )
        )
    return rows


def render_openai_env(rows: list[ExportedEndpoint]) -> str:
    """Shell ``export`` lines (quoted for ``source``/``eval``) per endpoint.

    Each endpoint gets ``<NAME>_OPENAI_BASE_URL``, ``<NAME>_MODEL`` and either
    ``<NAME>_OPENAI_API_KEY`` (keys included) or ``<NAME>_OPENAI_API_KEY_FILE`` / a comment
    saying where the key is. With exactly one endpoint the standard ``OPENAI_BASE_URL``,
    ``OPENAI_MODEL`` (and ``OPENAI_API_KEY``) are set too, so the openai client picks them up.
    """
    lines: list[str] = []
    for row in rows:
        prefix = env_prefix(row.name)
        lines.append(f"# {row.name}: {row.model} on {row.target}; key: {row.key_source.describe()}")
        values = {
            f"{prefix}_OPENAI_BASE_URL": row.base_url,
            f"{prefix}_MODEL": row.served_model_name,
        }
        if row.key is not None:
            values[f"{prefix}_OPENAI_API_KEY"] = row.key
        elif row.key_source.kind == "file":
            values[f"{prefix}_OPENAI_API_KEY_FILE"] = row.key_source.location
        if len(rows) == 1:
            values["OPENAI_BASE_URL"] = row.base_url
            values["OPENAI_MODEL"] = row.served_model_name
            if row.key is not None:
                values["OPENAI_API_KEY"] = row.key
        lines += [f"export {k}={shlex.quote(v)}" for k, v in values.items()]
    return "\n".join(lines) + ("\n" if lines else "")


def render_litellm(rows: list[ExportedEndpoint]) -> str:
    """A LiteLLM proxy ``config.yaml`` with one ``model_list`` entry per endpoint.

    Each entry uses LiteLLM's OpenAI-compatible provider (``openai/<served name>`` with
    ``api_base``). Without keys, ``api_key`` is ``os.environ/<NAME>_OPENAI_API_KEY`` (LiteLLM
    reads it from the proxy's environment) and a comment says where the key is.
    """
    entries: list[dict[str, Any]] = []
    notes: list[str] = []
    for row in rows:
        env_var = f"{env_prefix(row.name)}_OPENAI_API_KEY"
        params: dict[str, Any] = {
            "model": f"openai/{row.served_model_name}",
            "api_base": row.base_url,
            "api_key": row.key if row.key is not None else f"os.environ/{env_var}",
        }
        entries.append(
            {
                "model_name": row.served_model_name,
                "litellm_params": params,
                "model_info": {"id": row.name, "description": f"{row.model} on {row.target}"},
            }
        )
        if row.key is None:
            notes.append(f"# {env_var}: {row.key_source.describe()}")
    header = "# LiteLLM proxy config from tuneship (litellm --config FILE)\n"
    if notes:
        header += "# Set these in the proxy's environment:\n" + "\n".join(notes) + "\n"
    body = yaml.safe_dump({"model_list": entries}, sort_keys=False, default_flow_style=False)
    return header + body


def render_export(rows: list[ExportedEndpoint], fmt: ExportFormat) -> str:
    """Render ``rows`` as ``openai-env`` or ``litellm``."""
    return render_openai_env(rows) if fmt == "openai-env" else render_litellm(rows)
