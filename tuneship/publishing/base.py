"""The publisher interface: where a packaged model folder goes (local store, Hub)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, Field


class PublishResult(BaseModel):
    """Where a publish put the model; small enough to be a task result."""

    target: str = Field(description="Publisher kind: 'local' or 'hub'.")
    repo_id: str = Field(description="namespace/name of the model.")
    revision: str = Field(description="Revision (commit sha) that holds this exact content.")
    location: str = Field(description="Local folder or Hub URL of that revision.")
    url: str | None = Field(None, description="Browser URL, when there is one.")
    created_new_revision: bool = Field(
        description="False when the same content was already published (nothing new written)."
    )


class Publisher(Protocol):
    """Something that stores a packaged model folder under a repo id."""

    target: str

    def publish(self, folder: Path, repo_id: str, *, commit_message: str) -> PublishResult:
        """Publish ``folder`` as ``repo_id``; publishing identical content again is a no-op."""
        ...
