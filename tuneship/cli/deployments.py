"""``tuneship deployments``: list the recorded deployments (with cost), export them, stop one."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from tuneship.errors import TuneshipError
from tuneship.registry.endpoints import LIVE_STATUSES, ExportFormat, KeySource
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
    from tuneship.registry.endpoints import process_alive

    if details.get("container_id"):
        from tuneship.serving.docker import container_alive

        return container_alive(details)
    return process_alive(details)


def _since(when: datetime | None) -> str:
    """``2026-12-03 14:05 UTC (2h 10m ago)``."""
    if when is None:
        return "-"
    minutes = int(max((datetime.now(UTC) - when).total_seconds(), 0) // 60)
    ago = f"{minutes // 60}h {minutes % 60}m" if minutes >= 60 else f"{minutes}m"
    return f"{when.astimezone(UTC):%Y-%m-%d %H:%M} UTC ({ago} ago)"


def _training_pods(credentials_block: str | None) -> list[Any]:
    """Live RunPod training pods, when a RunPod key is set (else none, silently)."""
    import os

    if not credentials_block and not os.environ.get("RUNPOD_API_KEY"):
        return []
    from tuneship.runpod.training_pods import list_training_pods
    from tuneship.tasks.credentials import load_runpod_client

    try:
        return list_training_pods(load_runpod_client(credentials_block))
    except TuneshipError as exc:
        typer.secho(f"warning: cannot list RunPod training pods: {exc}", err=True)
        return []


def _echo_training_pods(pods: list[Any]) -> None:
    cells = [
        [
            p.name,
            "training",
            p.status.lower(),
            p.gpu,
            f"${p.usd_per_hour:.2f}/h" if p.usd_per_hour else "-",
            _since(datetime.fromtimestamp(p.since, UTC) if p.since else None),
            f"${p.usd_so_far:.4f}" if p.usd_so_far is not None else "-",
        ]
        for p in pods
    ]
    typer.echo("RunPod training pods (billing until the run ends; `tuneship runpod janitor`):")
    for line in format_table(["NAME", "KIND", "STATUS", "GPU", "PRICE", "SINCE", "SO FAR"], cells):
        typer.echo(line)


@deployments_app.command("list")
def list_deployments(
    model: Annotated[str | None, typer.Option(help="Only this model's deployments.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    registry: RegistryOption = None,
    runpod_credentials_block: Annotated[
        str | None,
        typer.Option(
            help="RunPodCredentials block for listing live training pods (default: the "
            "RUNPOD_API_KEY variable; without either, training pods are not listed)."
        ),
    ] = None,
) -> None:
    """List deployments with their status, URL and served model name, and the RunPod
    training pods running now (kind training, price per hour, since when)."""
    from tuneship.registry import Registry

    try:
        with Registry(registry) as reg:
            entries = reg.list_deployments(model_name=model)
    except TuneshipError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=1) from None
    training = _training_pods(runpod_credentials_block)
    from tuneship.registry.endpoints import deployment_cost, format_hourly, format_usd

    rows = []
    for entry in entries:
        row = entry.model_dump(mode="json")
        row["alive"] = _is_alive(entry.details)
        cost = deployment_cost(entry)
        row["cost"] = cost.model_dump(mode="json")
        if cost.until is None:
            row["cost_text"] = f"{format_hourly(entry, cost)} since {_since(cost.since)}" + (
                f", {format_usd(cost.usd_so_far)} so far" if cost.usd_so_far else ""
            )
        else:
            row["cost_text"] = (
                f"{format_hourly(entry, cost)} for {cost.hours or 0:.2f} h, stopped "
                f"{_since(cost.until)}"
                + (f", {format_usd(cost.usd_so_far)} in all" if cost.usd_so_far else "")
            )
        rows.append(row)
    if as_json:
        for row in rows:
            del row["cost_text"]
        typer.echo(json.dumps(rows + [p.as_json() for p in training], indent=2))
        return
    if training:
        _echo_training_pods(training)
    if not rows:
        typer.echo("no deployments")
        return
    cells = []
    for row in rows:
        status = row["status"]
        details = row["details"]
        if status in LIVE_STATUSES and row["alive"] is False:
            gone = "container" if details.get("container_id") else "process"
            status = f"{status} ({gone} gone)"
        elif status not in LIVE_STATUSES and row["alive"] is True:
            # A server whose stop failed (or was cut short) must not hide behind its status.
            what = "container" if details.get("container_id") else "process"
            status = f"{status} ({what} still running)"
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
        if row["status"] in LIVE_STATUSES or row["target"].startswith("runpod"):
            typer.echo(f"    cost {row['cost_text']}")
        if details.get("pgid") is not None:
            typer.echo(
                f"    pgid={details.get('pgid')} gpus={details.get('gpu_indices') or 'cpu'} "
                f"tp={details.get('tensor_parallel_size')} "
                f"max_model_len={details.get('max_model_len')} log={details.get('log_path')}"
            )
        if details.get("container_id") is not None:
            typer.echo(
                f"    container={details.get('container_name')} image={details.get('image')} "
                f"gpus={details.get('gpu_indices') or 'cpu'} log={details.get('log_path')}"
            )


@deployments_app.command("stop")
def stop(
    name: Annotated[str, typer.Argument(help="Deployment name.")],
    registry: RegistryOption = None,
    timeout: Annotated[float, typer.Option(help="Seconds before SIGKILL.")] = 30.0,
) -> None:
    """Stop a deployment and mark it stopped.

    A local server's whole process group is stopped; a RunPod endpoint is scaled to zero
    and deleted with its template, a RunPod pod is terminated, a container is stopped and
    removed (its log saved).
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


