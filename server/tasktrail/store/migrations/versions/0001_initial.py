"""Tasks and their logs.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("task_id", sa.String(64), primary_key=True),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("entity_id", sa.String(255), nullable=False),
        sa.Column("type", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("parent_id", sa.String(64)),
        sa.Column("node_name", sa.String(255)),
        sa.Column("instance_id", sa.String(255)),
        sa.Column("host_id", sa.String(255)),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("status_changed_at", sa.BigInteger, nullable=False),
        sa.Column("started_at", sa.BigInteger),
        sa.Column("completed_at", sa.BigInteger),
        sa.Column("error", sa.Text),
        sa.Column("progress", sa.Text),
        sa.Column("result", sa.Text),
        sa.Column("in_commit_phase", sa.Boolean, nullable=False),
        sa.Column("worker_name", sa.String(255)),
        sa.Column("expire_at", sa.BigInteger),
        sa.Column("last_entry_id", sa.String(36)),
    )
    op.create_index("ix_tasks_entity_order", "tasks", ["scope", "entity_id", "created_at", "task_id"])
    op.create_index("ix_tasks_scope_order", "tasks", ["scope", "created_at", "task_id"])
    op.create_table(
        "log_entries",
        sa.Column("task_id", sa.String(64), primary_key=True),
        sa.Column("entry_id", sa.String(36), primary_key=True),
        sa.Column("timestamp", sa.BigInteger, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("fields", sa.Text),
    )


def downgrade() -> None:
    op.drop_table("log_entries")
    op.drop_index("ix_tasks_scope_order", "tasks")
    op.drop_index("ix_tasks_entity_order", "tasks")
    op.drop_table("tasks")
