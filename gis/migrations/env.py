"""Alembic environment: always run with a connection that Rallypoint hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from gis.storage.tables import Base

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("run migrations through 'rallypoint db upgrade' (gis.storage.db.upgrade)")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
