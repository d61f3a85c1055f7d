"""The model registry: which model versions exist, where their artifacts are, where they run.

Backed by any SQLAlchemy database (a SQLite file by default, PostgreSQL for teams).
Writes are upserts keyed by natural keys, so a retried flow run updates its row instead
of adding a duplicate.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from tuneship.errors import RegistryError
from tuneship.registry.models import DeploymentEntry, ModelDetails, ModelEntry
from tuneship.registry.tables import Base, DeploymentRow, ModelRow

_MODEL_FIELDS = (
    "base_model",
    "method",
    "adapter",
    "dataset_fingerprint",
    "metrics",
    "artifact_target",
    "artifact_location",
    "artifact_revision",
    "flow_run_id",
)
_DEPLOYMENT_FIELDS = (
    "model_name",
    "model_version",
    "target",
    "url",
    "served_model_name",
    "status",
    "details",
)


def mask_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***`` (safe for messages and logs)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def default_registry_url() -> str:
    """Return the configured default registry URL (``$TUNESHIP_HOME/registry.db``)."""
    from tuneship.config import PipelineConfig

    return PipelineConfig.model_validate({}).registry_url()


def _utc(value: datetime) -> datetime:
    """SQLite drops time zones; every stored time is UTC, so put it back."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _now_after(previous: datetime | None) -> datetime:
    """Now, but strictly later than ``previous`` so updated_at always moves forward."""
    now = datetime.now(UTC)
    if previous is not None and now <= _utc(previous):
        return _utc(previous) + timedelta(microseconds=1)
    return now


def _model_entry(row: ModelRow) -> ModelEntry:
    return ModelEntry(
        id=row.id,
        name=row.name,
        version=row.version,
        **{f: getattr(row, f) for f in _MODEL_FIELDS if f != "metrics"},
        metrics=dict(row.metrics or {}),
        created_at=_utc(row.created_at),
        updated_at=_utc(row.updated_at),
    )


def _deployment_entry(row: DeploymentRow) -> DeploymentEntry:
    return DeploymentEntry(
        id=row.id,
        name=row.name,
        **{f: getattr(row, f) for f in _DEPLOYMENT_FIELDS if f != "details"},
        details=dict(row.details or {}),
        created_at=_utc(row.created_at),
        updated_at=_utc(row.updated_at),
    )


