"""The model registry: model versions, their artifacts and deployments (SQLAlchemy)."""

from tuneship.registry.models import DeploymentEntry, ModelDetails, ModelEntry
from tuneship.registry.registry import Registry, default_registry_url, mask_url

__all__ = [
    "DeploymentEntry",
    "ModelDetails",
    "ModelEntry",
    "Registry",
    "default_registry_url",
    "mask_url",
]
