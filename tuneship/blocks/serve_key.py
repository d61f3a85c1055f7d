"""The serving API key as a Prefect ``Secret`` block (``serve.api_key_block``).

The key that clients of a deployed endpoint send is a secret, so the config only names the
block that holds it; the key is read here, at deploy time, and never becomes a flow
parameter.
"""

from __future__ import annotations

from pydantic import SecretStr

from tuneship.errors import ConfigError
from tuneship.secrets import register_secret

SECRET_BLOCK_SLUG = "secret"


def load_serve_api_key(block_name: str, *, field: str = "serve.api_key_block") -> SecretStr:
    """Return the API key stored in the Prefect Secret block ``block_name``.

    The key is registered with the log masker.

    Args:
        block_name: Name of a saved ``Secret`` block (with or without the ``secret/`` prefix).
        field: Config field that named the block, for error messages.

    Returns:
        The key.

    Raises:
        ConfigError: There is no such block, or it holds an empty or non-string value.
    """
    from prefect.blocks.system import Secret

    name = block_name.removeprefix(f"{SECRET_BLOCK_SLUG}/")
    try:
        block = Secret.load(name)
    except ValueError as exc:
        raise ConfigError(
            f"{field}={block_name!r}: no Secret block named {name!r} ({exc}). Create it with "
            f"`TUNESHIP_SERVE_API_KEY=... tuneship blocks create serve-key {name}` (or "
            "`--generate`), or in the Prefect UI (Blocks > Add > Secret)"
        ) from None
    if not isinstance(block, Secret):  # load() returns a coroutine only in async contexts
        raise ConfigError(f"{field}={block_name!r}: could not load the block synchronously")
    value = block.get()
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(
            f"{field}={block_name!r}: the Secret block must hold a non-empty string (the key)"
        )
    key = SecretStr(value.strip())
    register_secret(key)
    return key


def save_serve_api_key(block_name: str, key: str, *, overwrite: bool = False) -> None:
    """Save ``key`` as the Prefect Secret block ``block_name``.

    Args:
        block_name: The block's name (what ``serve.api_key_block`` names).
        key: The API key.
        overwrite: Replace an existing block of that name.

    Raises:
        ValueError: The block exists and ``overwrite`` is False (Prefect's message).
    """
    from prefect.blocks.system import Secret

    register_secret(key)
    Secret(value=SecretStr(key)).save(block_name, overwrite=overwrite)
