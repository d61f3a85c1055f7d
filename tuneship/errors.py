"""Exceptions that tuneship raises, each with a message a user can act on.

Every error a user can fix derives from :class:`TuneshipError`. Errors that are worth
retrying (a flaky network, a rate limit) derive from :class:`TransientError`; the Prefect
tasks retry those and nothing else.
"""

from __future__ import annotations


class TuneshipError(Exception):
    """Base class for errors a user can act on."""


class ConfigError(TuneshipError):
    """The pipeline configuration is invalid; the message names the field."""


class DataError(TuneshipError):
    """The dataset cannot be used; the message names the file, line or row."""


class TrainingError(TuneshipError):
    """Training cannot start or failed in a way the user must fix."""


class MergeError(TuneshipError):
    """Merging the adapter failed or produced a model that differs from base+adapter."""


class PackagingError(TuneshipError):
    """The packaged model folder is incomplete or does not load."""


class PublishError(TuneshipError):
    """Publishing the packaged model failed."""


class RegistryError(TuneshipError):
    """The model registry could not be read or written."""


class EvalGateError(TuneshipError):
    """The fine-tuned model is not better than the base and improvement was required."""


class PlanningError(TuneshipError):
    """A model's facts cannot be read, or no GPU plan fits; the message says what would."""


class ComputeError(TuneshipError):
    """No suitable compute could be provisioned."""


class ServingError(TuneshipError):
    """The model could not be served; the message quotes the engine's own error."""


class TransientError(TuneshipError):
    """A failure that may succeed when retried (network, rate limit, busy resource)."""


RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
"""HTTP statuses worth retrying (huggingface_hub's own backoff uses the same set)."""


def http_status(exc: BaseException) -> int | None:
    """HTTP status carried by an error's ``response``, or None when it has none."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def _is_transport_error(exc: BaseException) -> bool:
    # huggingface_hub 1.x uses httpx, 2.x its httpx2 fork; either may be missing.
    for module in ("httpx", "httpx2"):
        try:
            transport = __import__(module).TransportError
        except (ImportError, AttributeError):
            continue
        if isinstance(exc, transport):
            return True
    return False


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is worth retrying: a network failure, a rate limit or a 5xx.

    The one rule every retry in tuneship follows (Prefect task retries and the Hub
    helpers alike). A bad config, missing repo or forbidden token fails the same way every
    time, so retrying it would only waste time (and, on rented GPUs, money).

    Args:
        exc: Any exception.

    Returns:
        True for :class:`TransientError`, connection and timeout errors, HTTP transport
        errors, and HTTP errors with status 408, 429 or 5xx.
    """
    if isinstance(exc, TransientError | ConnectionError | TimeoutError):
        return True
    status = http_status(exc)
    if status is not None:
        return status in RETRY_STATUSES
    return _is_transport_error(exc)
