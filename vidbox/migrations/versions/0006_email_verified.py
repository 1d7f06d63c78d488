"""Verified email addresses, and the box_meta table (the origin the admin set the box up on).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from vidbox.models import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # New accounts start unproven; the accounts already here keep what they could see.
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("email_verified", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    users = sa.table("users", sa.column("email_verified", sa.Boolean()))
    op.execute(users.update().values(email_verified=True))
    op.create_table(
        "box_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(2000), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("box_meta")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("email_verified")
