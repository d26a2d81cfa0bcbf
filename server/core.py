"""The task core: every operation on tasks and logs, for every face.

It knows nothing of HTTP, JSON field names or dialects. Writes are plain
functions run inside one store transaction; reads run in one snapshot.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from tasktrail import errors, lifecycle
from tasktrail.ids import IdGenerator, is_canonical_uuid, next_id_after, parse_uuid, uuid_time_us
from tasktrail.model import (
    LogEntry,
    LogPage,
    NewLogEntry,
    NewTask,
    Scope,
    Status,
    Task,
    TaskChanges,
    TaskError,
    TaskPage,
    TaskQuery,
    now_us,
)
from tasktrail.store import Store
from tasktrail.store import tasks as q
from tasktrail.store.engine import Reader

# Control-plane ids: lower-case letters, digits and single hyphens, 1-36 long.
IDENTIFIER = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,34}[a-z0-9])?")
MAX_FREE_ID = 64
MAX_MESSAGE = 64 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounded answers: no read returns more than these."""

    max_page_size: int = 1000
    default_page_size: int = 100
    max_log_entries: int = 1000
    max_append_batch: int = 1000
    # Terminal tasks kept in memory per process (they never change).
    finished_cache_size: int = 100_000


@dataclass(frozen=True, slots=True)
class CancelResult:
    task: Task
    # False when the task was already canceling: nothing changed.
    requested: bool


class FinishedTasks:
    """Terminal tasks, served from memory: a terminal task never changes again
    (every write to one is refused), in this process or any other, so a copy
    never goes stale. Only its expiry ends it, and that is checked on each hit.
    Oldest first out when full."""

    __slots__ = ("_items", "_size")

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: dict[str, Task] = {}

    def get(self, task_id: str, now: int) -> Task | None:
        task = self._items.get(task_id)
        if task is not None and task.expire_at is not None and task.expire_at <= now:
            del self._items[task_id]
            return None
        return task

    def put(self, task: Task) -> None:
        if self._size <= 0:
            return
        if len(self._items) >= self._size:
            del self._items[next(iter(self._items))]
        self._items[task.task_id] = task


def valid_identifier(value: str) -> bool:
    return IDENTIFIER.fullmatch(value) is not None and "--" not in value