class Registry:
    """Read and write the model registry at a SQLAlchemy URL.

    Tables are created on first use, and a SQLite file's folder is created too.

    Args:
        url: SQLAlchemy URL, e.g. ``sqlite:///path/registry.db`` or
            ``postgresql+psycopg://user:pw@host/db``; None uses the configured default.

    Raises:
        RegistryError: The URL is invalid or its database driver is not installed; the
            message names the URL with any password masked.
    """

    def __init__(self, url: str | None = None) -> None:
        self.url = url or default_registry_url()
        self.masked_url = mask_url(self.url)
        self._ready = False
        try:
            parsed = make_url(self.url)
            if parsed.get_backend_name() == "sqlite":
                database = parsed.database or ""
                if database and database != ":memory:" and not database.startswith("file:"):
                    Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            self._engine: Engine = create_engine(parsed)
        except (ArgumentError, ValueError) as exc:
            raise RegistryError(f"invalid registry URL {self.masked_url}: {exc}") from None
        except ImportError as exc:
            raise RegistryError(
                f"registry {self.masked_url}: database driver not installed ({exc}); "
                "install it (e.g. pip install psycopg[binary]) or use a sqlite:/// URL"
            ) from None
        except (SQLAlchemyError, OSError) as exc:
            raise RegistryError(f"registry {self.masked_url}: {exc}") from None
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)

    def close(self) -> None:
        """Release the database connections."""
        self._engine.dispose()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def _session(self) -> Iterator[Session]:
        """A session whose database errors become RegistryError naming the (masked) URL."""
        try:
            if not self._ready:
                Base.metadata.create_all(self._engine)
                self._ready = True
            with self._sessions() as session:
                yield session
        except SQLAlchemyError as exc:
            cause = getattr(exc, "orig", None) or exc
            first_line = str(cause).strip().splitlines()[0] if str(cause).strip() else repr(cause)
            raise RegistryError(
                f"registry {self.masked_url} could not be read or written: {first_line}"
            ) from None

    def _upsert(
        self,
        table: type[ModelRow] | type[DeploymentRow],
        key: dict[str, str],
        new_row: dict[str, Any],
        changes: dict[str, Any],
    ) -> Any:
        """Insert ``key + new_row``, or update ``changes`` on the row ``key`` names, atomically.

        One ``INSERT ... ON CONFLICT DO UPDATE`` (SQLite and PostgreSQL both have it), so
        two runs writing the same key at once both succeed and neither adds a duplicate.
        Returns the stored row.
        """
        dialect = self._engine.dialect.name
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        elif dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert  # type: ignore[assignment]
        else:
            raise RegistryError(
                f"registry {self.masked_url}: {dialect} is not supported; use a sqlite:/// "
                "or postgresql+psycopg:// URL"
            )
        where = [getattr(table, column) == value for column, value in key.items()]
        with self._session() as session:
            # Read the old stamp in the same transaction, so updated_at always moves forward.
            stamp = _now_after(session.scalar(select(table.updated_at).where(*where)))
            statement = insert(table).values(
                {**new_row, **changes, **key, "created_at": stamp, "updated_at": stamp}
            )
            statement = statement.on_conflict_do_update(
                index_elements=list(key), set_={**changes, "updated_at": stamp}
            )
            session.execute(statement)
            session.commit()
            return session.scalar(select(table).where(*where))

    # Models

    def upsert_model(self, entry: ModelEntry) -> ModelEntry:
        """Insert or update the model version ``(entry.name, entry.version)``.

        Fields set on ``entry`` replace the stored ones; fields left unset keep their
        stored values. ``created_at`` is kept; ``updated_at`` moves forward.

        Args:
            entry: The model version (``id`` and times are ignored).

        Returns:
            The stored entry.
        """
        values = entry.model_dump(include=set(_MODEL_FIELDS), exclude_unset=True)
        key = {"name": entry.name, "version": entry.version}
        row = self._upsert(ModelRow, key, {"metrics": {}}, values)
        return _model_entry(row)

    def get_model(self, name: str, version: str | None = None) -> ModelEntry | None:
        """Return a model version, or its latest version when ``version`` is None.

        Returns:
            The entry, or None when there is no such model or version.
        """
        with self._session() as session:
            query = select(ModelRow).where(ModelRow.name == name)
            if version is not None:
                query = query.where(ModelRow.version == version)
            row = session.scalar(query.order_by(ModelRow.created_at.desc(), ModelRow.id.desc()))
            return _model_entry(row) if row is not None else None

    def list_models(self, name: str | None = None) -> list[ModelEntry]:
        """Return every model version (or those of ``name``), by name then creation time."""
        with self._session() as session:
            query = select(ModelRow)
            if name is not None:
                query = query.where(ModelRow.name == name)
            rows = session.scalars(query.order_by(ModelRow.name, ModelRow.created_at, ModelRow.id))
            return [_model_entry(r) for r in rows]

    def describe_model(self, name: str, version: str | None = None) -> ModelDetails | None:
        """Return a model version (latest when ``version`` is None) with its deployments."""
        model = self.get_model(name, version)
        if model is None:
            return None
        deployments = [
            d for d in self.list_deployments(model_name=name) if d.model_version == model.version
        ]
        return ModelDetails(**model.model_dump(), deployments=deployments)

    def next_version(self, name: str) -> str:
        """Return ``str(n + 1)`` where n is the highest numeric version of ``name`` (0 if none)."""
        numbers = [int(m.version) for m in self.list_models(name) if m.version.isdigit()]
        return str(max(numbers, default=0) + 1)

    # Deployments

    def upsert_deployment(self, entry: DeploymentEntry) -> DeploymentEntry:
        """Insert or update the deployment named ``entry.name`` (set fields replace stored ones).

        Returns:
            The stored entry.
        """
        values = entry.model_dump(include=set(_DEPLOYMENT_FIELDS), exclude_unset=True)
        # Required fields are always "set"; a new row also needs the defaults.
        defaults = entry.model_dump(include=set(_DEPLOYMENT_FIELDS))

        row = self._upsert(DeploymentRow, {"name": entry.name}, defaults, values)
        return _deployment_entry(row)

    def get_deployment(self, name: str) -> DeploymentEntry | None:
        """Return the deployment called ``name``, or None."""
        with self._session() as session:
            row = session.scalar(select(DeploymentRow).where(DeploymentRow.name == name))
            return _deployment_entry(row) if row is not None else None

    def list_deployments(self, model_name: str | None = None) -> list[DeploymentEntry]:
        """Return all deployments, or those of ``model_name``, oldest first."""
        with self._session() as session:
            query = select(DeploymentRow)
            if model_name is not None:
                query = query.where(DeploymentRow.model_name == model_name)
            rows = session.scalars(query.order_by(DeploymentRow.created_at, DeploymentRow.id))
            return [_deployment_entry(r) for r in rows]

    def set_deployment_status(self, name: str, status: str) -> DeploymentEntry:
        """Set the status of deployment ``name``.

        Raises:
            RegistryError: There is no deployment called ``name``.
        """
        with self._session() as session:
            row = session.scalar(select(DeploymentRow).where(DeploymentRow.name == name))
            if row is None:
                known = session.scalars(select(DeploymentRow.name).order_by(DeploymentRow.name))
                raise RegistryError(
                    f"no deployment named {name!r} in registry {self.masked_url} "
                    f"(known: {', '.join(known) or 'none'})"
                )
            row.status = status
            row.updated_at = _now_after(row.updated_at)
            session.commit()
            return _deployment_entry(row)
