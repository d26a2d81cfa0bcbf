"""The schema. Times are integers (µs since the Unix epoch, UTC) and JSON is
text, so that rows read the same through every driver and compare fast."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, MetaData, String, Table, Text

metadata = MetaData()

tasks = Table(
    "tasks",
    metadata,
    Column("task_id", String(64), primary_key=True),
    Column("scope", String(16), nullable=False),
    Column("entity_id", String(255), nullable=False),
    Column("type", String(128), nullable=False),
    Column("status", String(16), nullable=False),
    Column("parent_id", String(64)),
    Column("node_name", String(255)),
    Column("instance_id", String(255)),
    Column("host_id", String(255)),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("status_changed_at", BigInteger, nullable=False),
    Column("started_at", BigInteger),
    Column("completed_at", BigInteger),
    Column("error", Text),
    Column("progress", Text),
    Column("result", Text),
    Column("in_commit_phase", Boolean, nullable=False, default=False),
    Column("worker_name", String(255)),
    Column("expire_at", BigInteger),
    # The newest log entry id: entry ids are allocated under this row's lock.
    Column("last_entry_id", String(36)),
)

# Keyset pagination in (created_at, task_id) order, per entity and per scope.
Index("ix_tasks_entity_order", tasks.c.scope, tasks.c.entity_id, tasks.c.created_at, tasks.c.task_id)
Index("ix_tasks_scope_order", tasks.c.scope, tasks.c.created_at, tasks.c.task_id)

log_entries = Table(
    "log_entries",
    metadata,
    Column("task_id", String(64), primary_key=True),
    Column("entry_id", String(36), primary_key=True),
    Column("timestamp", BigInteger, nullable=False),
    Column("message", Text, nullable=False),
    Column("fields", Text),
)