class TaskCore:
    def __init__(self, store: Store, limits: Limits | None = None) -> None:
        self.store = store
        self.limits = limits or Limits()
        self._ids = IdGenerator()
        self._finished = FinishedTasks(self.limits.finished_cache_size)

    # -- writer operations ---------------------------------------------------

    async def create_task(self, new: NewTask) -> Task:
        _check_new_task(new)
        now = now_us()
        task_id = new.task_id or self._ids.new(now // 1000)
        task = Task(
            task_id=task_id,
            scope=new.scope,
            entity_id=new.entity_id,
            type=new.type,
            status=Status.PENDING,
            created_at=now,
            updated_at=now,
            status_changed_at=now,
            parent_id=new.parent_id or None,
            node_name=new.node_name or None,
            instance_id=new.instance_id or None,
            host_id=new.host_id or None,
        )

        def tx(conn: Connection) -> Task:
            if q.lock_task(conn, task_id) is not None:
                raise errors.AlreadyExists(f"task {task_id} already exists")
            q.insert_task(conn, task)
            return task

        try:
            return await self.store.write(tx)
        except IntegrityError as exc:  # a concurrent create of the same id
            raise errors.AlreadyExists(f"task {task_id} already exists") from exc

    async def update_task(self, task_id: str, changes: TaskChanges) -> Task:
        def tx(conn: Connection) -> Task:
            task = self._locked(conn, task_id)
            updated = _apply(task, changes, now_us())
            q.save_task(conn, task, updated)
            return updated

        return await self.store.write(tx)

    async def append_log(self, task_id: str, entries: Sequence[NewLogEntry]) -> list[str]:
        if not entries:
            return []
        if len(entries) > self.limits.max_append_batch:
            raise errors.InvalidArgument(f"at most {self.limits.max_append_batch} entries per call")
        for entry in entries:
            _check_entry(entry)

        def tx(conn: Connection) -> list[str]:
            task = self._locked(conn, task_id)
            if task.status.terminal:
                raise errors.FailedPrecondition(
                    f"task {task_id} is {task.status.value}: its log is sealed", reason=errors.LOG_SEALED
                )
            now = now_us()
            made = self._allocate(task.last_entry_id, entries, now)
            q.insert_entries(conn, task_id, made)
            q.save_task(conn, task, dataclasses.replace(task, last_entry_id=made[-1].entry_id, updated_at=now))
            return [e.entry_id for e in made]

        return await self.store.write(tx)

    # -- reader operations ---------------------------------------------------

    async def get_task(self, task_id: str, scopes: Sequence[Scope] | None = None, entity_id: str | None = None) -> Task:
        now = now_us()
        task = self._finished.get(task_id, now)
        if task is None:
            task = await self.store.read(lambda r: q.get_task(r, task_id, now))
            if task is not None and task.status.terminal:
                self._finished.put(task)
        return _visible(task, task_id, scopes, entity_id)

    async def list_tasks(self, query: TaskQuery) -> TaskPage:
        now = now_us()
        read = self.store.snapshot if len(query.scopes) > 1 else self.store.read
        return await read(lambda r: q.list_tasks(r, query, now))

    async def position_of(self, task_id: str, scopes: Sequence[Scope]) -> tuple[int, str]:
        """The list position an `after_task_id` cursor names.

        A known task of these scopes continues from itself; an unknown
        time-based UUID (v1, v6, v7) is placed by the time inside it; anything
        else is refused.
        """
        known = await self.store.read(lambda r: _position_in_scopes(r, task_id, scopes))
        if known is not None:
            return known
        if is_canonical_uuid(task_id):
            at = uuid_time_us(parse_uuid(task_id))
            if at is not None:
                return (at, task_id)
        raise errors.InvalidArgument(f"{task_id} is neither a known task nor a time-based UUID")

    async def read_log(
        self,
        task_id: str,
        *,
        scopes: Sequence[Scope] | None = None,
        entity_id: str | None = None,
        after_entry_id: str | None = None,
        limit: int = 0,
        tail: bool = False,
    ) -> LogPage:
        """Read a task's log after `after_entry_id` (exclusive).

        Forward (the default): at most `limit` (capped) entries, oldest first,
        continuing right after `after_entry_id`. Tail: the most recent `limit`
        entries after it, as pgEdge's `limit` means. `last_entry_id` is the
        newest entry read, or `after_entry_id` itself when it exists and
        nothing newer does.
        """
        cap = self.limits.max_log_entries
        limit = cap if limit <= 0 else min(limit, cap)
        now = now_us()

        def rx(reader: Reader) -> LogPage:
            task = _visible(q.get_task(reader, task_id, now), task_id, scopes, entity_id)
            # Read from after_entry_id inclusive, to know whether it exists.
            if tail:
                read = q.log_tail(reader, task_id, after_entry_id, limit)
                has_more = False
            else:
                read = q.log_forward(reader, task_id, after_entry_id, limit + 2)
                has_more = len(read) > limit + (1 if read and read[0].entry_id == after_entry_id else 0)
            entries = [e for e in read if e.entry_id != after_entry_id]
            if not tail:
                entries = entries[:limit]
            last = entries[-1].entry_id if entries else (read[-1].entry_id if read else None)
            return LogPage(task=task, entries=entries, last_entry_id=last, has_more=has_more)

        return await self.store.snapshot(rx)

    async def cancel(
        self,
        task_id: str,
        *,
        force: bool = False,
        scopes: Sequence[Scope] | None = None,
        entity_id: str | None = None,
    ) -> CancelResult:
        """Request a cancel. Answers the task as CANCELING (or as it was, when it
        already is: `requested` is then False). When no worker holds the task,
        the server then finishes the cancel itself."""

        def request(conn: Connection) -> tuple[CancelResult, bool]:
            task = self._locked(conn, task_id)
            _visible(task, task_id, scopes, entity_id)
            if task.status is Status.CANCELING:
                return CancelResult(task, requested=False), False
            lifecycle.check_cancel(task, force=force)
            now = now_us()
            fields: dict[str, object] = {"status": "canceling"}
            if force:
                fields["forced"] = True
            canceling = dataclasses.replace(task, status=Status.CANCELING, updated_at=now, status_changed_at=now)
            self._log_in_tx(conn, task, canceling, "task is canceling", fields, now)
            return CancelResult(canceling, requested=True), task.status is Status.PENDING

        answer, unheld = await self.store.write(request)
        if unheld:
            await self.store.write(lambda conn: self._finish_cancel(conn, task_id))
        return answer

    # -- helpers ---------------------------------------------------------------

    def _locked(self, conn: Connection, task_id: str) -> Task:
        task = q.lock_task(conn, task_id)
        if task is None or (task.expire_at is not None and task.expire_at <= now_us()):
            raise errors.NotFound(f"no task {task_id}")
        return task

    def _finish_cancel(self, conn: Connection, task_id: str) -> Task:
        task = self._locked(conn, task_id)
        if task.status is not Status.CANCELING:
            return task
        now = now_us()
        canceled = dataclasses.replace(
            task,
            status=Status.CANCELED,
            updated_at=now,
            status_changed_at=now,
            completed_at=now,
            error=TaskError(code="canceled", message="task was canceled"),
        )
        self._log_in_tx(conn, task, canceled, "task successfully canceled", {"status": "canceled"}, now)
        return canceled

    def _log_in_tx(
        self, conn: Connection, before: Task, after: Task, message: str, fields: dict[str, object], now: int
    ) -> None:
        made = self._allocate(before.last_entry_id, [NewLogEntry(message=message, fields=fields)], now)
        q.insert_entries(conn, after.task_id, made)
        q.save_task(conn, before, dataclasses.replace(after, last_entry_id=made[-1].entry_id))

    def _allocate(self, last: str | None, entries: Sequence[NewLogEntry], now: int) -> list[LogEntry]:
        """Entry ids, each greater than the one before, under the task's lock."""
        made: list[LogEntry] = []
        for entry in entries:
            if entry.entry_id:
                if last is not None and entry.entry_id <= last:
                    raise errors.InvalidArgument(
                        f"entry id {entry.entry_id} is not greater than the task's last entry id {last}"
                    )
                entry_id = entry.entry_id
            else:
                entry_id = next_id_after(last, now // 1000)
            made.append(
                LogEntry(
                    entry_id=entry_id,
                    timestamp=entry.timestamp if entry.timestamp is not None else now,
                    message=entry.message,
                    fields=entry.fields or None,
                )
            )
            last = entry_id
        return made


def _position_in_scopes(reader: Reader, task_id: str, scopes: Sequence[Scope]) -> tuple[int, str] | None:
    found = q.task_position(reader, task_id)
    if found is None or found[0] not in scopes:
        return None
    return found[1]


def _visible(task: Task | None, task_id: str, scopes: Sequence[Scope] | None, entity_id: str | None = None) -> Task:
    """The task, if the caller may see it; NOT_FOUND otherwise, never a hint that it exists."""
    if task is None or (scopes is not None and task.scope not in scopes):
        raise errors.NotFound(f"no task {task_id}")
    if entity_id is not None and task.entity_id != entity_id:
        raise errors.NotFound(f"no task {task_id}")
    return task


def _check_new_task(new: NewTask) -> None:
    if not new.type:
        raise errors.InvalidArgument("type is required")
    if not new.entity_id:
        raise errors.InvalidArgument("entity_id is required")
    if new.scope in (Scope.DATABASE, Scope.HOST) and not valid_identifier(new.entity_id):
        raise errors.InvalidArgument(
            f"entity_id {new.entity_id!r}: valid IDs must be 1-36 characters long, contain only lowercase "
            "letters, digits, and hyphens, start and end with a letter or digit, and not contain two "
            "consecutive hyphens"
        )
    if new.task_id:
        if new.scope is Scope.CRDB:
            if len(new.task_id) > MAX_FREE_ID or not new.task_id.isprintable() or "/" in new.task_id:
                raise errors.InvalidArgument("a CRDB task id is up to 64 printable characters, without '/'")
        elif not is_canonical_uuid(new.task_id):
            raise errors.InvalidArgument(f"task_id {new.task_id!r} is not a canonical lower-case UUID")
    if new.parent_id and not is_canonical_uuid(new.parent_id) and new.scope is not Scope.CRDB:
        raise errors.InvalidArgument(f"parent_id {new.parent_id!r} is not a canonical lower-case UUID")


def _check_entry(entry: NewLogEntry) -> None:
    if len(entry.message) > MAX_MESSAGE:
        raise errors.InvalidArgument(f"a log message is at most {MAX_MESSAGE} characters")
    if entry.entry_id and not is_canonical_uuid(entry.entry_id):
        raise errors.InvalidArgument(f"entry_id {entry.entry_id!r} is not a canonical lower-case UUID")


def _apply(task: Task, changes: TaskChanges, now: int) -> Task:
    """The task after an update, or a refusal."""
    lifecycle.check_writable(task)
    updated = task
    if changes.status is not None and changes.status is not task.status:
        lifecycle.check_transition(task, changes.status)
        updated = dataclasses.replace(updated, status=changes.status, status_changed_at=now)
        if changes.status is Status.RUNNING and updated.started_at is None:
            updated = dataclasses.replace(updated, started_at=now)
        if changes.status.terminal:
            updated = dataclasses.replace(updated, completed_at=now)
        if changes.status is Status.FAILED and changes.error is None:
            raise errors.InvalidArgument("a failed task needs an error")
        if changes.status is Status.CANCELED and changes.error is None:
            updated = dataclasses.replace(updated, error=TaskError(code="canceled", message="task was canceled"))
    elif changes.status is not None:
        lifecycle.check_transition(task, changes.status)
    if changes.error is not None:
        if changes.status not in (Status.FAILED, Status.CANCELED):
            raise errors.InvalidArgument("an error goes with a FAILED (or CANCELED) status")
        updated = dataclasses.replace(updated, error=changes.error)
    for name in ("progress", "result", "node_name", "instance_id", "host_id", "in_commit_phase", "worker_name"):
        value = getattr(changes, name)
        if value is not None:
            updated = dataclasses.replace(updated, **{name: value})
    if updated != task:
        updated = dataclasses.replace(updated, updated_at=now)
    return updated
