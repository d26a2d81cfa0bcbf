"""The task core: every operation on tasks and logs, for every face.

It knows nothing of HTTP, JSON field names or dialects. Writes are plain
functions run inside one store transaction; reads run in one snapshot. Every
read takes an `Access`: the tasks the caller may see (its token's grants,
narrowed to what the face shows); anything else is NOT_FOUND.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from tasktrail.core import errors, lifecycle, metrics
from tasktrail.core.cache import EndedTasks
from tasktrail.core.changes import ChangeFeed
from tasktrail.core.ids import IdGenerator, ids_after, is_canonical_uuid, parse_uuid, uuid_time_us
from tasktrail.core.model import (
    Access,
    LogEntry,
    LogPage,
    NewLogEntry,
    NewTask,
    Retention,
    Scope,
    Status,
    Task,
    TaskChanges,
    TaskError,
    TaskPage,
    TaskQuery,
    now_us,
)
from tasktrail.core.storage import Conflict, Snapshot, TaskStore, Transaction
from tasktrail.core.validation import (
    BOUNDS,
    Limits,
    check_append,
    check_changes,
    check_cursor,
    check_new_task,
    check_query,
    check_worker,
    distinct,
)

SECOND = 1_000_000
EVERYTHING = Access.everything()
T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Timing:
    """Every duration of the worker protocol, in µs (settings, so tests shrink them)."""

    lease_default: int = 30 * SECOND
    lease_min: int = 100_000
    lease_max: int = 600 * SECOND
    # The reaper ends a task only once its lease is this far past: a heartbeat that
    # arrived in time but waits behind a stalled write (here, or in another
    # process) is written before its worker is declared lost.
    lease_grace: int = SECOND
    # The longest WaitTask, and how often a worker's watch stream says it is alive.
    max_wait: int = 60 * SECOND
    watch_keepalive: int = 15 * SECOND


@dataclass(frozen=True, slots=True)
class CancelResult:
    task: Task
    # False when the task was already canceling: nothing changed.
    requested: bool


@dataclass(frozen=True, slots=True)
class Claim:
    task: Task
    lease_id: str


# The advisory lock the retention sweep holds on PostgreSQL ("tt-sweep").
SWEEP_LOCK = 0x74742D7377656570
# What keep_result adds to the time asked for (see `_kept`).
KEEP_MARGIN_US = SECOND


class TaskCore:
    def __init__(
        self,
        store: TaskStore,
        limits: Limits | None = None,
        timing: Timing | None = None,
        retention: Retention | None = None,
        feed: ChangeFeed | None = None,
    ) -> None:
        self.store = store
        self.limits = limits or Limits()
        self.timing = timing or Timing()
        self.retention = retention or Retention()
        self.feed = feed or ChangeFeed(store)
        self._ids = IdGenerator()
        # Ended tasks, served from memory (they never change again).
        self._finished: EndedTasks[None] = EndedTasks(self.limits.finished_cache_size, self.limits.finished_cache_bytes)

    async def _write(self, task_id: str, fn: Callable[[Transaction], T]) -> T:
        """A write transaction on one task; waiters on it hear of it once it committed."""
        try:
            return await self.store.write(fn, changed=task_id)
        finally:
            self.feed.notify(task_id)

    # -- writer operations ---------------------------------------------------

    async def create_task(self, new: NewTask) -> Task:
        """Create a task; a retry (same request_id, or same task_id) with the same
        content returns the task the first call made."""
        check_new_task(new)
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
            request_id=new.request_id or None,
            retention_us=new.retention_us,
        )

        def change(tx: Transaction) -> Task:
            earlier = tx.task_by_request_id(new.scope, new.entity_id, new.request_id) if new.request_id else None
            if earlier is None and new.task_id:
                earlier = tx.lock_task(new.task_id)
            if earlier is not None:
                if _same_creation(earlier, task):
                    return earlier
                what = (
                    f"request_id {new.request_id}"
                    if earlier.request_id and earlier.request_id == new.request_id
                    else f"task {earlier.task_id}"
                )
                raise errors.AlreadyExists(f"{what} already exists with other content")
            tx.insert_task(task)
            return task

        for attempt in range(2):
            try:
                return await self._write(task_id, change)
            except Conflict as exc:  # a concurrent create of the same id or request: look again
                if attempt:
                    raise errors.AlreadyExists(f"task {task_id} already exists") from exc
        raise AssertionError("unreachable")

    async def claim(
        self, task_id: str, worker_name: str, lease_us: int | None, lease_id: str | None, access: Access
    ) -> Claim:
        """A worker takes a pending task: RUNNING, held under a lease."""
        check_worker(worker_name, lease_id)
        duration = self._lease(lease_us)
        wanted = lease_id or secrets.token_hex(16)

        def change(tx: Transaction) -> Claim:
            now = now_us()
            task = self._locked(tx, task_id, access, now)
            if task.lease_id == wanted and task.held(now):  # a retried claim
                return Claim(task, wanted)
            if task.held(now):
                raise errors.FailedPrecondition(
                    f"task {task_id} is held by {task.worker_name or 'another worker'}", reason=errors.TASK_HELD
                )
            lifecycle.check_writable(task)
            if task.status is not Status.PENDING:
                raise errors.FailedPrecondition(
                    f"task {task_id} is {task.status.value}: only a pending task can be claimed",
                    reason=errors.ILLEGAL_TRANSITION,
                )
            claimed = dataclasses.replace(
                task,
                status=Status.RUNNING,
                status_changed_at=now,
                started_at=task.started_at or now,
                updated_at=now,
                worker_name=worker_name or None,
                lease_id=wanted,
                lease_expires_at=now + duration,
                lease_duration_us=duration,
            )
            return Claim(tx.save_task(task, claimed), wanted)

        return await self._write(task_id, change)

    async def heartbeat(self, task_id: str, lease_id: str, lease_us: int | None, access: Access) -> Task:
        """Renew a lease. A heartbeat counts from when it arrived, not from when its
        write ran: a stall in the write queue never loses a worker its lease."""
        check_worker(None, lease_id)
        arrived = now_us()

        def change(tx: Transaction) -> Task:
            task = self._locked(tx, task_id, access, now_us())
            _check_lease(task, lease_id, arrived)
            duration = self._lease(lease_us) if lease_us else (task.lease_duration_us or self.timing.lease_default)
            return tx.save_task(
                task, dataclasses.replace(task, lease_expires_at=arrived + duration, lease_duration_us=duration)
            )

        return await self._write(task_id, change)

    async def update_task(
        self, task_id: str, changes: TaskChanges, lease_id: str | None = None, access: Access = EVERYTHING
    ) -> Task:
        check_changes(changes)
        check_worker(None, lease_id)
        arrived = now_us()

        def change(tx: Transaction) -> Task:
            now = now_us()
            task = self._locked(tx, task_id, access, now)
            if task.status.terminal and _already(task, changes):
                return task  # a retry of the update that ended it: the same answer again
            lifecycle.check_writable(task)
            _check_lease(task, lease_id, arrived)
            updated = _apply(task, changes, now)
            if updated.status.terminal:
                updated = self._ended(updated)
            if updated.status is Status.CANCELED and task.status is not Status.CANCELED:
                # The worker confirmed the cancel: the log says so, as when the server finishes one.
                return self._log_in_tx(tx, task, updated, "task successfully canceled", {"status": "canceled"}, now)
            return tx.save_task(task, updated)

        return await self._write(task_id, change)

    async def append_log(
        self,
        task_id: str,
        entries: Sequence[NewLogEntry],
        lease_id: str | None = None,
        access: Access = EVERYTHING,
        append_id: str | None = None,
    ) -> list[str]:
        if not entries:
            return []
        encoded = check_append(entries, append_id, self.limits)
        digest = batch_digest(entries, encoded) if append_id else None
        arrived = now_us()

        def change(tx: Transaction) -> list[str]:
            now = now_us()
            task = self._locked(tx, task_id, access, now)
            if append_id and task.last_append_id == append_id:
                if task.last_append_digest not in (None, digest):
                    raise errors.AlreadyExists(
                        f"append_id {append_id} was used for other entries: a retry sends the same batch",
                        reason=errors.APPEND_REUSED,
                    )
                return list(task.last_append_ids)  # a retry of an append that was made: its ids again
            if task.status.terminal:
                raise errors.FailedPrecondition(
                    f"task {task_id} is {task.status.value}: its log is sealed", reason=errors.LOG_SEALED
                )
            _check_lease(task, lease_id, arrived)
            made = self._allocate(task.last_entry_id, entries, now, encoded)
            ids = [e.entry_id for e in made]
            tx.insert_entries(task_id, made)
            after = dataclasses.replace(task, last_entry_id=ids[-1], updated_at=now)
            if append_id:
                after = dataclasses.replace(
                    after, last_append_id=append_id, last_append_ids=tuple(ids), last_append_digest=digest
                )
            tx.save_task(task, after)
            return ids

        return await self._write(task_id, change)

    # -- reader operations ---------------------------------------------------

    async def get_task(self, task_id: str, access: Access = EVERYTHING, *, fresh: bool = False) -> Task:
        _named(task_id)
        now = now_us()
        hit = None if fresh else self._finished.get(task_id, now)
        if hit is not None:
            return _visible(hit[0], task_id, access)
        task = await self.store.get_task(task_id, now)
        if task is not None and task.status.terminal:
            task = self._remember(task, now)
        return _visible(task, task_id, access)

    def _remember(self, task: Task, now: int) -> Task:
        """Keep an ended task in memory, without what only a write to it would use
        (its last append's ids): the copy kept is the one every read hands out."""
        kept = dataclasses.replace(task, last_append_ids=(), last_append_digest=None)
        self._finished.put(kept, None, now)
        return kept

    async def keep_result(self, task_id: str, access: Access, keep_us: int) -> Task:
        """Keep a task readable at least `keep_us` from now: an ended task's expiry
        moves later, a running task's retention grows. It never shortens either, and
        a task kept long enough already costs a read, not a write."""
        task = await self.get_task(task_id, access)
        # Expiry and retention only ever grow, so a read (even a cached one) that
        # finds them long enough is right; otherwise the write looks again, locked.
        if self._kept(task, now_us(), keep_us) is None:
            return task

        def extend(tx: Transaction) -> Task:
            now = now_us()
            task = self._locked(tx, task_id, access, now)
            kept = self._kept(task, now, keep_us)
            return task if kept is None else tx.save_task(task, kept)

        task = await self._write(task_id, extend)
        return self._remember(task, now_us()) if task.status.terminal else task

    def _kept(self, task: Task, now: int, keep_us: int) -> Task | None:
        """The task kept readable `keep_us` from `now`, or None if it already is."""
        if task.completed_at is None:
            retention = self._retention_of(task)
            if retention is None or retention >= keep_us:
                return None
            return dataclasses.replace(task, retention_us=keep_us)
        if task.expire_at is None or task.expire_at >= now + keep_us:
            return None
        # A second more than asked: a client that sends the same TTL on every poll
        # then makes one write a second, not one a poll.
        return dataclasses.replace(task, expire_at=now + keep_us + KEEP_MARGIN_US)

    async def list_tasks(self, query: TaskQuery) -> TaskPage:
        check_query(query)
        # Repeats change nothing, and would each make another statement shape.
        query = dataclasses.replace(query, statuses=distinct(query.statuses), types=distinct(query.types))
        now = now_us()
        read = self.store.snapshot if len(query.ranges) > 1 else self.store.read
        return await read(lambda r: r.list_tasks(query, now))

    async def list_after(self, query: TaskQuery, task_id: str, access: Access) -> TaskPage:
        """The page after the position an `after_task_id` cursor names (see
        `position_of`; `access` is what the cursor may name, `query.ranges`
        what the caller may list).

        A cursor in the one range listed is read by the page's own statement:
        one round trip. Elsewhere, the position is looked up on its own, then
        the page.
        """
        check_cursor("after_task_id", task_id)
        check_query(query)
        query = dataclasses.replace(query, statuses=distinct(query.statuses), types=distinct(query.types))
        if len(query.ranges) == 1:
            now = now_us()
            page = await self.store.read(lambda r: r.list_after_task(query, task_id, now))
            if page is not None:
                return page
        after = await self.position_of(task_id, access)
        return await self.list_tasks(dataclasses.replace(query, after=after))

    async def recent(self, scope: Scope, entity_id: str, window_us: int, limit: int) -> list[Task]:
        """An entity's tasks created in the last `window_us`, the latest status change first."""
        now = now_us()
        return await self.store.read(lambda r: r.by_status_change(scope, entity_id, now - window_us, now, limit))

    async def position_of(self, task_id: str, access: Access) -> tuple[int, str]:
        """The list position an `after_task_id` cursor names.

        A known task the caller may see continues from itself; an unknown
        time-based UUID (v1, v6, v7) is placed by the time inside it; anything
        else is refused.
        """
        check_cursor("after_task_id", task_id)
        known = await self.store.read(lambda r: r.task_position(task_id))
        if known is not None and access.allows(known[0], known[1]):
            return known[2]
        if is_canonical_uuid(task_id):
            at = uuid_time_us(parse_uuid(task_id))
            if at is not None:
                return (at, task_id)
        raise errors.InvalidArgument(f"{task_id} is neither a known task nor a time-based UUID")

    async def read_log(
        self,
        task_id: str,
        access: Access = EVERYTHING,
        *,
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
        _named(task_id)
        check_cursor("after_entry_id", after_entry_id)
        cap = self.limits.max_log_entries
        limit = cap if limit <= 0 else min(limit, cap)
        text = self.limits.max_answer_text
        now = now_us()

        def rx(reader: Snapshot) -> LogPage:
            task = _visible(reader.get_task(task_id, now), task_id, access)
            # Read from after_entry_id inclusive, to know whether it exists.
            if tail:
                read = reader.log_tail(task_id, after_entry_id, limit)
                has_more = False
            else:
                read = reader.log_forward(task_id, after_entry_id, limit + 2)
                has_more = len(read) > limit + (1 if read and read[0].entry_id == after_entry_id else 0)
            entries = [e for e in read if e.entry_id != after_entry_id]
            if not tail:
                entries = entries[:limit]
            kept = within_text(entries, text, newest=tail)
            if len(kept) < len(entries):
                entries, has_more = kept, True  # cut by size: the rest follows after the last one
            last = entries[-1].entry_id if entries else (read[-1].entry_id if read else None)
            return LogPage(task=task, entries=entries, last_entry_id=last, has_more=has_more)

        return await self.store.snapshot(rx)

    async def cancel(self, task_id: str, access: Access = EVERYTHING, *, force: bool = False) -> CancelResult:
        """Request a cancel. Answers the task as CANCELING (or as it was, when it
        already is: `requested` is then False). A worker that holds the task is
        told (heartbeat reply, watch stream) and confirms; when no worker holds
        it, the server finishes the cancel itself, in the same transaction (a
        process that dies between the two never leaves a task canceling with no
        one to finish it)."""

        def request(tx: Transaction) -> CancelResult:
            now = now_us()
            task = self._locked(tx, task_id, access, now)
            if task.status is Status.CANCELING and force and not task.cancel_forced and task.held(now):
                # A forced cancel after a plain one: the worker is told to stop even in its commit phase.
                forced = dataclasses.replace(task, updated_at=now, cancel_forced=True)
                saved = self._log_in_tx(tx, task, forced, "task cancel is forced", {"forced": True}, now)
                return CancelResult(saved, requested=True)
            if task.status in (Status.CANCELING, Status.CANCELED):
                # Asked already (or done: a retried cancel whose answer was lost): the task as it is.
                if task.status is Status.CANCELING and not task.held(now):
                    self._finish_cancel(tx, task_id, "task successfully canceled")
                return CancelResult(task, requested=False)
            lifecycle.check_cancel(task, force=force)
            fields: dict[str, object] = {"status": "canceling"}
            if force:
                fields["forced"] = True
            canceling = dataclasses.replace(
                task, status=Status.CANCELING, updated_at=now, status_changed_at=now, cancel_forced=force
            )
            saved = self._log_in_tx(tx, task, canceling, "task is canceling", fields, now)
            if not task.held(now):
                self._finish_cancel(tx, task_id, "task successfully canceled")
            return CancelResult(saved, requested=True)

        return await self._write(task_id, request)

    async def wait(self, task_id: str, timeout_us: int, access: Access = EVERYTHING) -> Task:
        """The task once it has ended, or as it is when the timeout (capped) passes."""
        deadline = time.monotonic() + min(max(timeout_us, 0), self.timing.max_wait) / SECOND
        with self.feed.subscription(task_id) as changed:
            while True:
                changed.clear()
                task = await self.get_task(task_id, access, fresh=True)
                left = deadline - time.monotonic()
                if task.status.terminal or left <= 0:
                    return task
                await self.feed.wait(changed, left)

    async def watch(self, task_id: str, lease_id: str, access: Access) -> AsyncIterator[Task]:
        """The task each time what its worker must know changes (a cancel, its end),
        and at least every keepalive; ends once the task has ended."""
        keepalive = self.timing.watch_keepalive / SECOND
        with self.feed.subscription(task_id) as changed:
            last: tuple[object, ...] | None = None
            while True:
                changed.clear()
                task = await self.get_task(task_id, access, fresh=True)
                if task.lease_id != lease_id and not task.status.terminal:
                    raise errors.FailedPrecondition(
                        f"the lease on task {task_id} is not held", reason=errors.LEASE_LOST
                    )
                seen = (task.status, task.cancel_forced)
                if seen != last:
                    last = seen
                    yield task
                if task.status.terminal:
                    return
                if not await self.feed.wait(changed, keepalive):
                    yield task

    # -- housekeeping ----------------------------------------------------------

    async def expire_leases(self, batch: int = 100) -> int:
        """End the tasks whose worker stopped heartbeating; returns how many it
        looked at. One task that fails is logged and passed over: it never stops
        the others."""
        before = now_us() - self.timing.lease_grace
        lapsed = await self.store.read(lambda r: r.lapsed_leases(before, batch))
        for task_id in lapsed:
            try:
                lost = await self._write(task_id, functools.partial(self._lose_worker, task_id=task_id))
            except errors.Unavailable:
                raise  # the store is gone: no other task would do better
            except Exception:
                log.exception("ending task %s, whose lease lapsed, failed; going on with the others", task_id)
            else:
                metrics.leases_expired(int(lost))
        return len(lapsed)

    async def sweep(self, batch: int = 500) -> int:
        """Delete expired tasks and their logs, in bounded batches; returns how many."""
        now = now_us()
        expired = await self.store.read(lambda r: r.expired_tasks(now, batch))
        if not expired:
            return 0

        def delete(tx: Transaction) -> int:
            # One sweeper at a time: another replica sweeping already does this work.
            return tx.delete_tasks(expired, now) if tx.try_exclusive(SWEEP_LOCK) else 0

        deleted = await self.store.write(delete)
        metrics.swept(deleted)
        return deleted

    # -- helpers ---------------------------------------------------------------

    def _lease(self, lease_us: int | None) -> int:
        t = self.timing
        return min(max(lease_us or t.lease_default, t.lease_min), t.lease_max)

    def _locked(self, tx: Transaction, task_id: str, access: Access, now: int) -> Task:
        task = tx.lock_task(task_id)
        if task is None or (task.expire_at is not None and task.expire_at <= now):
            raise errors.NotFound(f"no task {task_id}")
        return _visible(task, task_id, access)

    def _retention_of(self, task: Task) -> int | None:
        """How long a task stays readable once it ends: its own, or its scope's (µs; None: for ever)."""
        return task.retention_us if task.retention_us is not None else self.retention.for_scope(task.scope)

    def _ended(self, task: Task) -> Task:
        """A task that just became terminal: its lease ends, its retention starts."""
        assert task.completed_at is not None
        retention = self._retention_of(task)
        return dataclasses.replace(
            task,
            lease_id=None,
            lease_expires_at=None,
            expire_at=None if retention is None else task.completed_at + retention,
        )

    def _finish_cancel(self, tx: Transaction, task_id: str, message: str) -> bool:
        task = self._locked(tx, task_id, EVERYTHING, now_us())
        if task.status is not Status.CANCELING:
            return False
        now = now_us()
        canceled = self._ended(
            dataclasses.replace(
                task,
                status=Status.CANCELED,
                updated_at=now,
                status_changed_at=now,
                completed_at=now,
                error=TaskError(code="canceled", message="task was canceled"),
            )
        )
        self._log_in_tx(tx, task, canceled, message, {"status": "canceled"}, now)
        return True

    def _lose_worker(self, tx: Transaction, *, task_id: str) -> bool:
        """The lease lapsed: a running task fails, a canceling one is canceled."""
        try:
            task = self._locked(tx, task_id, EVERYTHING, now_us())
        except errors.NotFound:
            return False
        now = now_us()
        if task.held(now - self.timing.lease_grace) or task.lease_id is None or task.status.terminal:
            return False  # renewed meanwhile, or already ended
        expired = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime((task.lease_expires_at or now) // SECOND))
        worker = task.worker_name or "the worker"
        if task.status is Status.CANCELING:
            self._log_in_tx(
                tx,
                task,
                dataclasses.replace(task, status=Status.CANCELING),
                f"{worker} stopped heartbeating while canceling (lease expired at {expired})",
                {"status": "canceling", "lease_expired_at": expired},
                now,
            )
            return self._finish_cancel(tx, task_id, "task successfully canceled")
        message = f"worker lost: {worker} stopped heartbeating and its lease expired at {expired}"
        failed = self._ended(
            dataclasses.replace(
                task,
                status=Status.FAILED,
                updated_at=now,
                status_changed_at=now,
                completed_at=now,
                error=TaskError(code="lease_expired", message=message),
            )
        )
        self._log_in_tx(tx, task, failed, message, {"status": "failed", "error": "lease_expired"}, now)
        return True

    def _log_in_tx(
        self, tx: Transaction, before: Task, after: Task, message: str, fields: dict[str, object], now: int
    ) -> Task:
        """Save `after` with a server entry in its log. A full log (see `_allocate`)
        does not stop the change the entry tells of: it is saved without it."""
        try:
            made = self._allocate(before.last_entry_id, [NewLogEntry(message=message, fields=fields)], now)
        except errors.FailedPrecondition:
            return tx.save_task(before, after)
        tx.insert_entries(after.task_id, made)
        return tx.save_task(before, dataclasses.replace(after, last_entry_id=made[-1].entry_id))

    def _allocate(
        self, last: str | None, entries: Sequence[NewLogEntry], now: int, encoded: Sequence[str | None] = ()
    ) -> list[LogEntry]:
        """Entry ids, each greater than the one before, under the task's lock.
        (Caller-supplied ids leave room after them, so this always finds some;
        a log written before that rule that left none is full.)"""
        try:
            return self._allocated(last, entries, now, encoded)
        except ValueError as full:
            message = "this task's log has no room for another entry id"
            raise errors.FailedPrecondition(message, reason=errors.LOG_FULL) from full

    def _allocated(
        self, last: str | None, entries: Sequence[NewLogEntry], now: int, encoded: Sequence[str | None]
    ) -> list[LogEntry]:
        made: list[LogEntry] = []
        fresh: list[str] = []  # ids made ahead for a run of entries without their own
        for i, entry in enumerate(entries):
            if entry.entry_id:
                if last is not None and entry.entry_id <= last:
                    raise errors.InvalidArgument(
                        f"entry id {entry.entry_id} is not greater than the task's last entry id {last}"
                    )
                entry_id = entry.entry_id
            else:
                if not fresh:
                    run = next((j for j in range(i, len(entries)) if entries[j].entry_id), len(entries)) - i
                    fresh = ids_after(last, now // 1000, run)
                    fresh.reverse()
                entry_id = fresh.pop()
            made.append(
                LogEntry(
                    entry_id=entry_id,
                    timestamp=entry.timestamp if entry.timestamp is not None else now,
                    message=entry.message,
                    fields=entry.fields or None,
                    fields_json=encoded[i] if encoded else None,
                )
            )
            last = entry_id
        return made


def batch_digest(entries: Sequence[NewLogEntry], encoded: Sequence[str | None]) -> str:
    """What a batch holds, in 64 hex digits: a retry must send the same.
    Fields count by their JSON with keys sorted and only printable ASCII
    (other characters escaped), whatever order they came in: the text the
    append encoded already, where that is what it is (the common case)."""
    digest = hashlib.sha256()
    for entry, text in zip(entries, encoded, strict=True):
        if not entry.fields:
            fields = ""
        elif text is not None and not _BEYOND_PRINTABLE_ASCII.search(text) and _keys_in_order(entry.fields):
            fields = text
        else:
            fields = json.dumps(entry.fields, sort_keys=True, separators=(",", ":"), default=str)
        _digest_entry(digest, entry, fields)
    return digest.hexdigest()


# What json.dumps escapes by default and the store's text does not: with none
# of it, the two texts are the same, and so is the digest every version makes.
_BEYOND_PRINTABLE_ASCII = re.compile(r"[^ -~]")


def _digest_entry(digest: Any, entry: NewLogEntry, fields: str) -> None:
    for part in (entry.message, fields, str(entry.timestamp), entry.entry_id or ""):
        digest.update(part.encode())
        digest.update(b"\x00")


def _keys_in_order(value: object) -> bool:
    """Whether every object in `value` has its keys sorted (its JSON is then its sorted JSON)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            keys = list(item)
            if any(a > b for a, b in itertools.pairwise(keys)):
                return False
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


def _named(task_id: str) -> None:
    """No task has an id longer than the longest id, or one holding U+0000: NOT_FOUND at once."""
    if len(task_id) > BOUNDS.task_id or "\x00" in task_id:
        raise errors.NotFound(f"no task {task_id[: BOUNDS.task_id]!r}…")


def within_text(entries: list[LogEntry], limit: int, *, newest: bool = False) -> list[LogEntry]:
    """The first (or, `newest`, the last) entries whose text fits `limit`; at least one."""
    total = 0
    order = reversed(range(len(entries))) if newest else range(len(entries))
    kept = 0
    for i in order:
        total += entries[i].size
        if total > limit and kept:
            break
        kept += 1
    return entries[len(entries) - kept :] if newest else entries[:kept]


def _visible(task: Task | None, task_id: str, access: Access) -> Task:
    """The task, if the caller may see it; NOT_FOUND otherwise, never a hint that it exists."""
    if task is None or not access.allows(task.scope, task.entity_id):
        raise errors.NotFound(f"no task {task_id}")
    return task


def _check_lease(task: Task, lease_id: str | None, now: int) -> None:
    """A held task takes writes from its worker only; a lost worker's writes are refused."""
    if task.lease_id is None:
        if lease_id:
            raise errors.FailedPrecondition(f"no worker holds task {task.task_id}", reason=errors.LEASE_LOST)
        return
    if lease_id != task.lease_id:
        raise errors.FailedPrecondition(
            f"task {task.task_id} is held by {task.worker_name or 'a worker'}: write with its lease",
            reason=errors.LEASE_LOST,
        )
    if not task.held(now):
        raise errors.FailedPrecondition(f"the lease on task {task.task_id} has expired", reason=errors.LEASE_LOST)


def _already(task: Task, changes: TaskChanges) -> bool:
    """Whether an ended task is already what `changes` would end it as: a retried
    final update (its answer was lost) finds its work done."""
    if changes.status is not task.status:
        return False
    # A failure's retry carries its error again (a FAILED update needs one); a confirmed
    # cancel carries none (the server fills it in); a completion may carry its result.
    if changes.error != task.error and not (changes.error is None and task.status is Status.CANCELED):
        return False
    return changes.result is None or changes.result == task.result


def _same_creation(earlier: Task, new: Task) -> bool:
    fields = ("scope", "entity_id", "type", "parent_id", "node_name", "instance_id", "host_id", "retention_us")
    same = all(getattr(earlier, f) == getattr(new, f) for f in fields)
    return same and (new.request_id is None or earlier.request_id == new.request_id)


def _apply(task: Task, changes: TaskChanges, now: int) -> Task:
    """The task after an update, or a refusal."""
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
