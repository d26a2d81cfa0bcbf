"""Schema migrations: applied once, under a lock, by `tasktrail migrate`.

A server checks the schema's revision when it starts and refuses to run on a
schema older than its code.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from tasktrail.store.engine import StoreOptions, normalize_url, sqlite_engine, sqlite_path

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Any fixed key serves: it only has to be the same in every process.
PG_LOCK_KEY = 0x7461736B74726C  # "tasktrl"


class SchemaOutdated(RuntimeError):
    """The store's schema is not the one this code needs: `tasktrail migrate` first."""


def _config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _upgrade(connection: Connection) -> None:
    command.upgrade(_config(connection), "head")


def migrate(url: str) -> str:
    """Bring the schema to the code's revision; returns it."""
    url = normalize_url(url)
    if make_url(url).get_backend_name() == "sqlite":
        path = sqlite_path(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        with _file_lock(path.with_name(path.name + ".migrate-lock")):
            # WAL lets readers run beside the writer; it is a property of the file.
            with contextlib.closing(sqlite3.connect(path)) as raw:
                raw.execute("PRAGMA journal_mode = WAL")
            engine = sqlite_engine(url, StoreOptions())
            try:
                with engine.connect() as conn:
                    _upgrade(conn)
                    conn.commit()
            finally:
                engine.dispose()
    else:
        asyncio.run(_migrate_async(url))
    return head_revision()


async def _migrate_async(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            # Session-level advisory lock: one migrator at a time across hosts.
            await conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": PG_LOCK_KEY})
            try:
                await conn.run_sync(_upgrade)
                await conn.commit()
            finally:
                await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": PG_LOCK_KEY})
                await conn.commit()
    finally:
        await engine.dispose()


def check_revision(connection: Connection) -> None:
    current, head = current_revision(connection), head_revision()
    if current != head:
        raise SchemaOutdated(
            f"the database schema is at revision {current or 'none'} and this code needs {head}: "
            "run `tasktrail migrate` first"
        )
