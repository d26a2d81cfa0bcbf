"""The last append's content, as a digest: a retry with the same append_id and
other entries is refused, never answered with the first call's ids.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("last_append_digest", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("last_append_digest")
