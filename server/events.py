"""Change notification: tells waiters that a task changed.

A write made in this process notifies at once. A write made by another
process (several servers on one SQLite file, or replicas on PostgreSQL) is
seen by a poll of the watched tasks' versions: on SQLite only when
`PRAGMA data_version` says another connection committed. The store stays the
truth; a notification only says "look again".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Iterator

from tasktrail.store import Store
from tasktrail.store import tasks as q
from tasktrail.store.engine import SqliteStore

log = logging.getLogger(__name__)


class ChangeFeed:
    def __init__(self, store: Store, interval: float = 0.005) -> None:
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
        """Poll for changes made by other processes, for as long as the server runs."""
        while True:
            await asyncio.sleep(self.interval)
            if not self._waiters:
                continue
            try:
                if await self._others_committed():
                    await self._poll()
            except Exception:
                log.exception("change poll failed")

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
