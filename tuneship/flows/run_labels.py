"""What makes a flow run findable in the Prefect UI: its name and its tags."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from tuneship.config import PipelineConfig


def build_run_tags(config: PipelineConfig) -> list[str]:
    """Tags to filter runs by: method, adapter, base model, publish and serve target.

    Args:
        config: The run's configuration.

    Returns:
        Tags like ``method:sft``, ``adapter:lora``, ``base:Qwen/Qwen2.5-0.5B``.
    """
    return [
        "tuneship",
        f"method:{config.training.method}",
        f"adapter:{config.training.adapter}",
        f"base:{config.model.base}",
        f"publish:{config.publish.target}",
        f"serve:{config.serve.target}",
    ]


def format_run_name(config_name: str, when: datetime | None = None) -> str:
    """``<config name>-<UTC date-time>``, e.g. ``tuneship-demo-20261203-151502``."""
    moment = (when or datetime.now(UTC)).astimezone(UTC)
    return f"{config_name}-{moment:%Y%m%d-%H%M%S}"


def name_flow_run() -> str:
    """Prefect ``flow_run_name`` callable: the run's config name and the UTC time.

    Reads the flow run's parameters; a config that cannot be read yet (the flow itself
    reports why) falls back to the default config's name.
    """
    from prefect.runtime import flow_run

    from tuneship.errors import TuneshipError
    from tuneship.flows.finetune import resolve_flow_config

    params: dict[str, Any] = dict(flow_run.parameters or {})
    try:
        config = resolve_flow_config(
            params.get("config"), params.get("config_file"), params.get("overrides")
        )
        name = config.name
    except (TuneshipError, ValueError, OSError):
        name = PipelineConfig().name
    return format_run_name(name)


def tag_current_flow_run(tags: list[str]) -> None:
    """Add ``tags`` to the running flow run (tags are set at creation; this adds later ones).

    Outside a flow run, or when the API cannot be reached, nothing happens: tags help
    filtering and are never worth failing a run for.
    """
    from prefect import get_client
    from prefect.runtime import flow_run

    from tuneship.tasks._common import get_logger

    run_id = flow_run.get_id()
    if not run_id:
        return
    try:
        with get_client(sync_client=True) as client:
            current = client.read_flow_run(UUID(str(run_id))).tags or []
            client.update_flow_run(UUID(str(run_id)), tags=sorted(set(current) | set(tags)))
    except Exception:  # the API being busy must not fail a training run over its tags
        get_logger().warning("could not tag the flow run", exc_info=True)
