"""Registry entries as pydantic models: what callers pass in and get back (JSON-safe)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ModelEntry(BaseModel):
    """One version of a registered model and where its artifact lives."""

    model_config = ConfigDict(protected_namespaces=())

    name: str = Field(description="Model name, e.g. the published repo id.")
    version: str = Field(description="Version label; (name, version) is unique.")
    base_model: str | None = None
    method: str | None = Field(default=None, description="sft, dpo or orpo.")
    adapter: str | None = Field(default=None, description="lora, qlora or full.")
    dataset_path: str | None = Field(
        default=None, description="The training data: a file, folder or Hub dataset id."
    )
    dataset_fingerprint: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    artifact_target: str | None = Field(
        default=None, description="Publisher kind: 'local' or 'hub'."
    )
    artifact_location: str | None = Field(
        default=None, description="Folder or URL of the artifact."
    )
    artifact_revision: str | None = Field(
        default=None, description="Revision (commit) of the artifact."
    )
    flow_run_id: str | None = Field(default=None, description="Prefect flow run that produced it.")
    id: int | None = Field(default=None, description="Row id (set by the registry).")
    created_at: datetime | None = Field(default=None, description="First registration (UTC).")
    updated_at: datetime | None = Field(default=None, description="Last change (UTC).")


class DeploymentEntry(BaseModel):
    """A running (or stopped) serving endpoint of a model version."""

    model_config = ConfigDict(protected_namespaces=())

    name: str = Field(description="Unique deployment name.")
    model_name: str
    model_version: str
    target: str = Field(description="Where it runs, e.g. 'local-vllm' or 'runpod-serverless'.")
    url: str | None = Field(default=None, description="OpenAI-compatible base URL.")
    served_model_name: str | None = Field(
        default=None, description="The 'model' field clients send."
    )
    status: str = Field(default="unknown", description="e.g. starting, ready, stopped, failed.")
    details: dict[str, Any] = Field(default_factory=dict)
    id: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class ModelDetails(ModelEntry):
    """A model version together with its deployments (what ``tuneship models show`` prints)."""

    deployments: list[DeploymentEntry] = Field(default_factory=list)