@deployments_app.command("export")
def export(
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="openai-env (shell exports for the openai client) or litellm (a LiteLLM "
            "proxy config.yaml).",
        ),
    ] = "openai-env",
    include_keys: Annotated[
        bool,
        typer.Option(
            "--include-keys",
            help="Print the API keys themselves (default: say where each key is).",
        ),
    ] = False,
    model: Annotated[str | None, typer.Option(help="Only this model's deployments.")] = None,
    registry: RegistryOption = None,
) -> None:
    """Print what a client needs to call every live endpoint: URL, model name, key.

    Pipe it into a file for a LiteLLM proxy (``--format litellm``) or ``source`` it
    (``--format openai-env``). Keys are only printed with ``--include-keys``.
    """
    from typing import cast, get_args

    from tuneship.registry import Registry
    from tuneship.registry.endpoints import (
        export_rows,
        is_live,
        key_source,
        render_export,
    )

    if fmt not in get_args(ExportFormat):
        typer.secho(
            f"error: --format {fmt!r}: choose one of {', '.join(get_args(ExportFormat))}",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(code=2)
    try:
        with Registry(registry) as reg:
            live = [e for e in reg.list_deployments(model_name=model) if is_live(e)]
        keys: dict[str, str] = {}
        if include_keys:
            for entry in live:
                key = _read_key(key_source(entry))
                if key is None:
                    raise TuneshipError(
                        f"deployment {entry.name}: cannot read its key "
                        f"({key_source(entry).describe()})"
                    )
                keys[entry.name] = key
    except TuneshipError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=1) from None
    if not live:
        typer.echo("no live deployments", err=True)
    typer.echo(render_export(export_rows(live, keys), cast(ExportFormat, fmt)), nl=False)


def _read_key(source: KeySource) -> str | None:
    """The key itself: read from its file or variable, or from the RunPod credentials block."""
    from tuneship.registry.endpoints import read_key

    if source.kind == "runpod-block":
        from tuneship.blocks.credentials import resolve_runpod_api_key

        secret = resolve_runpod_api_key(source.location, field="credentials_block")
        return secret.get_secret_value() if secret is not None else None
    return read_key(source)
