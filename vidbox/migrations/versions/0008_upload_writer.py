"""Uploads record which request writes them and until when: a lease that web processes on
several hosts, sharing one spool folder, respect (a file lock does not reach across NFS
clients dependably).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from vidbox.models import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("uploads", schema=None) as batch_op:
        batch_op.add_column(sa.Column("writer", sa.String(length=160), nullable=True))
        batch_op.add_column(sa.Column("writer_until", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("uploads", schema=None) as batch_op:
        batch_op.drop_column("writer_until")
        batch_op.drop_column("writer")
