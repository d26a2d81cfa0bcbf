"""The store: one schema on SQLite (the default) or PostgreSQL.

Every difference between the two lives in this package and nowhere else:
`sqlite.py` and `postgres.py` each hold one backend (how statements run, how
other processes' writes are heard, how migrations are locked); `statements.py`
holds the SQL both run.
"""

from __future__ import annotations

import asyncio

from tasktrail.store import postgres, sqlite
from tasktrail.store.base import Store, StoreOptions, backend_of, normalize_url
from tasktrail.store.migrate import SchemaOutdated, head_revision


def open_store(url: str, options: StoreOptions | None = None) -> Store:
    url = normalize_url(url)
    options = options or StoreOptions()
    if backend_of(url) == "sqlite":
        return sqlite.SqliteStore(url, options)
    return postgres.PostgresStore(url, options)


def migrate(url: str) -> str:
    """Bring the schema to the code's revision (once, under a lock); returns it."""
    url = normalize_url(url)
    if backend_of(url) == "sqlite":
        sqlite.migrate(url)
    else:
        asyncio.run(postgres.migrate(url))
    return head_revision()


__all__ = ["SchemaOutdated", "Store", "StoreOptions", "migrate", "open_store"]
