"""Leases, idempotent creation, retention, change versions; access tokens.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("request_id", sa.String(128)))
        batch.add_column(sa.Column("lease_id", sa.String(64)))
        batch.add_column(sa.Column("lease_expires_at", sa.BigInteger))
        batch.add_column(sa.Column("lease_duration_us", sa.BigInteger))
        batch.add_column(sa.Column("cancel_forced", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("retention_us", sa.BigInteger))
        batch.add_column(sa.Column("last_append_id", sa.String(64)))
        batch.add_column(sa.Column("last_append_ids", sa.Text))
        batch.add_column(sa.Column("version", sa.BigInteger, nullable=False, server_default="0"))
    op.create_index("ix_tasks_request_id", "tasks", ["request_id"], unique=True)
    op.create_index("ix_tasks_lease_expires_at", "tasks", ["lease_expires_at"])
    op.create_index("ix_tasks_expire_at", "tasks", ["expire_at"])
    op.create_table(
        "tokens",
        sa.Column("token_id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("grants", sa.Text, nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("revoked_at", sa.BigInteger),
    )


def downgrade() -> None:
    op.drop_table("tokens")
    op.drop_index("ix_tasks_expire_at", "tasks")
    op.drop_index("ix_tasks_lease_expires_at", "tasks")
    op.drop_index("ix_tasks_request_id", "tasks")
    with op.batch_alter_table("tasks") as batch:
        for column in (
            "version",
            "last_append_ids",
            "last_append_id",
            "retention_us",
            "cancel_forced",
            "lease_duration_us",
            "lease_expires_at",
            "lease_id",
            "request_id",
        ):
            batch.drop_column(column)
