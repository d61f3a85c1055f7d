"""Hugging Face Hub helpers: client set-up, pre-flight access checks, checkpoint sync.

Submodules: :mod:`tuneship.hub.client` (``make_api``, retries, token-free errors),
:mod:`tuneship.hub.preflight` (``check_hub_access``) and :mod:`tuneship.hub.checkpoints`
(``PushCheckpointsCallback``, ``download_latest_checkpoint``; imports transformers).
"""

from tuneship.hub.client import call_with_retries, make_api, resolve_endpoint
from tuneship.hub.ids import is_hub_id
from tuneship.hub.preflight import HubAccess, check_hub_access

__all__ = [
    "HubAccess",
    "call_with_retries",
    "check_hub_access",
    "is_hub_id",
    "make_api",
    "resolve_endpoint",
]
