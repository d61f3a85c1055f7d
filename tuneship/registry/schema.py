"""In-place upgrades of an existing registry database to the current tables.

Registries are long-lived (a team's PostgreSQL, a user's ``registry.db``), so a column added
to :mod:`tuneship.registry.tables` is added to existing tables with ``ALTER TABLE ... ADD
COLUMN`` instead of asking anyone to recreate their database. Only nullable columns are ever
added this way, so existing rows stay valid.
"""

from __future__ import annotations

import logging

from sqlalchemy import Engine, MetaData, inspect, text

log = logging.getLogger(__name__)


def add_missing_columns(engine: Engine, metadata: MetaData) -> list[str]:
    """Add every nullable column of ``metadata`` that an existing table lacks.

    Args:
        engine: The registry's engine.
        metadata: The current table definitions.

    Returns:
        ``table.column`` for each column added (empty when the schema is current).

    Raises:
        RuntimeError: A missing column is NOT NULL, which cannot be added to a table with
            rows; that needs a hand-written migration.
    """
    # The inspector is made per call: it caches what it read, and tables change here.
    inspector = inspect(engine)
    existing_tables = set(inspector.get_table_names())
    added: list[str] = []
    with engine.begin() as connection:
        for table in metadata.sorted_tables:
            if table.name not in existing_tables:
                continue
            present = {c["name"] for c in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name in present:
                    continue
                if not column.nullable:
                    raise RuntimeError(
                        f"registry table {table.name!r} lacks the NOT NULL column "
                        f"{column.name!r}; it cannot be added in place"
                    )
                quote = engine.dialect.identifier_preparer.quote
                kind = column.type.compile(dialect=engine.dialect)
                connection.execute(
                    text(f"ALTER TABLE {quote(table.name)} ADD COLUMN {quote(column.name)} {kind}")
                )
                added.append(f"{table.name}.{column.name}")
    if added:
        log.info("registry upgraded in place: added %s", ", ".join(added))
    return added
