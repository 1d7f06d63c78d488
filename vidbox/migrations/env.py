"""Alembic environment: vidbox runs migrations itself on start (see vidbox.db.migrate_sync)."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import vidbox.models  # noqa: F401  (registers the tables on SQLModel.metadata)

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("vidbox migrations run through vidbox.db.migrate_sync")

context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=True,  # SQLite can only ALTER by copying tables
)
with context.begin_transaction():
    context.run_migrations()
