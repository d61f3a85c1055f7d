"""The one place credentials are loaded: Prefect blocks (or the environment), once, here.

Domain code never loads a block: flows, tasks, hooks and the CLI call these loaders and
pass a client or a ``SecretStr`` down (see docs/architecture.md).
"""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from tuneship.config import PipelineConfig, ServeConfig
from tuneship.runpod.client import RunPodClient
from tuneship.serving.base import ServingTarget
from tuneship.serving.targets import get_target
from tuneship.validation import RunSecrets

RUNPOD_TARGETS = ("runpod-serverless", "runpod-pod")
DOCKER_TARGET = "docker"


def load_runpod_client(credentials_block: str | None) -> RunPodClient:
    """A client from the named ``RunPodCredentials`` block, else from ``RUNPOD_API_KEY``.

    Raises:
        ConfigError: The block does not exist.
        RunPodAuthError: No key is set.
    """
    if credentials_block:
        from tuneship.blocks.credentials import RunPodCredentials, load_block

        block = load_block(RunPodCredentials, credentials_block, "serve.runpod.credentials_block")
        assert isinstance(block, RunPodCredentials)
        return block.get_client()
    return RunPodClient.from_environment()


def load_hf_token(
    credentials_block: str | None, field: str = "publish.hf_credentials_block"
) -> SecretStr | None:
    """The Hugging Face token from the named block, else ``HF_TOKEN``; None when unset."""
    from tuneship.blocks.credentials import resolve_hf_token

    return resolve_hf_token(credentials_block, field=field)


def load_runpod_api_key(credentials_block: str | None) -> SecretStr | None:
    """The RunPod API key from the named block, else ``RUNPOD_API_KEY``; None when unset."""
    from tuneship.blocks.credentials import resolve_runpod_api_key

    return resolve_runpod_api_key(credentials_block, field="serve.runpod.credentials_block")


def load_run_secrets(config: PipelineConfig) -> RunSecrets:
    """The run's Hub token and (for RunPod compute or serving) RunPod key, from blocks or env."""
    runpod_key = None
    if config.compute.provider == "runpod":
        runpod_key = load_runpod_api_key(
            config.compute.runpod.credentials_block or config.serve.runpod.credentials_block
        )
    elif config.serve.target in RUNPOD_TARGETS:
        runpod_key = load_runpod_api_key(config.serve.runpod.credentials_block)
    # A missing serve.api_key_block fails here, in the checks before training.
    serve_key = resolve_serve_api_key(config.serve).api_key
    return RunSecrets(
        hf_token=load_hf_token(config.publish.hf_credentials_block),
        runpod_api_key=runpod_key,
        serve_api_key=serve_key,
    )


def resolve_serve_api_key(serve: ServeConfig) -> ServeConfig:
    """Return ``serve`` carrying the key of its ``api_key_block`` (unchanged without one).

    Raises:
        ConfigError: The Secret block does not exist or holds no key.
    """
    if not serve.api_key_block or serve.api_key is not None:
        return serve
    from tuneship.blocks.serve_key import load_serve_api_key

    return serve.with_api_key(load_serve_api_key(serve.api_key_block))


def load_target(
    name: str,
    credentials_block: str | None = None,
    hf_credentials_block: str | None = None,
    **kwargs: Any,
) -> ServingTarget:
    """The serving target called ``name``, with its credentials loaded here.

    Args:
        name: A target name (``serve.target``, or the name a deployment is recorded under).
        credentials_block: ``serve.runpod.credentials_block`` for the RunPod targets.
        hf_credentials_block: The block whose Hub token reads a private model
            (``serve.runpod.hf_credentials_block`` on RunPod; the pipeline passes
            ``publish.hf_credentials_block`` to the ``docker`` target); else ``HF_TOKEN``.
        **kwargs: More arguments for the target (``plan=``, ``revision=``...).
    """
    if name in RUNPOD_TARGETS:
        kwargs.setdefault("client", load_runpod_client(credentials_block))
        if "hf_token" not in kwargs:
            kwargs.setdefault(
                "hub_token",
                load_hf_token(hf_credentials_block, "serve.runpod.hf_credentials_block"),
            )
    elif name == DOCKER_TARGET:
        # The container pulls a Hub repo itself; the token reaches only its environment.
        kwargs.setdefault("hub_token", load_hf_token(hf_credentials_block))
    return get_target(name, **kwargs)
