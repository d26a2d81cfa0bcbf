"""Change notification: tells waiters that a task changed.

A write made in this process notifies at once. A write made by another
process is seen
- on PostgreSQL, through LISTEN: every write transaction NOTIFYs the task it
  changed, at commit; a slow poll of the watched tasks' versions backs it up
  (and covers the moments the listening connection is being re-made);
- on SQLite (several servers on one file), by a poll of the watched tasks'
  versions, made only when `PRAGMA data_version` says another connection
  committed.
The store stays the truth; a notification only says "look again".
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
from collections.abc import Iterator

import asyncpg

from tasktrail.store import Store
from tasktrail.store import tasks as q
from tasktrail.store.engine import CHANGES_CHANNEL, ORIGIN, PostgresStore, SqliteStore

log = logging.getLogger(__name__)


# How often a process looks for writes of other processes (SQLite), in seconds.
CHANGE_POLL_INTERVAL = 0.005
# With LISTEN doing the work, the versions poll only backs it up.
BACKUP_POLL_INTERVAL = 1.0


def _on_lost(lost: asyncio.Event, _conn: object) -> None:
    lost.set()


class ChangeFeed:
    def __init__(self, store: Store, interval: float = CHANGE_POLL_INTERVAL) -> None:
        self.store = store
        self.interval = interval
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._versions: dict[str, int] = {}
        self._data_version: int | None = None
        self._probe: sqlite3.Connection | None = None

    def notify(self, task_id: str) -> None:
        for event in self._waiters.get(task_id, ()):
            event.set()

    @contextlib.contextmanager
    def subscription(self, task_id: str) -> Iterator[asyncio.Event]:
        """An event set whenever the task may have changed (clear it before looking)."""
        event = asyncio.Event()
        self._waiters.setdefault(task_id, set()).add(event)
        try:
            yield event
        finally:
            waiters = self._waiters.get(task_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[task_id]
                    self._versions.pop(task_id, None)

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        """Wait for a change; False when the timeout passed first."""
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def run(self) -> None:
        """Hear of changes made by other processes, for as long as the server runs."""
        if isinstance(self.store, PostgresStore):
            await asyncio.gather(self._listen(self.store), self._poll_loop(BACKUP_POLL_INTERVAL))
        else:
            await self._poll_loop(self.interval)

    async def _poll_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            if not self._waiters:
                continue
            try:
                if await self._others_committed():
                    await self._poll()
            except Exception:
                log.exception("change poll failed")

    async def _listen(self, store: PostgresStore) -> None:
        """LISTEN on a connection of its own; made again when it breaks, and
        then every waiter looks again (a NOTIFY may have been missed)."""
        while True:
            lost = asyncio.Event()
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(store.dsn())
                conn.add_termination_listener(functools.partial(_on_lost, lost))
                await conn.add_listener(CHANGES_CHANNEL, self._heard)
                self._notify_all()
                await lost.wait()
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("LISTEN connection failed (%s); polling until it is back", exc)
            finally:
                # The connection is closed even when the server stops mid-LISTEN.
                if conn is not None:
                    try:
                        await asyncio.wait_for(conn.close(), 2)
                    except Exception:
                        conn.terminate()
            self._notify_all()
            await asyncio.sleep(1.0)

    def _heard(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        origin, _, task_id = str(payload).partition(" ")
        if origin != ORIGIN:  # this process's own writes woke its waiters already
            self.notify(task_id)

    def _notify_all(self) -> None:
        for task_id in list(self._waiters):
            self.notify(task_id)

    async def _others_committed(self) -> bool:
        if not isinstance(self.store, SqliteStore):
            return True
        if self._probe is None:
            self._probe = sqlite3.connect(self.store.path, isolation_level=None)
        version = self._probe.execute("PRAGMA data_version").fetchone()[0]
        changed = version != self._data_version
        self._data_version = version
        return bool(changed)

    async def _poll(self) -> None:
        ids = list(self._waiters)
        versions = await self.store.read(lambda r: q.task_versions(r, ids))
        for task_id in ids:
            current = versions.get(task_id, -1)  # -1: gone
            if self._versions.get(task_id) != current:
                self._versions[task_id] = current
                self.notify(task_id)

    def close(self) -> None:
        if self._probe is not None:
            self._probe.close()
            self._probe = None
