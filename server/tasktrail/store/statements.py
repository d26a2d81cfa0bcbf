"""Statements on tasks and log entries, and rows to model objects: the
core's `Snapshot` and `Transaction`, in SQL that runs unchanged on SQLite and
PostgreSQL (each backend overrides the few methods it does its own way).

Read statements are built once per shape (cached) so that the read paths
compile each to SQL once. Every list is a keyset page on an index in
(created_at, task_id) order: no OFFSET, no COUNT.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import heapq
import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import (
    Select,
    Update,
    and_,
    bindparam,
    delete,
    insert,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.elements import ColumnElement

from tasktrail.core import errors, metrics
from tasktrail.core.model import (
    LogEntry,
    Progress,
    Result,
    Scope,
    Status,
    Task,
    TaskError,
    TaskPage,
    TaskQuery,
)
from tasktrail.store.schema import log_entries, tasks

Row = tuple[Any, ...]

TASK_COLUMNS = (
    tasks.c.task_id,
    tasks.c.scope,
    tasks.c.entity_id,
    tasks.c.type,
    tasks.c.status,
    tasks.c.created_at,
    tasks.c.updated_at,
    tasks.c.status_changed_at,
    tasks.c.parent_id,
    tasks.c.node_name,
    tasks.c.instance_id,
    tasks.c.host_id,
    tasks.c.started_at,
    tasks.c.completed_at,
    tasks.c.error,
    tasks.c.progress,
    tasks.c.result,
    tasks.c.in_commit_phase,
    tasks.c.worker_name,
    tasks.c.expire_at,
    tasks.c.last_entry_id,
    tasks.c.request_id,
    tasks.c.lease_id,
    tasks.c.lease_expires_at,
    tasks.c.lease_duration_us,
    tasks.c.cancel_forced,
    tasks.c.retention_us,
    tasks.c.version,
    tasks.c.last_append_id,
    tasks.c.last_append_ids,
    tasks.c.last_append_digest,
)

_SCOPES = {s.value: s for s in Scope}
_STATUSES = {s.value: s for s in Status}


def _json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def dump_json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def task_from_row(row: Row) -> Task:
    error, progress, result = row[14], row[15], row[16]
    return Task(
        task_id=row[0],
        scope=_SCOPES[row[1]],
        entity_id=row[2],
        type=row[3],
        status=_STATUSES[row[4]],
        created_at=row[5],
        updated_at=row[6],
        status_changed_at=row[7],
        parent_id=row[8],
        node_name=row[9],
        instance_id=row[10],
        host_id=row[11],
        started_at=row[12],
        completed_at=row[13],
        error=None if error is None else TaskError.from_json(json.loads(error)),
        progress=None if progress is None else Progress.from_json(json.loads(progress)),
        result=None if result is None else Result.from_json(json.loads(result)),
        in_commit_phase=bool(row[17]),
        worker_name=row[18],
        expire_at=row[19],
        last_entry_id=row[20],
        request_id=row[21],
        lease_id=row[22],
        lease_expires_at=row[23],
        lease_duration_us=row[24],
        cancel_forced=bool(row[25]),
        retention_us=row[26],
        version=row[27],
        last_append_id=row[28],
        last_append_ids=tuple(json.loads(row[29])) if row[29] else (),
        last_append_digest=row[30],
    )


def task_values(task: Task) -> dict[str, Any]:
    """A task as column values."""
    return {
        "task_id": task.task_id,
        "scope": task.scope.value,
        "entity_id": task.entity_id,
        "type": task.type,
        "status": task.status.value,
        "created_at": task.created_at,
        "updated_at": task.updated_at,
        "status_changed_at": task.status_changed_at,
        "parent_id": task.parent_id,
        "node_name": task.node_name,
        "instance_id": task.instance_id,
        "host_id": task.host_id,
        "started_at": task.started_at,
        "completed_at": task.completed_at,
        "error": None if task.error is None else dump_json(task.error.to_json()),
        "progress": None if task.progress is None else dump_json(task.progress.to_json()),
        "result": None if task.result is None else dump_json(task.result.to_json()),
        "in_commit_phase": task.in_commit_phase,
        "worker_name": task.worker_name,
        "expire_at": task.expire_at,
        "last_entry_id": task.last_entry_id,
        "request_id": task.request_id,
        "lease_id": task.lease_id,
        "lease_expires_at": task.lease_expires_at,
        "lease_duration_us": task.lease_duration_us,
        "cancel_forced": task.cancel_forced,
        "retention_us": task.retention_us,
        "version": task.version,
        "last_append_id": task.last_append_id,
        "last_append_ids": dump_json(list(task.last_append_ids)) if task.last_append_ids else None,
        "last_append_digest": task.last_append_digest,
    }


def _alive() -> ColumnElement[bool]:
    return or_(tasks.c.expire_at.is_(None), tasks.c.expire_at > bindparam("now"))


# -- reads --------------------------------------------------------------------

GET_TASK = select(*TASK_COLUMNS).where(tasks.c.task_id == bindparam("task_id"), _alive())
_TASK_POSITION = select(tasks.c.scope, tasks.c.entity_id, tasks.c.created_at, tasks.c.task_id).where(
    tasks.c.task_id == bindparam("task_id")
)


# Where a page starts: at the list's start, after a position (created_at,
# task_id), or after the task an id names, read by the statement itself.
AFTERS = ("", "position", "task")


@functools.lru_cache(maxsize=256)
def _list_statement(with_entity: bool, n_statuses: int, n_types: int, descending: bool, after: str) -> Select[Any]:
    conditions: list[ColumnElement[bool]] = [tasks.c.scope == bindparam("scope"), _alive()]
    if with_entity:
        conditions.append(tasks.c.entity_id == bindparam("entity_id"))
    if n_statuses:
        conditions.append(tasks.c.status.in_([bindparam(f"status_{i}") for i in range(n_statuses)]))
    if n_types:
        conditions.append(tasks.c.type.in_([bindparam(f"type_{i}") for i in range(n_types)]))
    if after:
        position = tuple_(tasks.c.created_at, tasks.c.task_id)
        if after == "task":
            # The cursor task's own position, when it lies in this range (expired
            # or not); when it does not, NULL, which no row follows. The cursor's
            # own row comes first (when alive): it tells that the cursor was found.
            cursor_task = tasks.alias("cursor_task")
            in_range = [cursor_task.c.task_id == bindparam("after_task_id"), cursor_task.c.scope == bindparam("scope")]
            if with_entity:
                in_range.append(cursor_task.c.entity_id == bindparam("entity_id"))
            created_at = select(cursor_task.c.created_at).where(*in_range).scalar_subquery()
            cursor = tuple_(created_at, bindparam("after_task_id"))
            conditions.append(position <= cursor if descending else position >= cursor)
        else:
            cursor = tuple_(bindparam("after_created_at"), bindparam("after_task_id"))
            conditions.append(position < cursor if descending else position > cursor)
    if descending:
        order = (tasks.c.created_at.desc(), tasks.c.task_id.desc())
    else:
        order = (tasks.c.created_at.asc(), tasks.c.task_id.asc())
    return select(*TASK_COLUMNS).where(and_(*conditions)).order_by(*order).limit(bindparam("limit"))


_BY_STATUS_CHANGE = (
    select(*TASK_COLUMNS)
    .where(
        tasks.c.scope == bindparam("scope"),
        tasks.c.entity_id == bindparam("entity_id"),
        tasks.c.created_at >= bindparam("since"),
        _alive(),
    )
    .order_by(tasks.c.status_changed_at.desc(), tasks.c.task_id.desc())
    .limit(bindparam("limit"))
)


@functools.lru_cache(maxsize=64)
def _versions_statement(n: int) -> Select[Any]:
    return select(tasks.c.task_id, tasks.c.version).where(tasks.c.task_id.in_([bindparam(f"id_{i}") for i in range(n)]))


_LAPSED = (
    select(tasks.c.task_id)
    .where(tasks.c.lease_expires_at <= bindparam("now"))
    .order_by(tasks.c.lease_expires_at)
    .limit(bindparam("limit"))
)
_EXPIRED = (
    select(tasks.c.task_id)
    .where(tasks.c.expire_at <= bindparam("now"))
    .order_by(tasks.c.expire_at)
    .limit(bindparam("limit"))
)

_LOG_COLUMNS = (log_entries.c.entry_id, log_entries.c.timestamp, log_entries.c.message, log_entries.c.fields)
_LOG_FORWARD = (
    select(*_LOG_COLUMNS)
    .where(log_entries.c.task_id == bindparam("task_id"))
    .order_by(log_entries.c.entry_id.asc())
    .limit(bindparam("limit"))
)
_LOG_FORWARD_FROM = (
    select(*_LOG_COLUMNS)
    .where(log_entries.c.task_id == bindparam("task_id"), log_entries.c.entry_id >= bindparam("from_id"))
    .order_by(log_entries.c.entry_id.asc())
    .limit(bindparam("limit"))
)
_LOG_AFTER = (
    select(*_LOG_COLUMNS)
    .where(log_entries.c.task_id == bindparam("task_id"), log_entries.c.entry_id > bindparam("after"))
    .order_by(log_entries.c.entry_id.asc())
    .limit(bindparam("limit"))
)
_LOG_TAIL = (
    select(*_LOG_COLUMNS)
    .where(log_entries.c.task_id == bindparam("task_id"))
    .order_by(log_entries.c.entry_id.desc())
    .limit(bindparam("limit"))
)
_LOG_TAIL_FROM = (
    select(*_LOG_COLUMNS)
    .where(log_entries.c.task_id == bindparam("task_id"), log_entries.c.entry_id >= bindparam("from_id"))
    .order_by(log_entries.c.entry_id.desc())
    .limit(bindparam("limit"))
)

# Every read statement, by name: the query-plan tests check each.
READS: dict[str, Select[Any]] = {
    "get_task": GET_TASK,
    "task_position": _TASK_POSITION,
    "by_status_change": _BY_STATUS_CHANGE,
    "lapsed": _LAPSED,
    "expired": _EXPIRED,
    "log_forward": _LOG_FORWARD,
    "log_forward_from": _LOG_FORWARD_FROM,
    "log_after": _LOG_AFTER,
    "log_tail": _LOG_TAIL,
    "log_tail_from": _LOG_TAIL_FROM,
}


def _storable_query(query: TaskQuery) -> TaskQuery | None:
    """The query without types that hold U+0000; None where no type is left.
    No type holds U+0000 (see _storable), and PostgreSQL could not even compare
    one: it leaves the filter, and a filter of nothing else matches no task."""
    types = tuple(t for t in query.types if "\x00" not in t)
    if len(types) == len(query.types):
        return query
    return dataclasses.replace(query, types=types) if types else None


def list_statement(with_entity: bool, n_statuses: int, n_types: int, descending: bool, after: str) -> Select[Any]:
    """The statement of one range of a task list (the query-plan tests check each shape)."""
    return _list_statement(with_entity, n_statuses, n_types, descending, after)


def _entry(row: Row) -> LogEntry:
    fields = row[3]
    size = len(row[2]) + (len(fields) if fields else 0)
    return LogEntry(entry_id=row[0], timestamp=row[1], message=row[2], fields=_json(fields), size=size)


class ReadQueries(abc.ABC):
    """The core's `Snapshot` over a backend's way of running a statement."""

    __slots__ = ()

    @abc.abstractmethod
    def rows(self, stmt: Select[Any], params: Mapping[str, Any]) -> Sequence[Row]:
        """The rows of one read statement."""

    def get_task(self, task_id: str, now: int) -> Task | None:
        rows = self.rows(GET_TASK, {"task_id": task_id, "now": now})
        return task_from_row(rows[0]) if rows else None

    def task_position(self, task_id: str) -> tuple[Scope, str, tuple[int, str]] | None:
        rows = self.rows(_TASK_POSITION, {"task_id": task_id})
        return (_SCOPES[rows[0][0]], rows[0][1], (rows[0][2], rows[0][3])) if rows else None

    def _list_range(
        self, query: TaskQuery, scope: Scope, entity_id: str | None, now: int, limit: int, after_task_id: str | None
    ) -> list[Task]:
        after = "task" if after_task_id is not None else "position" if query.after is not None else ""
        stmt = _list_statement(entity_id is not None, len(query.statuses), len(query.types), query.descending, after)
        params: dict[str, Any] = {"scope": scope.value, "now": now, "limit": limit}
        if entity_id is not None:
            params["entity_id"] = entity_id
        for i, status in enumerate(query.statuses):
            params[f"status_{i}"] = status.value
        for i, type_ in enumerate(query.types):
            params[f"type_{i}"] = type_
        if after_task_id is not None:
            params["after_task_id"] = after_task_id
        elif query.after is not None:
            params["after_created_at"], params["after_task_id"] = query.after
        return [task_from_row(r) for r in self.rows(stmt, params)]

    def list_tasks(self, query: TaskQuery, now: int) -> TaskPage:
        """One page. Several ranges (scopes, entities) are merged from one index range each."""
        storable = _storable_query(query)
        if storable is None:
            return TaskPage(tasks=[], has_more=False)
        want = storable.limit + 1  # one more tells whether more follow
        per_range = [self._list_range(storable, scope, entity, now, want, None) for scope, entity in storable.ranges]
        if not per_range:
            merged: list[Task] = []
        elif len(per_range) == 1:
            merged = per_range[0]
        else:
            merged = list(heapq.merge(*per_range, key=lambda t: t.position, reverse=query.descending))[:want]
        return TaskPage(tasks=merged[: query.limit], has_more=len(merged) > query.limit)

    def list_after_task(self, query: TaskQuery, task_id: str, now: int) -> TaskPage | None:
        """The page after the task `task_id`, where it lies in the query's one
        range: one statement reads the cursor's position and the page, with
        the cursor's own row first. None where that cannot tell the page: the
        task is elsewhere (or nowhere), or it is expired or filtered out and
        nothing follows it."""
        storable = _storable_query(query)
        if storable is None:
            return TaskPage(tasks=[], has_more=False)
        if len(storable.ranges) != 1 or "\x00" in task_id:
            return None
        [(scope, entity)] = storable.ranges
        rows = self._list_range(storable, scope, entity, now, storable.limit + 2, task_id)
        if rows and rows[0].task_id == task_id:
            rows = rows[1:]
        elif not rows:
            return None
        return TaskPage(tasks=rows[: storable.limit], has_more=len(rows) > storable.limit)

    def by_status_change(self, scope: Scope, entity_id: str, since: int, now: int, limit: int) -> list[Task]:
        params = {"scope": scope.value, "entity_id": entity_id, "since": since, "now": now, "limit": limit}
        return [task_from_row(r) for r in self.rows(_BY_STATUS_CHANGE, params)]

    def task_versions(self, task_ids: Sequence[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for start in range(0, len(task_ids), 256):
            chunk = task_ids[start : start + 256]
            stmt = _versions_statement(len(chunk))
            out.update({r[0]: r[1] for r in self.rows(stmt, {f"id_{i}": t for i, t in enumerate(chunk)})})
        return out

    def lapsed_leases(self, now: int, limit: int) -> list[str]:
        return [r[0] for r in self.rows(_LAPSED, {"now": now, "limit": limit})]

    def expired_tasks(self, now: int, limit: int) -> list[str]:
        return [r[0] for r in self.rows(_EXPIRED, {"now": now, "limit": limit})]

    def log_forward(self, task_id: str, from_id: str | None, limit: int) -> list[LogEntry]:
        if from_id is None:
            rows = self.rows(_LOG_FORWARD, {"task_id": task_id, "limit": limit})
        else:
            rows = self.rows(_LOG_FORWARD_FROM, {"task_id": task_id, "from_id": from_id, "limit": limit})
        return [_entry(r) for r in rows]

    def log_forward_after(self, task_id: str, after: str | None, limit: int) -> list[LogEntry]:
        if after is None:
            return self.log_forward(task_id, None, limit)
        return [_entry(r) for r in self.rows(_LOG_AFTER, {"task_id": task_id, "after": after, "limit": limit})]

    def log_tail(self, task_id: str, from_id: str | None, limit: int) -> list[LogEntry]:
        if from_id is None:
            rows = self.rows(_LOG_TAIL, {"task_id": task_id, "limit": limit})
        else:
            rows = self.rows(_LOG_TAIL_FROM, {"task_id": task_id, "from_id": from_id, "limit": limit})
        return [_entry(r) for r in reversed(rows)]


# -- writes (inside a write transaction) -----------------------------------------

_BY_REQUEST_ID = select(*TASK_COLUMNS).where(
    tasks.c.scope == bindparam("scope"),
    tasks.c.entity_id == bindparam("entity_id"),
    tasks.c.request_id == bindparam("request_id"),
)
_LOCK_TASK = select(*TASK_COLUMNS).where(tasks.c.task_id == bindparam("task_id")).with_for_update()


def _storable(values: dict[str, Any]) -> dict[str, Any]:
    """PostgreSQL's text cannot hold U+0000, so no store takes it: the same
    request gets the same answer on SQLite and on PostgreSQL. (JSON columns
    hold it escaped.)"""
    for name, value in values.items():
        if type(value) is str and "\x00" in value:
            raise errors.InvalidArgument(f"{name} may not contain U+0000 (NUL)")
    return values


class WriteQueries(abc.ABC):
    """The core's `Transaction` (and the identity tables' writes) over a
    backend's way of running a statement inside a write transaction. It notes
    what its writes did (tasks made and ended, entries appended), for the
    metrics once the transaction has committed (`tally`)."""

    __slots__ = ("characters", "created", "ended", "entries")
    # The SQL dialect the statements run on: "sqlite" or "postgresql".
    dialect = ""

    def __init__(self) -> None:
        self.created: list[Task] = []
        self.ended: list[Task] = []
        self.entries = self.characters = 0

    @abc.abstractmethod
    def rows(self, stmt: Executable, params: Mapping[str, Any] | None = None) -> Sequence[Row]:
        """The rows of one statement (a SELECT, perhaps FOR UPDATE, or one with RETURNING)."""

    @abc.abstractmethod
    def execute(self, stmt: Executable, params: Mapping[str, Any] | None = None) -> int:
        """Run one statement that returns no rows; how many rows it changed."""

    @abc.abstractmethod
    def execute_many(self, stmt: Executable, params: Sequence[Mapping[str, Any]]) -> None:
        """Run one statement once for each set of parameters."""

    @abc.abstractmethod
    def _insert_entries(self, task_id: str, entries: Sequence[LogEntry]) -> None:
        """Insert a batch of entries: the hot write path, each backend's fastest way."""

    def tally(self) -> None:
        """Count what this committed transaction did."""
        for task in self.created:
            metrics.task_created(task.scope.value, task.type)
        for task in self.ended:
            metrics.task_ended(task.scope.value, task.type, task.status.value)
        if self.entries:
            metrics.appended(self.entries, self.characters)

    def lock_task(self, task_id: str) -> Task | None:
        """A task under its row lock (FOR UPDATE on PostgreSQL; SQLite's
        BEGIN IMMEDIATE already holds the database's write lock)."""
        if "\x00" in task_id:
            return None  # no id holds U+0000 (see _storable)
        rows = self.rows(_LOCK_TASK, {"task_id": task_id})
        return task_from_row(tuple(rows[0])) if rows else None

    def task_by_request_id(self, scope: Scope, entity_id: str, request_id: str) -> Task | None:
        params = {"scope": scope.value, "entity_id": entity_id, "request_id": request_id}
        rows = self.rows(_BY_REQUEST_ID, params)
        return task_from_row(tuple(rows[0])) if rows else None

    def insert_task(self, task: Task) -> None:
        self.execute(_INSERT_TASK, _insert_params(task))
        self.created.append(task)

    def insert_tasks(self, made: Sequence[Task]) -> None:
        """Many tasks at once (a restore, a benchmark's seed)."""
        self.execute_many(_INSERT_TASK, [_insert_params(t) for t in made])
        self.created.extend(made)

    def save_task(self, before: Task, after: Task) -> Task:
        """Write the columns that changed, and bump the version; returns the task as saved."""
        old, new = task_values(before), task_values(after)
        changed = _storable({k: v for k, v in new.items() if old[k] != v and k != "version"})
        if not changed:
            return before
        saved = dataclasses.replace(after, version=before.version + 1)
        changed["version"] = saved.version
        params = {f"v_{k}": v for k, v in changed.items()}
        params["w_task_id"] = after.task_id
        self.execute(_update_statement(tuple(changed)), params)
        if after.status.terminal and not before.status.terminal:
            self.ended.append(saved)
        return saved

    def insert_entries(self, task_id: str, entries: Sequence[LogEntry]) -> None:
        if entries:
            self.entries += len(entries)
            self.characters += sum(len(e.message) for e in entries)
            self._insert_entries(task_id, entries)

    def delete_tasks(self, task_ids: Sequence[str], now: int) -> int:
        """Delete these tasks and their logs, if they are still expired. Rows
        another transaction holds locked are left for the next sweep: a task
        whose retention was just extended is never deleted."""
        deleted = 0
        for start in range(0, len(task_ids), _SWEEP_CHUNK):
            still = {**_sweep_ids(task_ids[start : start + _SWEEP_CHUNK]), "now": now}
            gone = list(dict.fromkeys(r[0] for r in self.rows(_STILL_EXPIRED, still)))
            if gone:
                self.execute(_DELETE_ENTRIES, _sweep_ids(gone))
                self.execute(_DELETE_TASKS, _sweep_ids(gone))
            deleted += len(gone)
        return deleted

    def try_exclusive(self, key: int) -> bool:
        """One process at a time: where every write transaction is the only one
        (SQLite's write lock), always."""
        return True


