"""The API key a deployment's clients send: where it comes from and the file it is kept in.

Order: a key set from code (:meth:`ServeConfig.with_api_key`), the Prefect Secret block
named by ``serve.api_key_block``, ``$TUNESHIP_SERVE_API_KEY``, else a new random key for
this deployment. Whatever the source, the key is written to a 0600 file that the smoke test,
``tuneship deployments export --include-keys`` and the user read; it is never a flow
parameter, a log line or a registry value.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from tuneship.config import ServeConfig
from tuneship.errors import ServingError
from tuneship.secrets import register_secret

API_KEY_ENV = "TUNESHIP_SERVE_API_KEY"
KEY_FILE_NAME = "api-key"


def choose_api_key(options: ServeConfig) -> str:
    """Return the key this deployment serves with (see the module docstring for the order).

    Args:
        options: The ``serve`` section.

    Returns:
        The key (registered with the log masker).

    Raises:
        ServingError: ``serve.api_key_block`` is set but the caller did not resolve it.
    """
    if options.api_key is not None:
        key = options.api_key.get_secret_value()
    elif options.api_key_block:
        # Blocks are loaded only in the Prefect layer, which hands the key down.
        raise ServingError(
            f"serve.api_key_block={options.api_key_block!r} is not resolved: load it with "
            "tuneship.tasks.credentials.resolve_serve_api_key(serve) before deploying"
        )
    else:
        key = os.environ.get(API_KEY_ENV, "").strip() or secrets.token_urlsafe(32)
    register_secret(key)
    return key


def write_api_key_file(folder: Path, key: str) -> Path:
    """Write ``key`` to ``folder/api-key`` readable by the owner only (0600).

    Args:
        folder: The deployment's folder (created if missing).
        key: The API key.

    Returns:
        The file's path.
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / KEY_FILE_NAME
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(key + "\n")
    os.chmod(path, 0o600)  # an existing file keeps its old mode through O_CREAT
    return path
