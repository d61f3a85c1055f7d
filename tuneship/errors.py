"""Exceptions that tuneship raises, each with a message a user can act on.

Every error a user can fix derives from :class:`TuneshipError`. Errors that are worth
retrying (a flaky network, a rate limit) derive from :class:`TransientError`; the Prefect
tasks retry those and nothing else.
"""

from __future__ import annotations

from tuneship.secrets import mask_secrets


class TuneshipError(Exception):
    """Base class for errors a user can act on.

    String arguments are masked on the way in (:func:`tuneship.secrets.mask_secrets`), so a
    token pasted into the wrong field never reaches a message, a log or the Prefect UI.
    """

    def __init__(self, *args: object) -> None:
        super().__init__(*(mask_secrets(a) if isinstance(a, str) else a for a in args))


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
