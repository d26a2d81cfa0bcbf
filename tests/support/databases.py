"""Which database the tests run on, and a fresh one for each store they make.

    make test                                  # SQLite, then PostgreSQL with 3 replicas
    TASKTRAIL_TEST_DATABASE=postgresql+asyncpg://postgres@127.0.0.1:5432/test pytest

On PostgreSQL every store a test makes is a new database on that server
(CREATE DATABASE tt_<random>), dropped when the test is done: tests never see
each other's tasks, as they do not with their own SQLite files.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
from sqlalchemy.engine import make_url

TEST_DATABASE = os.environ.get("TASKTRAIL_TEST_DATABASE", "sqlite")
ON_POSTGRES = TEST_DATABASE.startswith("postgresql")
T = TypeVar("T")
# Server processes behind Envoy in each stack the tests start.
REPLICAS = int(os.environ.get("TASKTRAIL_TEST_REPLICAS", "1"))


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(_dsn(TEST_DATABASE))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, also from inside a running loop (an async test): on a thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def check_server() -> None:
    """Raises when the test database's server does not answer."""
    if ON_POSTGRES:
        _run(_admin("SELECT 1"))


def fresh_url(directory: Path) -> str:
    """A new, empty store: a SQLite file in `directory`, or a new PostgreSQL database."""
    if not ON_POSTGRES:
        return f"sqlite:///{directory / 'tasktrail.db'}"
    name = f"tt_{uuid.uuid4().hex[:16]}"
    _run(_admin(f'CREATE DATABASE "{name}"'))
    return make_url(TEST_DATABASE).set(database=name).render_as_string(hide_password=False)


def drop(url: str) -> None:
    if url.startswith("postgresql"):
        name = make_url(url).database
        _run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def rows_of(url: str, task_id: str) -> tuple[int, int]:
    """How many rows the store holds of a task, and of its log."""
    from sqlalchemy import func, select

    from tasktrail.store import open_store
    from tasktrail.store.schema import log_entries, tasks

    async def count() -> tuple[int, int]:
        store = open_store(url)
        try:
            n_tasks = select(func.count()).select_from(tasks).where(tasks.c.task_id == task_id)
            n_entries = select(func.count()).select_from(log_entries).where(log_entries.c.task_id == task_id)
            return (
                (await store.read(lambda r: r.rows(n_tasks, {})))[0][0],
                (await store.read(lambda r: r.rows(n_entries, {})))[0][0],
            )
        finally:
            await store.close()

    return _run(count())


async def hold_task_lock(url: str, task_id: str, seconds: float, held: asyncio.Event) -> None:
    """Another writer holding `task_id` for `seconds` (SQLite: the whole write
    lock; PostgreSQL: the task's row): a stall in the write queue, from outside."""
    if url.startswith("postgresql"):
        conn = await asyncpg.connect(_dsn(url))
        try:
            async with conn.transaction():
                await conn.execute("SELECT 1 FROM tasks WHERE task_id = $1 FOR UPDATE", task_id)
                held.set()
                await asyncio.sleep(seconds)
        finally:
            await conn.close()
        return
    import sqlite3

    raw = sqlite3.connect(make_url(url).database or "", isolation_level=None)
    try:
        raw.execute("BEGIN IMMEDIATE")
        held.set()
        await asyncio.sleep(seconds)
        raw.execute("COMMIT")
    finally:
        raw.close()
