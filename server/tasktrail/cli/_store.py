"""The admin commands' one-shot use of the store."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tasktrail.store import Store, migrate, open_store
from tasktrail.store.statements import WriteQueries

T = TypeVar("T")


def once(url: str, work: Callable[[Store], Awaitable[T]]) -> T:
    """Opens the store (migrated), runs `work` on it, closes it."""
    migrate(url)

    async def go() -> T:
        store = open_store(url)
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(go())


def write_once(url: str, fn: Callable[[WriteQueries], T]) -> T:
    """One write transaction on the store."""
    return once(url, lambda store: store.write(fn))
