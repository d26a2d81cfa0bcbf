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


class NoStore(RuntimeError):
    """No store at the URL: a SQLite file that does not exist (opening it would make one)."""


def require_existing(url: str) -> None:
    """Raise NoStore unless the store is there (a PostgreSQL database is asked when opened)."""
    url = normalize_url(url)
    if backend_of(url) == "sqlite" and not sqlite.sqlite_path(url).exists():
        raise NoStore(f"there is no store at {sqlite.sqlite_path(url)}")


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


__all__ = ["NoStore", "SchemaOutdated", "Store", "StoreOptions", "migrate", "open_store", "require_existing"]
