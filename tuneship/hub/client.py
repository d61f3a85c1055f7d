"""Hugging Face Hub client helpers: building ``HfApi``, retries, and token-free errors.

Everything here takes the token as a ``SecretStr`` and never formats it into text; error
messages are passed through :func:`tuneship.secrets.mask_secrets` as a second guard.
"""

from __future__ import annotations

import logging
import random
import socket
import time
from collections.abc import Callable
from typing import TypeVar

from huggingface_hub import HfApi, constants
from huggingface_hub.errors import (
    GatedRepoError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from pydantic import SecretStr

from tuneship.errors import (
    PublishError,
    TransientError,
    TuneshipError,
    http_status,
    is_transient,
)
from tuneship.secrets import mask_secrets, register_secret

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_ENDPOINT = "https://huggingface.co"
MAX_RETRY_AFTER_S = 120.0


def resolve_endpoint(endpoint: str | None) -> str:
    """Return the Hub endpoint to use: ``endpoint``, else ``$HF_ENDPOINT``, else huggingface.co.

    Args:
        endpoint: An explicit endpoint, e.g. from the credentials block or the config.

    Returns:
        The endpoint without a trailing slash.
    """
    if endpoint:
        return endpoint.rstrip("/")
    return str(constants.ENDPOINT or DEFAULT_ENDPOINT).rstrip("/")


def make_api(token: SecretStr | None, endpoint: str | None = None) -> HfApi:
    """Build an ``HfApi`` for ``endpoint`` authenticated with ``token``.

    The token is also registered with the log masker.

    Args:
        token: The access token, or None for anonymous access.
        endpoint: Hub endpoint (default: ``$HF_ENDPOINT`` or https://huggingface.co).

    Returns:
        A configured ``huggingface_hub.HfApi``.
    """
    register_secret(token)
    raw = token.get_secret_value() if token is not None else None
    # library_name shows up in the Hub's user agent, as the PrefectHQ integrations do.
    return HfApi(endpoint=resolve_endpoint(endpoint), token=raw, library_name="tuneship")


class HubUnreachableError(TuneshipError):
    """The Hub cannot be contacted at all (offline mode, no network, DNS, refused)."""


def unreachable_hub(exc: BaseException) -> HubUnreachableError | None:
    """Name an error that means the Hub cannot be reached at all, or return None.

    Such an error is not retried: no network fails the same way every time, and retrying
    only delayed the message by minutes. Timeouts and 5xx answers are still retried.
    """
    endpoint = constants.ENDPOINT
    if isinstance(exc, OfflineModeIsEnabled) or (
        isinstance(exc, LocalEntryNotFoundError) and constants.HF_HUB_OFFLINE
    ):
        return HubUnreachableError(
            f"cannot reach the Hub at {endpoint}: HF_HUB_OFFLINE=1 is set, so only files "
            "already in the local cache can be used; unset HF_HUB_OFFLINE, or give local "
            "folders for model.base and data.path"
        )
    connect_errors: tuple[type[BaseException], ...] = (ConnectionRefusedError, socket.gaierror)
    try:
        import httpx

        connect_errors += (httpx.ConnectError, httpx.UnsupportedProtocol)
    except ImportError:  # pragma: no cover
        pass
    chain: BaseException | None = exc
    while chain is not None:
        if isinstance(chain, connect_errors) or (
            isinstance(chain, LocalEntryNotFoundError) and "connection" in str(chain).lower()
        ):
            return HubUnreachableError(
                f"cannot reach the Hub at {endpoint} ({_first_line(chain)}); check the "
                "network or proxy (HF_ENDPOINT), or set HF_HUB_OFFLINE=1 to use "
                "only cached files"
            )
        chain = chain.__cause__ or chain.__context__
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return min(float(value), MAX_RETRY_AFTER_S) if value is not None else None
    except ValueError:
        return None


def call_with_retries(
    func: Callable[[], T],
    *,
    what: str,
    attempts: int = 5,
    base_delay_s: float = 2.0,
    max_delay_s: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
    token: SecretStr | None = None,
) -> T:
    """Call ``func``, retrying with exponential backoff on 429, 5xx and network errors.

    Other errors are raised at once. After the last attempt a :class:`TransientError` is
    raised, so an outer Prefect retry policy can try the whole step again later.

    Args:
        func: The call to make.
        what: What the call does, for messages ("upload to acme/model").
        attempts: Total attempts, at least 1.
        base_delay_s: First delay; each retry doubles it (plus up to 10 % jitter), capped by
            ``max_delay_s``. A ``Retry-After`` header on a 429 wins when it is longer.
        max_delay_s: Longest delay between attempts.
        sleep: Sleep function (tests pass a fake).
        token: The token, masked from messages if it ever appears in one.

    Returns:
        What ``func`` returns.

    Raises:
        TransientError: Still failing with a retryable error after ``attempts`` tries.
    """
    attempts = max(1, attempts)
    for attempt in range(1, attempts + 1):
        try:
            return func()
        except Exception as exc:
            unreachable = unreachable_hub(exc)
            if unreachable is not None:
                raise unreachable from None
            if not is_transient(exc):
                raise
            reason = describe_error(exc, token)
            if attempt == attempts:
                raise TransientError(
                    f"{what} failed after {attempts} attempts: {reason}. The Hub is rate "
                    "limiting or unavailable; retry later (re-running resumes the upload)."
                ) from None
            delay = min(max_delay_s, base_delay_s * 2 ** (attempt - 1))
            delay += random.uniform(0, delay * 0.1)
            delay = max(delay, _retry_after(exc) or 0.0)
            logger.warning(
                "%s: attempt %d/%d failed (%s); retrying in %.1f s",
                what,
                attempt,
                attempts,
                reason,
                delay,
            )
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def describe_error(exc: BaseException, token: SecretStr | None = None) -> str:
    """A short, token-free description of a Hub or network error.

    Args:
        exc: The error.
        token: A token to mask if it appears.

    Returns:
        ``"<status> <first line of the server message>"`` or the exception's first line.
    """
    status = http_status(exc)
    server = getattr(exc, "server_message", None)
    text = str(server).strip() if server else str(exc).strip()
    first = next((line for line in text.splitlines() if line.strip()), type(exc).__name__)
    prefix = f"HTTP {status}: " if status is not None else f"{type(exc).__name__}: "
    return mask_secrets(prefix + first, token)


def translate_error(
    exc: BaseException,
    *,
    what: str,
    token: SecretStr | None = None,
    endpoint: str | None = None,
) -> PublishError:
    """Turn a huggingface_hub error into a :class:`PublishError` a user can act on.

    Args:
        exc: The error raised by huggingface_hub.
        what: What was being done, including the repo id.
        token: The token in use, masked if it appears.
        endpoint: The Hub endpoint, named in hints.

    Returns:
        The error to raise (the caller raises it ``from None`` so the original, which may
        carry request headers, is not chained).
    """
    status = http_status(exc)
    base = resolve_endpoint(endpoint)
    reason = describe_error(exc, token)
    if isinstance(exc, GatedRepoError):
        hint = "the repo is gated: accept its licence on the Hub and use a token that has access"
    elif isinstance(exc, RevisionNotFoundError):
        hint = "the branch, tag or commit does not exist"
    elif isinstance(exc, RepositoryNotFoundError):
        hint = "the repo does not exist, or it is private and this token cannot see it"
    elif status == 401:
        hint = f"the token is invalid or expired; create one at {base}/settings/tokens"
    elif status == 403:
        hint = "the token lacks write access to this namespace (use a write token or an org role)"
    else:
        hint = "see the Hub's message"
    return PublishError(mask_secrets(f"{what}: {hint} ({reason})", token))
