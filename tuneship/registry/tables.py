"""SQLAlchemy tables of the registry: ``models`` and ``deployments``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Declarative base of the registry's tables."""


class ModelRow(Base):
    """One version of a model; (name, version) is unique."""

    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_models_name_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), index=True)
    version: Mapped[str] = mapped_column(String(255))
    base_model: Mapped[str | None] = mapped_column(String(512))
    method: Mapped[str | None] = mapped_column(String(32))
    adapter: Mapped[str | None] = mapped_column(String(32))
    dataset_path: Mapped[str | None] = mapped_column(Text)
    dataset_fingerprint: Mapped[str | None] = mapped_column(String(128))
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    artifact_target: Mapped[str | None] = mapped_column(String(32))
    artifact_location: Mapped[str | None] = mapped_column(Text)
    artifact_revision: Mapped[str | None] = mapped_column(String(128))
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DeploymentRow(Base):
    """A serving endpoint of a model version; the name is unique."""

    __tablename__ = "deployments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    model_name: Mapped[str] = mapped_column(String(255), index=True)
    model_version: Mapped[str] = mapped_column(String(255))
    target: Mapped[str] = mapped_column(String(64))
    url: Mapped[str | None] = mapped_column(Text)
    served_model_name: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(32))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
