"""``tuneship deployments``: list the recorded deployments and stop one."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from tuneship.errors import TuneshipError
from tuneship.tables import format_table

deployments_app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)

RegistryOption = Annotated[
    str | None,
    typer.Option(
        "--registry",
        envvar="TUNESHIP_REGISTRY_URL",
        help="Registry URL (default: sqlite file $TUNESHIP_HOME/registry.db).",
    ),
]


def _is_alive(details: dict[str, Any]) -> bool | None:
    """Whether the recorded server still runs (None when it had no local process)."""
    from tuneship.serving.process import group_alive, process_start_time

    pgid, pid = details.get("pgid"), details.get("pid")
    if not isinstance(pgid, int):
        return None
    if isinstance(pid, int):
        started = process_start_time(pid)
        if started is not None and started != details.get("pid_start_time"):
            return False
    return group_alive(pgid)


@deployments_app.command("list")
def list_deployments(
    model: Annotated[str | None, typer.Option(help="Only this model's deployments.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    registry: RegistryOption = None,
) -> None:
    """List deployments with their status, URL and served model name."""
    from tuneship.registry import Registry

    try:
        with Registry(registry) as reg:
            entries = reg.list_deployments(model_name=model)
    except TuneshipError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=1) from None
    rows = []
    for entry in entries:
        row = entry.model_dump(mode="json")
        row["alive"] = _is_alive(entry.details)
        rows.append(row)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("no deployments")
        return
    cells = []
    for row in rows:
        status = row["status"]
        if status == "running" and row["alive"] is False:
            status = "running (process gone)"
        cells.append(
            [
                row["name"],
                status,
                row["target"],
                row["url"] or "-",
                row["served_model_name"] or "-",
                f"{row['model_name']}:{row['model_version']}",
            ]
        )
    table = format_table(["NAME", "STATUS", "TARGET", "URL", "SERVED AS", "MODEL"], cells)
    typer.echo(table[0])
    for row, line in zip(rows, table[1:], strict=True):
        typer.echo(line)
        details = row["details"]
        if details.get("pgid") is not None:
            typer.echo(
                f"    pgid={details.get('pgid')} gpus={details.get('gpu_indices') or 'cpu'} "
                f"tp={details.get('tensor_parallel_size')} "
                f"max_model_len={details.get('max_model_len')} log={details.get('log_path')}"
            )


@deployments_app.command("stop")
def stop(
    name: Annotated[str, typer.Argument(help="Deployment name.")],
    registry: RegistryOption = None,
    timeout: Annotated[float, typer.Option(help="Seconds before SIGKILL.")] = 30.0,
) -> None:
    """Stop a deployment and mark it stopped.

    A local server's whole process group is stopped; a RunPod endpoint is scaled to zero
    and deleted with its template, a RunPod pod is terminated.
    """
    from tuneship.registry import Registry
    from tuneship.serving.lifecycle import stop_deployment
    from tuneship.tasks.credentials import load_target

    try:
        with Registry(registry) as reg:
            recorded = reg.get_deployment(name)
        target = None
        if recorded is not None:
            # The target named in the record, with the credentials it was started with.
            block = (recorded.details or {}).get("credentials_block")
            target = load_target(recorded.target, credentials_block=block)
        entry = stop_deployment(name, registry_url=registry, timeout_s=timeout, target=target)
    except TuneshipError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=1) from None
    typer.echo(f"stopped {entry.name} ({entry.url or 'no url'})")
