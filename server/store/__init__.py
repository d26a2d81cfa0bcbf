"""The store: one SQLAlchemy schema on SQLite (default) or PostgreSQL."""

from tasktrail.store.engine import Store, open_store

__all__ = ["Store", "open_store"]
