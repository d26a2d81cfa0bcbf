"""What the core needs of a store, and nothing of how one works.

`tasktrail.store` implements these on SQLite and on PostgreSQL. A write is a
plain function of a `Transaction`, run inside one transaction; a read is a
function of a `Snapshot`. The core never sees SQL, a driver or a dialect.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

from tasktrail.core.model import LogEntry, Scope, Task, TaskPage, TaskQuery

T = TypeVar("T")


class Conflict(Exception):
    """A concurrent write took a unique key first (a task id, a request id): look again."""


class Snapshot(Protocol):
    """Reads that see one state of the store."""

    def get_task(self, task_id: str, now: int) -> Task | None:
        """A task, unless it has expired."""

    def task_position(self, task_id: str) -> tuple[Scope, str, tuple[int, str]] | None:
        """A task's scope, entity and list position, expired or not (a cursor stays a cursor)."""

    def list_tasks(self, query: TaskQuery, now: int) -> TaskPage: ...

    def list_after_task(self, query: TaskQuery, task_id: str, now: int) -> TaskPage | None:
        """The page after that task, where it lies in the query's one range and
        one statement can tell; None otherwise (place the cursor, then list)."""

    def by_status_change(self, scope: Scope, entity_id: str, since: int, now: int, limit: int) -> list[Task]:
        """An entity's tasks created since `since`, the latest status change first."""

    def log_forward(self, task_id: str, from_id: str | None, limit: int) -> list[LogEntry]:
        """Entries with id >= from_id (inclusive), oldest first."""

    def log_forward_after(self, task_id: str, after: str | None, limit: int) -> list[LogEntry]:
        """Entries with id > after (exclusive), oldest first."""

    def log_tail(self, task_id: str, from_id: str | None, limit: int) -> list[LogEntry]:
        """The newest `limit` entries with id >= from_id, oldest first."""

    def lapsed_leases(self, now: int, limit: int) -> list[str]: ...

    def expired_tasks(self, now: int, limit: int) -> list[str]: ...

    def task_versions(self, task_ids: Sequence[str]) -> dict[str, int]:
        """The version of each task that still exists."""


class Transaction(Protocol):
    """Writes inside one transaction; it commits when the function returns."""

    def lock_task(self, task_id: str) -> Task | None:
        """A task, read under its row lock."""

    def task_by_request_id(self, scope: Scope, entity_id: str, request_id: str) -> Task | None:
        """The task an entity's earlier create with this request_id made."""

    def insert_task(self, task: Task) -> None: ...

    def save_task(self, before: Task, after: Task) -> Task:
        """Write what changed between `before` and `after`; the task as saved."""

    def insert_entries(self, task_id: str, entries: Sequence[LogEntry]) -> None: ...

    def delete_tasks(self, task_ids: Sequence[str], now: int) -> int:
        """Delete these tasks and their logs if they are still expired; how many."""

    def try_exclusive(self, key: int) -> bool:
        """Whether this transaction may do a job one process at a time should do."""


class TaskStore(Protocol):
    """A store of tasks and logs, and how a process hears of other processes' writes."""

    async def write(self, fn: Callable[[Transaction], T], changed: str | None = None) -> T:
        """Run `fn` in a write transaction. `changed` names the task it wrote,
        for the change feeds of other processes."""

    async def read(self, fn: Callable[[Snapshot], T]) -> T:
        """Run `fn`, which makes one statement."""

    async def snapshot(self, fn: Callable[[Snapshot], T]) -> T:
        """Run `fn`, which may make several statements, in one snapshot."""

    async def get_task(self, task_id: str, now: int) -> Task | None:
        """One task by id, unless it expired by `now` (a polled read: the hot path)."""

    def change_poll_interval(self, configured: float) -> float:
        """How often to poll the versions of watched tasks (seconds)."""

    def others_committed(self) -> bool:
        """Whether another process may have written since the last call (cheap)."""

    def listen(self, heard: Callable[[str], None], resync: Callable[[], None]) -> Awaitable[None]:
        """Run for as long as the process serves: `heard(task_id)` for each write
        another process makes, `resync()` whenever some may have been missed.
        Returns at once where the store has no such channel (polling does it)."""
