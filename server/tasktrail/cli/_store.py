"""The admin commands' one-shot use of the store.

They use the store `tasktrail up` made and never make one: run from the wrong
directory, a command that made `./data/tasktrail.db` there would mint
credentials the running server never sees. They say which store they used.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.engine import make_url

from tasktrail.store import NoStore, SchemaOutdated, Store, open_store, require_existing
from tasktrail.store.statements import WriteQueries

T = TypeVar("T")


def once(url: str, work: Callable[[Store], Awaitable[T]]) -> T:
    """Opens the existing store (at the code's schema), runs `work` on it, closes it;
    exits 1 with a sentence when there is none, or its schema is another."""
    print(f"store: {make_url(url).render_as_string(hide_password=True)}", file=sys.stderr)

    async def go() -> T:
        store = open_store(url)
        try:
            await store.check_schema()
            return await work(store)
        finally:
            await store.close()

    try:
        require_existing(url)
        return asyncio.run(go())
    except NoStore as exc:
        print(
            f"tasktrail: {exc}. Run this where `tasktrail up` keeps its data (or give --data-dir or "
            "--database-url); `tasktrail migrate` makes a new store.",
            file=sys.stderr,
        )
    except SchemaOutdated as exc:
        print(f"tasktrail: {exc}", file=sys.stderr)
    raise SystemExit(1)


def write_once(url: str, fn: Callable[[WriteQueries], T]) -> T:
    """One write transaction on the store."""
    return once(url, lambda store: store.write(fn))
