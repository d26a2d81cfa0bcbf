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
    # Idempotent creation: a retry with the same request_id finds this task.
    Column("request_id", String(128)),
    # The worker's claim: who holds the task, until when.
    Column("lease_id", String(64)),
    Column("lease_expires_at", BigInteger),
    Column("lease_duration_us", BigInteger),
    Column("cancel_forced", Boolean, nullable=False, default=False),
    # Result retention after completion; NULL: the scope's default.
    Column("retention_us", BigInteger),
    # The last append's idempotency key and the entry ids it made (JSON), for a retry.
    Column("last_append_id", String(64)),
    Column("last_append_ids", Text),
    Column("last_append_digest", String(64)),
    # Bumped by every write, so that other processes can tell a task changed.
    Column("version", BigInteger, nullable=False, default=0),
)

# Keyset pagination in (created_at, task_id) order, per entity and per scope.
Index("ix_tasks_entity_order", tasks.c.scope, tasks.c.entity_id, tasks.c.created_at, tasks.c.task_id)
Index("ix_tasks_scope_order", tasks.c.scope, tasks.c.created_at, tasks.c.task_id)
# Per entity: one tenant's retry key neither finds nor reveals another's.
Index("ix_tasks_request_id", tasks.c.scope, tasks.c.entity_id, tasks.c.request_id, unique=True)
Index("ix_tasks_lease_expires_at", tasks.c.lease_expires_at)
Index("ix_tasks_expire_at", tasks.c.expire_at)
# The cloud API lists an account's tasks by their last status update.
Index("ix_tasks_status_order", tasks.c.scope, tasks.c.entity_id, tasks.c.status_changed_at, tasks.c.task_id)

log_entries = Table(
    "log_entries",
    metadata,
    Column("task_id", String(64), primary_key=True),
    Column("entry_id", String(36), primary_key=True),
    Column("timestamp", BigInteger, nullable=False),
    Column("message", Text, nullable=False),
    Column("fields", Text),
)

# Access tokens: the secret is stored as its SHA-256 (tokens are random, 256-bit).
tokens = Table(
    "tokens",
    metadata,
    Column("token_id", String(32), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("role", String(16), nullable=False),
    # JSON list of grants: "database" (a whole scope) or "account:1234" (one entity).
    Column("grants", Text, nullable=False),
    Column("secret_hash", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger),
)

# Cloud accounts: the account key (x-api-key) is stored as its SHA-256.
accounts = Table(
    "accounts",
    metadata,
    Column("account_id", String(64), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("api_key_hash", String(64), nullable=False, unique=True),
    Column("created_at", BigInteger, nullable=False),
)

# A user key of an account (x-api-secret-key), stored as its SHA-256.
api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("account_id", String(64), nullable=False),
    Column("name", String(255), nullable=False),
    Column("secret_hash", String(64), nullable=False, unique=True),
    Column("created_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger),
)

# Requests counted against a rate limit: one row a key and period (a fixed window).
rate_counts = Table(
    "rate_counts",
    metadata,
    Column("key", String(128), primary_key=True),
    Column("period", BigInteger, primary_key=True),
    Column("count", BigInteger, nullable=False),
)

# Basic-auth users of the enterprise API: the password as a salted scrypt digest.
users = Table(
    "users",
    metadata,
    Column("username", String(255), primary_key=True),
    Column("password_hash", String(255), nullable=False),
    Column("created_at", BigInteger, nullable=False),
)
