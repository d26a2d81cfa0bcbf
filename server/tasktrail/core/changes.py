"""Change notification: tells waiters that a task changed.

A write made in this process notifies at once. A write made by another
process is heard through the store: where it has a channel for it
(PostgreSQL's LISTEN), each write names its task, and a slow poll of the
watched tasks' versions backs it up; where it has none (several processes on
one SQLite file), the versions are polled often, and only when the store says
another process committed. The store stays the truth; a notification only
says "look again".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

from tasktrail.core import errors
from tasktrail.core.storage import TaskStore

log = logging.getLogger(__name__)


# How often a process looks for writes of other processes (seconds), where polling is all it has.
CHANGE_POLL_INTERVAL = 0.005
# How long a poll waits after the store failed, before it looks again (seconds).
OUTAGE_PAUSE = 0.5


class ChangeFeed:
    def __init__(self, store: TaskStore, interval: float = CHANGE_POLL_INTERVAL) -> None:
        self.store = store
        self.interval = interval
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._versions: dict[str, int] = {}

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
        await asyncio.gather(
            self.store.listen(self.notify, self._notify_all),
            self._poll_loop(self.store.change_poll_interval(self.interval)),
        )

    async def _poll_loop(self, interval: float) -> None:
        pause = interval
        while True:
            await asyncio.sleep(pause)
            pause = interval
            if not self._waiters:
                continue
            try:
                if self.store.others_committed():
                    await self._poll()
            except errors.Unavailable:
                pause = OUTAGE_PAUSE  # the store says so itself; look again when it may be back
            except Exception:
                log.exception("change poll failed")
                pause = OUTAGE_PAUSE

    def _notify_all(self) -> None:
        for task_id in list(self._waiters):
            self.notify(task_id)

    async def _poll(self) -> None:
        ids = list(self._waiters)
        versions = await self.store.read(lambda r: r.task_versions(ids))
        for task_id in ids:
            current = versions.get(task_id, -1)  # -1: gone
            if self._versions.get(task_id) != current:
                self._versions[task_id] = current
                self.notify(task_id)
