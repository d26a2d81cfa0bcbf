"""The store: one SQLAlchemy schema on SQLite (default) or PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy import Connection

from tasktrail.store.engine import Store, open_store

T = TypeVar("T")


def once(url: str, work: Callable[[Store], Awaitable[T]]) -> T:
    """Opens the store (migrated), runs `work` on it, closes it: the CLI's one-shot commands."""
    from tasktrail import migrate

    migrate.migrate(url)

    async def go() -> T:
        store = open_store(url)
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(go())


def write_once(url: str, fn: Callable[[Connection], T]) -> T:
    """One write transaction on the store, from the CLI."""
    return once(url, lambda store: store.write(fn))


__all__ = ["Store", "once", "open_store", "write_once"]
