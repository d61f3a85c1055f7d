"""RunPod errors, each a :mod:`tuneship.errors` class so the retry rule and CLI apply."""

from __future__ import annotations

from typing import Any

from tuneship.errors import ComputeError, ConfigError, ServingError, TransientError


class RunPodAuthError(ConfigError):
    """RunPod rejected the API key (HTTP 401/403 or "Unauthorized")."""


class RunPodCapacityError(ComputeError):
    """RunPod has no GPU of the requested kind right now."""


class RunPodApiError(ServingError):
    """RunPod refused a request for another reason; the message quotes RunPod."""


class RunPodTransientError(TransientError):
    """Rate limit (429), server error (5xx) or network failure, still failing after retries."""


class RunPodBudgetError(ConfigError):
    """The plan's price is above the configured budget; nothing was created."""


class QueueStuckError(ServingError):
    """A job waited in an endpoint's queue past the timeout; ``health`` is the endpoint's."""

    def __init__(self, message: str, health: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.health = health or {}
