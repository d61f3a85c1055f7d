"""``tuneship runpod``: account-wide RunPod housekeeping (the janitor)."""

from __future__ import annotations

from typing import Annotated

import typer

from tuneship.errors import TuneshipError

runpod_app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)


@runpod_app.command("janitor")
def janitor(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Remove resources older than this: 90m, 2h, 1d.")
    ] = "2h",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only list what would be removed.")
    ] = False,
    credentials_block: Annotated[
        str | None,
        typer.Option(help="RunPodCredentials block (default: the RUNPOD_API_KEY variable)."),
    ] = None,
) -> None:
    """List and remove every tuneship- pod, endpoint and template older than an age.

    Use --dry-run first: it shows what would go. Resources without tuneship's creation
    stamp (made by an older version) are listed with "age unknown" and kept.
    """
    from tuneship.runpod.janitor import (
        list_leftovers,
        parse_age,
        remove_leftovers,
        select_older,
    )
    from tuneship.tasks.credentials import load_runpod_client

    try:
        age_s = parse_age(older_than)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--older-than") from None
    try:
        client = load_runpod_client(credentials_block)
        found = list_leftovers(client)
        old = select_older(found, age_s)
        kept = [r for r in found if r not in old]
        for item in kept:
            typer.echo(f"keep    {item.describe()}")
        if dry_run:
            for item in old:
                typer.echo(f"would remove {item.describe()}")
            typer.echo(f"{len(old)} to remove (dry run: nothing removed)")
            return
        removed, failed = remove_leftovers(client, old)
    except TuneshipError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=1) from None
    for line in removed:
        typer.echo(f"removed {line}")
    for line in failed:
        typer.secho(f"failed  {line}", fg=typer.colors.RED, err=True)
    typer.echo(f"{len(removed)} removed, {len(failed)} failed")
    if failed:
        raise typer.Exit(code=1)
