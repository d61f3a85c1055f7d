"""``tuneship models``: list and show registered models."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from tuneship.errors import RegistryError
from tuneship.registry import ModelDetails, ModelEntry, Registry, default_registry_url
from tuneship.tables import format_table

models_app = typer.Typer(
    help="List and inspect registered models.", no_args_is_help=True, add_completion=False
)

RegistryOption = Annotated[
    str | None,
    typer.Option(
        "--registry",
        help="Registry SQLAlchemy URL (default: the configured registry, "
        "$TUNESHIP_HOME/registry.db).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _open(url: str | None) -> Registry:
    try:
        return Registry(url or default_registry_url())
    except RegistryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _loss(metrics: dict[str, float], key: str) -> str:
    value = metrics.get(key)
    return f"{value:.4f}" if value is not None else "-"


def _when(entry: ModelEntry) -> str:
    return entry.created_at.strftime("%Y-%m-%d %H:%M") if entry.created_at else "-"


@models_app.command("list")
def list_command(json_output: JsonOption = False, registry: RegistryOption = None) -> None:
    """List every registered model version."""
    reg = _open(registry)
    try:
        models = reg.list_models()
    except RegistryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        reg.close()
    if json_output:
        typer.echo(json.dumps([m.model_dump(mode="json") for m in models], indent=2))
        return
    if not models:
        typer.echo(f"No models registered in {reg.masked_url}.")
        return
    rows = [
        [
            m.name,
            m.version,
            m.base_model or "-",
            f"{m.method or '-'}/{m.adapter or '-'}",
            _loss(m.metrics, "base_eval_loss"),
            _loss(m.metrics, "eval_loss"),
            m.artifact_target or "-",
            (m.artifact_revision or "-")[:12],
            _when(m),
        ]
        for m in models
    ]
    headers = ["NAME", "VERSION", "BASE", "METHOD", "BASE LOSS", "EVAL LOSS", "TARGET"]
    typer.echo("\n".join(format_table([*headers, "REVISION", "CREATED"], rows)))


def _show_text(details: ModelDetails) -> str:
    fields: list[tuple[str, Any]] = [
        ("Name", details.name),
        ("Version", details.version),
        ("Base model", details.base_model),
        ("Method", details.method),
        ("Adapter", details.adapter),
        ("Dataset fingerprint", details.dataset_fingerprint),
        ("Artifact", f"{details.artifact_target or '-'}: {details.artifact_location or '-'}"),
        ("Revision", details.artifact_revision),
        ("Flow run", details.flow_run_id),
        ("Created", details.created_at.isoformat() if details.created_at else None),
        ("Updated", details.updated_at.isoformat() if details.updated_at else None),
    ]
    width = max(len(k) for k, _ in fields) + 1
    lines = [f"{(k + ':').ljust(width)} {v if v not in (None, '') else '-'}" for k, v in fields]
    lines.append("Metrics:")
    if details.metrics:
        lines += [f"  {k}: {v:.4f}" for k, v in sorted(details.metrics.items())]
    else:
        lines.append("  (none)")
    lines.append("Deployments:")
    if details.deployments:
        rows = [
            [d.name, d.target, d.status, d.served_model_name or "-", d.url or "-"]
            for d in details.deployments
        ]
        table = "\n".join(format_table(["NAME", "TARGET", "STATUS", "SERVED AS", "URL"], rows))
        lines += [f"  {line}" for line in table.splitlines()]
    else:
        lines.append("  (none)")
    return "\n".join(lines)


@models_app.command("show")
def show_command(
    name: Annotated[str, typer.Argument(help="Model name, e.g. acme/my-model.")],
    version: Annotated[
        str | None, typer.Option("--version", help="Version to show (default: the latest).")
    ] = None,
    json_output: JsonOption = False,
    registry: RegistryOption = None,
) -> None:
    """Show one model version (the latest by default) and its deployments."""
    reg = _open(registry)
    try:
        details = reg.describe_model(name, version)
        known = sorted({m.name for m in reg.list_models()}) if details is None else []
    except RegistryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        reg.close()
    if details is None:
        what = f"model {name!r}" + (f" version {version!r}" if version else "")
        hint = f"registered models: {', '.join(known)}" if known else "no models are registered"
        typer.echo(f"error: {what} not found in {reg.masked_url} ({hint})", err=True)
        raise typer.Exit(1)
    if json_output:
        typer.echo(details.model_dump_json(indent=2))
    else:
        typer.echo(_show_text(details))