def _insert_params(task: Task) -> dict[str, Any]:
    return {f"v_{k}": v for k, v in _storable(task_values(task)).items()}


_INSERT_TASK = insert(tasks).values({c.name: bindparam(f"v_{c.name}") for c in TASK_COLUMNS})


@functools.lru_cache(maxsize=256)
def _update_statement(columns: tuple[str, ...]) -> Update:
    """UPDATE of these columns of one task (the sets of columns a change makes are few)."""
    values: dict[str, Any] = {name: bindparam(f"v_{name}") for name in columns}
    return update(tasks).where(tasks.c.task_id == bindparam("w_task_id")).values(values)


_SWEEP_CHUNK = 100
_SWEEP_IDS: list[Any] = [bindparam(f"id_{i}") for i in range(_SWEEP_CHUNK)]
_STILL_EXPIRED = (
    select(tasks.c.task_id)
    .where(tasks.c.task_id.in_(_SWEEP_IDS), tasks.c.expire_at <= bindparam("now"))
    .with_for_update(skip_locked=True)
)
_DELETE_ENTRIES = delete(log_entries).where(log_entries.c.task_id.in_(_SWEEP_IDS))
_DELETE_TASKS = delete(tasks).where(tasks.c.task_id.in_(_SWEEP_IDS))


def _sweep_ids(ids: Sequence[str]) -> dict[str, str]:
    """Up to _SWEEP_CHUNK ids as the sweep statements' parameters, padded with
    the first (a repeated id matches nothing more): one shape, compiled once."""
    padded = [*ids, *[ids[0]] * (_SWEEP_CHUNK - len(ids))]
    return {f"id_{i}": task_id for i, task_id in enumerate(padded)}


def entry_row(task_id: str, entry: LogEntry) -> tuple[str, str, int, str, str | None]:
    return (task_id, entry.entry_id, entry.timestamp, entry.message, fields_text(entry))


def fields_text(entry: LogEntry) -> str | None:
    """An entry's fields as the store keeps them: the append's own JSON text, where it made one."""
    if not entry.fields:
        return None
    return entry.fields_json if entry.fields_json is not None else dump_json(entry.fields)
