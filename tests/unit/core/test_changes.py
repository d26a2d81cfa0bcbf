"""The change feed: a waiter hears of a write in its own process at once, and of
another process's write through the store (SQLite: the versions poll;
PostgreSQL: LISTEN/NOTIFY)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tasktrail.core.changes import ChangeFeed
from tasktrail.core.model import NewTask, Scope
from tasktrail.core.tasks import TaskCore
from tasktrail.store import Store, open_store

pytestmark = pytest.mark.anyio


@pytest.fixture
async def two(database_url: str) -> AsyncIterator[tuple[TaskCore, TaskCore]]:
    stores: list[Store] = [open_store(database_url), open_store(database_url)]
    cores = [TaskCore(s, feed=ChangeFeed(s, interval=0.01)) for s in stores]
    running = [asyncio.create_task(c.feed.run()) for c in cores]
    yield cores[0], cores[1]
    for task in running:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)
    for store in stores:
        await store.close()


async def test_a_waiter_hears_of_its_own_process_at_once(two: tuple[TaskCore, TaskCore]) -> None:
    core, _ = two
    task = await core.create_task(NewTask(Scope.DATABASE, "db", "create"))
    with core.feed.subscription(task.task_id) as changed:
        await core.cancel(task.task_id)
        assert changed.is_set()  # no poll needed: the write notified before it returned


async def test_a_waiter_hears_of_another_process(two: tuple[TaskCore, TaskCore]) -> None:
    mine, theirs = two
    task = await mine.create_task(NewTask(Scope.DATABASE, "db", "create"))
    await asyncio.sleep(0.05)  # both feeds running (PostgreSQL: LISTEN is up)
    with mine.feed.subscription(task.task_id) as changed:
        await asyncio.sleep(0.05)  # the poll has seen the task's version
        changed.clear()
        await theirs.cancel(task.task_id)
        assert await mine.feed.wait(changed, 5.0)


async def test_no_change_times_out(two: tuple[TaskCore, TaskCore]) -> None:
    core, _ = two
    task = await core.create_task(NewTask(Scope.DATABASE, "db", "create"))
    with core.feed.subscription(task.task_id) as changed:
        await asyncio.sleep(0.05)  # a first look may wake it: a notification only says "look again"
        changed.clear()
        assert not await core.feed.wait(changed, 0.1)
