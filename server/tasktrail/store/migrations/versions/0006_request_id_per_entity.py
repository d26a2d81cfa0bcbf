"""A request_id is unique per entity, not across every tenant: one tenant's
retry key can neither find nor reveal another's.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_index("ix_tasks_request_id")
        batch.create_index("ix_tasks_request_id", ["scope", "entity_id", "request_id"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_index("ix_tasks_request_id")
        batch.create_index("ix_tasks_request_id", ["request_id"], unique=True)
