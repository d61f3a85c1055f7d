"""``tuneship blocks``: register tuneship's Prefect block types and create credential blocks.

Secrets are read from an environment variable or a hidden prompt, never from a command-line
argument (which would land in shell history and process lists), and are never echoed.
"""

from __future__ import annotations

import os
import secrets
from enum import StrEnum
from typing import Annotated, Any

import typer

blocks_app = typer.Typer(
    help="Register and create credential blocks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


class BlockKind(StrEnum):
    """Which credentials block to create."""

    huggingface = "huggingface"
    runpod = "runpod"
    serve_key = "serve-key"


_DEFAULT_ENV = {
    BlockKind.huggingface: "HF_TOKEN",
    BlockKind.runpod: "RUNPOD_API_KEY",
    BlockKind.serve_key: "TUNESHIP_SERVE_API_KEY",
}


def _block_classes() -> list[Any]:
    from tuneship.blocks import HuggingFaceCredentials, RunPodCredentials

    return [HuggingFaceCredentials, RunPodCredentials]


def _fail(message: str) -> typer.Exit:
    from tuneship.secrets import mask_secrets

    typer.secho(f"error: {mask_secrets(message)}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=1)


@blocks_app.command("register")
def register_blocks() -> None:
    """Register the Hugging Face and RunPod credentials block types with the Prefect API."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    for cls in _block_classes():
        try:
            cls.register_type_and_schema()
        except Exception as exc:  # any API failure is reported the same way
            raise _fail(f"could not register {cls.get_block_type_slug()}: {exc}") from None
        typer.echo(f"registered block type {cls.get_block_type_slug()}")


@blocks_app.command("create")
def create_block(
    kind: Annotated[
        BlockKind,
        typer.Argument(
            help="Block to create: huggingface, runpod, or serve-key (a Secret block with the "
            "API key of served endpoints, for serve.api_key_block)."
        ),
    ],
    name: Annotated[str, typer.Argument(help="Block name, e.g. hf-prod.")],
    from_env: Annotated[
        str | None,
        typer.Option(
            "--from-env",
            help="Environment variable holding the secret (default HF_TOKEN / RUNPOD_API_KEY "
            "/ TUNESHIP_SERVE_API_KEY).",
        ),
    ] = None,
    generate: Annotated[
        bool,
        typer.Option(help="serve-key: generate a random key instead of reading one."),
    ] = False,
    prompt: Annotated[
        bool,
        typer.Option(help="Ask for the secret (hidden input) when the variable is unset."),
    ] = True,
    endpoint: Annotated[
        str | None, typer.Option(help="huggingface: Hub endpoint URL (default huggingface.co).")
    ] = None,
    namespace: Annotated[
        str | None, typer.Option(help="huggingface: default user or organisation.")
    ] = None,
    api_base_url: Annotated[
        str | None, typer.Option(help="runpod: management API base URL.")
    ] = None,
    endpoint_base_url: Annotated[
        str | None, typer.Option(help="runpod: serverless endpoint API base URL.")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing block.")] = False,
) -> None:
    """Save a credentials block; the secret comes from an environment variable or a prompt."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from pydantic import SecretStr

    from tuneship.blocks import HuggingFaceCredentials, RunPodCredentials
    from tuneship.secrets import register_secret

    env_var = from_env or _DEFAULT_ENV[kind]
    if generate and kind is not BlockKind.serve_key:
        raise _fail("--generate only makes serve-key blocks; tokens come from their service")
    value = secrets.token_urlsafe(32) if generate else os.environ.get(env_var, "").strip()
    if not value:
        if not prompt:
            raise _fail(f"{env_var} is not set; export it or drop --no-prompt")
        value = typer.prompt(f"{kind.value} secret", hide_input=True).strip()
    if not value:
        raise _fail("the secret is empty")
    register_secret(value)
    if kind is BlockKind.serve_key:
        from tuneship.blocks.serve_key import save_serve_api_key

        try:
            save_serve_api_key(name, value, overwrite=overwrite)
        except ValueError as exc:
            raise _fail(f"{exc}".rstrip(".") + " (use --overwrite to replace it)") from None
        typer.echo(
            f"saved secret/{name} (key stored, not shown); use it with serve.api_key_block: {name}"
        )
        return
    block: Any
    if kind is BlockKind.huggingface:
        block = HuggingFaceCredentials(
            token=SecretStr(value), endpoint=endpoint, namespace=namespace
        )
    else:
        block = RunPodCredentials(
            api_key=SecretStr(value),
            api_base_url=api_base_url,
            endpoint_base_url=endpoint_base_url,
        )
    try:
        block.save(name, overwrite=overwrite)
    except ValueError as exc:
        raise _fail(f"{exc}".rstrip(".") + " (use --overwrite to replace it)") from None
    typer.echo(f"saved {type(block).get_block_type_slug()}/{name} (secret stored, not shown)")
