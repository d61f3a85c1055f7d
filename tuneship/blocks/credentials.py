"""Prefect credentials blocks for the Hugging Face Hub and RunPod, plus token resolution.

The blocks follow the PrefectHQ integration style (``prefect_aws/credentials.py``): a
``CredentialsBlock`` subclass with ``SecretStr`` secrets, a ``get_client()`` method, field
descriptions, and a docstring example. They are registered with Prefect through the
``prefect.collections`` entry point (``tuneship = "tuneship.blocks"``), so
``Block.load("huggingface-credentials/NAME")`` works in any process once tuneship is
installed.

The pipeline config names a block (``publish.hf_credentials_block``); for local use an
environment variable (``HF_TOKEN``, ``RUNPOD_API_KEY``) is the fallback.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prefect.blocks.abstract import CredentialsBlock
from pydantic import Field, SecretStr

from tuneship.errors import ConfigError
from tuneship.secrets import register_secret

if TYPE_CHECKING:
    from huggingface_hub import HfApi

    from tuneship.runpod.client import RunPodClient

HF_TOKEN_ENV = "HF_TOKEN"
RUNPOD_API_KEY_ENV = "RUNPOD_API_KEY"
RUNPOD_API_BASE_URL = "https://api.runpod.io"
RUNPOD_ENDPOINT_BASE_URL = "https://api.runpod.ai/v2"


class HuggingFaceCredentials(CredentialsBlock):
    """Credentials for the Hugging Face Hub: an access token and optional endpoint.

    Use a token with the ``write`` role to publish; a ``read`` token is enough to download
    gated base models whose licence the account accepted.

    Attributes:
        token: The user access token (``hf_...``).
        endpoint: Hub endpoint, for a private Hub or a mirror.
        namespace: Default user or organisation to publish under.

    Example:
        Load stored Hugging Face credentials and list a repo's files:
        ```python
        from tuneship.blocks import HuggingFaceCredentials

        hf_credentials_block = HuggingFaceCredentials.load("BLOCK_NAME")
        api = hf_credentials_block.get_client()
        print(api.list_repo_files("openai-community/gpt2"))
        ```
    """

    _block_type_name = "Hugging Face Credentials"
    _block_type_slug = "huggingface-credentials"
    _logo_url = "https://huggingface.co/front/assets/huggingface_logo-noborder.svg"  # type: ignore[assignment]
    _documentation_url = "https://huggingface.co/docs/hub/security-tokens"  # type: ignore[assignment]

    token: SecretStr = Field(
        default=...,
        title="Access Token",
        description=(
            "Hugging Face user access token (hf_...); needs the write role to publish models."
        ),
    )
    endpoint: str | None = Field(
        default=None,
        title="Hub Endpoint",
        description="Hub endpoint URL; leave empty for https://huggingface.co.",
    )
    namespace: str | None = Field(
        default=None,
        description="Default user or organisation to publish models under.",
    )

    def get_client(self) -> HfApi:
        """Return an ``HfApi`` authenticated with this block's token.

        Returns:
            A ``huggingface_hub.HfApi`` for the block's endpoint.
        """
        from tuneship.hub.client import make_api

        return make_api(self.token, self.endpoint)


@dataclass(frozen=True)
class RunPodClientConfig:
    """Everything a RunPod client needs; the key stays a ``SecretStr``.

    ``RunPodCredentials.get_client_config()`` returns it; ``get_client()`` returns a
    :class:`tuneship.runpod.RunPodClient`.

    Attributes:
        api_key: The RunPod API key.
        api_base_url: Base of the management API (GraphQL at ``<base>/graphql``).
        endpoint_base_url: Base of the serverless endpoint API (``<base>/<endpoint_id>/...``).
    """

    api_key: SecretStr
    api_base_url: str = RUNPOD_API_BASE_URL
    endpoint_base_url: str = RUNPOD_ENDPOINT_BASE_URL

    @property
    def graphql_url(self) -> str:
        """URL of the GraphQL management API."""
        return f"{self.api_base_url.rstrip('/')}/graphql"

    def auth_headers(self) -> dict[str, str]:
        """HTTP headers that authenticate a request (``Authorization: Bearer <key>``)."""
        return {"Authorization": f"Bearer {self.api_key.get_secret_value()}"}

    def endpoint_url(self, endpoint_id: str) -> str:
        """Base URL of one serverless endpoint."""
        return f"{self.endpoint_base_url.rstrip('/')}/{endpoint_id}"


class RunPodCredentials(CredentialsBlock):
    """Credentials for RunPod: an API key and optional API base URLs.

    Attributes:
        api_key: The RunPod API key (``rpa_...``).
        api_base_url: Management API base URL.
        endpoint_base_url: Serverless endpoint API base URL.

    Example:
        Load stored RunPod credentials:
        ```python
        from tuneship.blocks import RunPodCredentials

        runpod_credentials_block = RunPodCredentials.load("BLOCK_NAME")
        client = runpod_credentials_block.get_client()
        print([e["name"] for e in client.list_endpoints()])
        ```
    """

    _block_type_name = "RunPod Credentials"
    _block_type_slug = "runpod-credentials"
    _logo_url = "https://avatars.githubusercontent.com/u/75180829?s=200&v=4"  # type: ignore[assignment]
    _documentation_url = "https://docs.runpod.io/get-started/api-keys"  # type: ignore[assignment]

    api_key: SecretStr = Field(
        default=...,
        title="API Key",
        description="RunPod API key (rpa_...) with access to pods and serverless endpoints.",
    )
    api_base_url: str | None = Field(
        default=None,
        title="API Base URL",
        description="Management API base URL; leave empty for https://api.runpod.io.",
    )
    endpoint_base_url: str | None = Field(
        default=None,
        title="Endpoint Base URL",
        description="Serverless endpoint API base URL; leave empty for https://api.runpod.ai/v2.",
    )
    pod_proxy_url: str | None = Field(
        default=None,
        title="Pod Proxy URL",
        description=(
            "Template of a pod port's proxy URL with {pod_id} and {port}; leave empty for "
            "https://{pod_id}-{port}.proxy.runpod.net."
        ),
    )

    def get_client(self) -> RunPodClient:
        """Return a RunPod client (over the official ``runpod`` SDK) for this block.

        Returns:
            A :class:`tuneship.runpod.RunPodClient` with this block's key and URLs.
        """
        from tuneship.runpod.client import RunPodClient

        register_secret(self.api_key)
        return RunPodClient(
            self.api_key,
            api_base_url=self.api_base_url or RUNPOD_API_BASE_URL,
            endpoint_base_url=self.endpoint_base_url or RUNPOD_ENDPOINT_BASE_URL,
            pod_proxy_url=self.pod_proxy_url or None,
        )

    def get_client_config(self) -> RunPodClientConfig:
        """Return the plain client configuration (key and URLs) for this block."""
        register_secret(self.api_key)
        return RunPodClientConfig(
            api_key=self.api_key,
            api_base_url=self.api_base_url or RUNPOD_API_BASE_URL,
            endpoint_base_url=self.endpoint_base_url or RUNPOD_ENDPOINT_BASE_URL,
        )


def _secret_from_env(env_var: str) -> SecretStr | None:
    value = os.environ.get(env_var, "").strip()
    if not value:
        return None
    register_secret(value)
    return SecretStr(value)


def load_block(cls: type[CredentialsBlock], name: str, field: str) -> CredentialsBlock:
    """Load the saved block ``name`` of type ``cls``; ``field`` names the config setting.

    Raises:
        ConfigError: No such block (the message says how to create one).
    """
    slug = cls.get_block_type_slug()
    block_name = name.split("/", 1)[1] if name.startswith(f"{slug}/") else name
    try:
        block = cls.load(block_name)
    except ValueError as exc:
        raise ConfigError(
            f"{field}={name!r}: no {cls.get_block_type_name()} block named {block_name!r} "
            f"({exc}). Create it with `tuneship blocks create` or in the Prefect UI "
            "(Blocks > Add > " + cls.get_block_type_name() + ")"
        ) from None
    if not isinstance(block, cls):  # load() returns a coroutine only in async contexts
        raise ConfigError(f"{field}={name!r}: could not load the block synchronously")
    return block


def load_hf_credentials(
    block_name: str | None,
    env_var: str = HF_TOKEN_ENV,
    *,
    field: str = "publish.hf_credentials_block",
) -> HuggingFaceCredentials | None:
    """Load the named Hugging Face block, or build one from ``env_var``.

    Args:
        block_name: Name of a saved ``HuggingFaceCredentials`` block (with or without the
            ``huggingface-credentials/`` prefix), or None to use the environment.
        env_var: Environment variable holding a token, used when no block is named.
        field: Config field that named the block, for error messages.

    Returns:
        The credentials, or None when no block is named and ``env_var`` is unset.

    Raises:
        ConfigError: The named block does not exist.
    """
    if block_name:
        block = load_block(HuggingFaceCredentials, block_name, field)
        assert isinstance(block, HuggingFaceCredentials)
        register_secret(block.token)
        return block
    token = _secret_from_env(env_var)
    if token is None:
        return None
    return HuggingFaceCredentials(token=token, endpoint=os.environ.get("HF_ENDPOINT") or None)


def resolve_hf_token(
    block_name: str | None,
    env_var: str = HF_TOKEN_ENV,
    *,
    field: str = "publish.hf_credentials_block",
) -> SecretStr | None:
    """Return the Hugging Face token from the named block, else from ``env_var``.

    The token is registered with the log masker.

    Args:
        block_name: Name of a saved ``HuggingFaceCredentials`` block, or None.
        env_var: Fallback environment variable.
        field: Config field that named the block, for error messages.

    Returns:
        The token, or None when neither is set.

    Raises:
        ConfigError: The named block does not exist.
    """
    creds = load_hf_credentials(block_name, env_var, field=field)
    return creds.token if creds is not None else None


def resolve_runpod_api_key(
    block_name: str | None,
    env_var: str = RUNPOD_API_KEY_ENV,
    *,
    field: str = "compute.runpod_credentials_block",
) -> SecretStr | None:
    """Return the RunPod API key from the named block, else from ``env_var``.

    Args:
        block_name: Name of a saved ``RunPodCredentials`` block, or None.
        env_var: Fallback environment variable.
        field: Config field that named the block, for error messages.

    Returns:
        The key, or None when neither is set.

    Raises:
        ConfigError: The named block does not exist.
    """
    if block_name:
        block = load_block(RunPodCredentials, block_name, field)
        assert isinstance(block, RunPodCredentials)
        register_secret(block.api_key)
        return block.api_key
    return _secret_from_env(env_var)
