"""PostgreSQL, the store to scale out on: several processes on several hosts.

- Reads and writes run through asyncpg itself, on two pools, with SQLAlchemy
  statements compiled once: a statement pays for one prepared statement's
  round trip, not for SQLAlchemy's execution machinery. Writes NOTIFY the
  task they changed at commit. SQLAlchemy's own engine only migrates and
  checks the schema.
- Other processes' writes are heard through LISTEN on a connection of its
  own, backed by a slow poll of the watched tasks' versions.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import asyncpg
from sqlalchemy import text
from sqlalchemy.dialects import postgresql as postgresql_dialect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from sqlalchemy.sql import Select
from sqlalchemy.sql.base import Executable
from sqlalchemy.util import await_only, greenlet_spawn

from tasktrail.core import errors, metrics
from tasktrail.core.model import LogEntry, Task
from tasktrail.core.storage import Conflict
from tasktrail.store import migrate as migrations
from tasktrail.store.base import Compiled, OutageLog, Store, StoreOptions, busy, full, unreachable
from tasktrail.store.statements import GET_TASK, ReadQueries, Row, WriteQueries, entry_row, task_from_row

log = logging.getLogger(__name__)
T = TypeVar("T")

# The channel on which every write names the task it changed.
CHANGES_CHANNEL = "tasktrail_changes"
# A notice is "<origin> <task id>": the writing process has told its own waiters
# already, so its listener skips its own notices.
ORIGIN = secrets.token_hex(8)
# With LISTEN doing the work, the versions poll only backs it up (seconds).
BACKUP_POLL_INTERVAL = 1.0
# Any fixed key serves: it only has to be the same in every process.
MIGRATE_LOCK = 0x7461736B74726C  # "tasktrl"

_DIALECT = postgresql_dialect.asyncpg.dialect()  # type: ignore[no-untyped-call]
PgConnection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


def compile_statement(stmt: Select[Any]) -> tuple[str, tuple[str, ...], dict[str, Any]]:
    """The SQL, its parameters in order, and the values bound in the statement
    itself (its defaults). A parameter with no value of its own must be given:
    leaving one out is a KeyError, not a NULL."""
    compiled = stmt.compile(dialect=_DIALECT, compile_kwargs={"render_postcompile": True})
    values = {name: value for name, value in compiled.params.items() if not compiled.binds[name].required}
    return str(compiled), tuple(compiled.positiontup or ()), values


def _arguments(names: Sequence[str], values: Mapping[str, Any], given: Mapping[str, Any]) -> list[Any]:
    """A compiled statement's arguments in order: those given, else its own values."""
    return [given[n] if n in given else values[n] for n in names]


class _Reader(ReadQueries):
    """Executes compiled SQLAlchemy statements with asyncpg itself, inside a
    greenlet (as SQLAlchemy's own asyncio layer does)."""

    __slots__ = ("_compiled", "_conn")

    def __init__(self, conn: PgConnection, compiled: Compiled[tuple[str, tuple[str, ...], dict[str, Any]]]) -> None:
        self._conn = conn
        self._compiled = compiled

    def rows(self, stmt: Select[Any], params: Mapping[str, Any]) -> Sequence[Row]:
        sql, names, values = self._compiled(stmt)
        args = _arguments(names, values, params)
        if any(type(a) is str and "\x00" in a for a in args):
            return []  # no text in PostgreSQL holds U+0000, and a statement given one fails: nothing matches
        return [tuple(r) for r in await_only(self._conn.fetch(sql, *args))]


class _Writes(WriteQueries):
    """Statements on a pooled asyncpg connection inside its transaction, from
    a greenlet (as for reads): the core's write functions stay plain functions."""

    __slots__ = ("_compiled", "_conn")
    dialect = "postgresql"

    def __init__(self, conn: PgConnection, compiled: Compiled[tuple[str, tuple[str, ...], dict[str, Any]]]) -> None:
        super().__init__()
        self._conn = conn
        self._compiled = compiled

    def _bound(self, stmt: Executable, params: Mapping[str, Any] | None) -> tuple[str, list[Any]]:
        sql, names, values = self._compiled(stmt)  # type: ignore[arg-type]
        return sql, _arguments(names, values, params or {})

    def rows(self, stmt: Executable, params: Mapping[str, Any] | None = None) -> Sequence[Row]:
        sql, args = self._bound(stmt, params)
        return [tuple(r) for r in await_only(self._conn.fetch(sql, *args))]

    def execute(self, stmt: Executable, params: Mapping[str, Any] | None = None) -> int:
        sql, args = self._bound(stmt, params)
        return _changed(await_only(self._conn.execute(sql, *args)))

    def execute_many(self, stmt: Executable, params: Sequence[Mapping[str, Any]]) -> None:
        if params:
            sql, names, values = self._compiled(stmt)  # type: ignore[arg-type]
            await_only(self._conn.executemany(sql, [_arguments(names, values, given) for given in params]))

    def _insert_entries(self, task_id: str, entries: Sequence[LogEntry]) -> None:
        # One statement for the batch, over one array per column.
        rows = [entry_row(task_id, e) for e in entries]
        columns = ([r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows], [r[4] for r in rows])
        await_only(self._conn.execute(_INSERT_ENTRIES, task_id, *columns))

    def try_exclusive(self, key: int) -> bool:
        """A transaction-level advisory lock: another process holding it does this job already."""
        return bool(await_only(self._conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", key)))


_INSERT_ENTRIES = (
    "INSERT INTO log_entries (task_id, entry_id, timestamp, message, fields) "
    "SELECT $1, * FROM unnest($2::text[], $3::bigint[], $4::text[], $5::text[])"
)
_NOTIFY = f"SELECT pg_notify('{CHANGES_CHANNEL}', $1)"


def _changed(status: str) -> int:
    """The rows a command changed, from its status ("UPDATE 3", "INSERT 0 1")."""
    last = status.rpartition(" ")[2]
    return int(last) if last.isdigit() else 0


def no_values(compiled: tuple[str, tuple[str, ...], dict[str, Any]]) -> bool:
    """Whether a compiled statement holds no values of its own: only such a
    statement is a shape worth keeping (one with values is made per call)."""
    return all(v is None for v in compiled[2].values())


# PostgreSQL's text cannot hold U+0000; a statement given one fails with this.
_NUL_IN_TEXT = "22021"  # character_not_in_repertoire


@contextlib.contextmanager
def _refusing_nul() -> Iterator[None]:
    """A write whose text holds U+0000 is refused (a 4xx in every dialect), not failed."""
    try:
        yield
    except (asyncpg.PostgresError, DBAPIError) as error:
        cause: BaseException | None = error
        while cause is not None and getattr(cause, "sqlstate", None) != _NUL_IN_TEXT:
            cause = getattr(cause, "orig", None) or cause.__cause__
        if cause is None:
            raise
        raise errors.InvalidArgument("text may not contain U+0000 (NUL)") from error


# The longest a call waits for a pooled connection (seconds): past it, the store is busy or gone.
ACQUIRE_TIMEOUT = 10.0
# Connections per process, at most: reads, write transactions (and one more LISTENs).
POOL_SIZES = {"read": 10, "write": 20}
# The store-failure metric's label for a call that found every connection in use.
BUSY = "STORE_BUSY"
# SQLSTATE classes and codes of a server that cannot serve now.
_GONE_STATES = ("08", "57P01", "57P02", "57P03", "53300")


def outage_of(exc: BaseException) -> str | None:
    """ "full", "gone", or None for a failure that is not the store's state."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        state = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
        if state == "53100":
            return "full"
        if isinstance(state, str) and state.startswith(_GONE_STATES):
            return "gone"
        if isinstance(cause, OSError | TimeoutError | asyncpg.InterfaceError | asyncpg.PostgresConnectionError):
            return "gone"
        if isinstance(cause, DBAPIError) and cause.connection_invalidated:
            return "gone"
        if isinstance(cause, RuntimeError) and "closed" in str(cause):
            return "gone"
        cause = getattr(cause, "orig", None) or cause.__cause__
    return None


def dsn(url: str) -> str:
    """The URL as asyncpg itself takes it."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _nothing_to_reset(_conn: asyncpg.Connection) -> None:
    """A connection goes back to its pool as it came: reads and writes set no
    session state, take only transaction-level locks (`try_exclusive`) and
    LISTEN elsewhere, and asyncpg ends any transaction itself. asyncpg's own
    reset would cost every call a second round trip (RESET ALL, UNLISTEN *,
    pg_advisory_unlock_all). A session-level SET or lock added here one day
    would outlive its call: it needs the reset back."""


def _on_lost(lost: asyncio.Event, _conn: object) -> None:
    lost.set()


class PostgresStore(Store):
    def __init__(self, url: str, options: StoreOptions) -> None:
        self.url = url
        self.options = options
        # "normal" durability: a commit is acknowledged before its WAL reaches the disk.
        self._commit = {"synchronous_commit": "on" if options.durability == "full" else "off"}
        # asyncpg's own pools (made on first use, on the running loop).
        self._pools: dict[str, asyncpg.Pool] = {}
        self._pool_made: asyncio.Lock | None = None
        self._closed = False
        self._compiled = Compiled(compile_statement)
        self._compiled_writes = Compiled(compile_statement, keep=no_values)
        self._outage_log = OutageLog()

    async def _pool(self, kind: str) -> asyncpg.Pool:
        """The pool of reads ("read") or of write transactions ("write")."""
        pool = self._pools.get(kind)
        if pool is not None:
            return pool
        self._pool_made = self._pool_made or asyncio.Lock()
        async with self._pool_made:  # one pool each, however many calls arrive first
            if kind not in self._pools and not self._closed:
                # Writes commit at the durability asked for; reads set nothing.
                settings = self._commit if kind == "write" else None
                made = await asyncpg.create_pool(
                    self.dsn(), min_size=1, max_size=POOL_SIZES[kind], reset=_nothing_to_reset, server_settings=settings
                )
                self._keep_or_close(kind, made)
        if kind not in self._pools:
            raise RuntimeError("the store is closed")
        return self._pools[kind]

    def _keep_or_close(self, kind: str, pool: asyncpg.Pool) -> None:
        if self._closed:  # closed while the pool was being made
            pool.terminate()
        else:
            self._pools[kind] = pool

    async def write(self, fn: Callable[[WriteQueries], T], changed: str | None = None) -> T:
        async def run(conn: PgConnection) -> tuple[T, _Writes]:
            async with conn.transaction():
                writes = _Writes(conn, self._compiled_writes)
                result = await greenlet_spawn(fn, writes)
                if changed is not None:
                    await conn.execute(_NOTIFY, f"{ORIGIN} {changed}")  # delivered at commit, to every listener
            return result, writes

        try:
            with _refusing_nul():
                result, writes = await self._on_pool("write", "write", run)
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise Conflict(str(exc)) from exc
        writes.tally()
        return result

    async def _on_pool(self, pool: str, kind: str, run: Callable[[PgConnection], Awaitable[T]]) -> T:
        """`run` on a connection of the read or write pool: a store away
        answers as an outage, and the call is timed as a store call of `kind`."""
        started = time.perf_counter()
        try:
            connections = await self._pool(pool)
            conn = await self._acquire(connections, POOL_SIZES[pool])
            try:
                result = await run(conn)
            finally:
                await connections.release(conn)
        except Exception as exc:
            if (failure := self._outage(exc)) is None:
                raise
            raise failure from exc
        metrics.store_call(kind, time.perf_counter() - started)
        return result

    @staticmethod
    async def _acquire(connections: asyncpg.Pool, size: int) -> asyncpg.pool.PoolConnectionProxy:
        """A pooled connection; busy where all `size` stayed in use for as
        long as a call waits (a connect that hung is an outage instead)."""
        try:
            return await connections.acquire(timeout=ACQUIRE_TIMEOUT)
        except TimeoutError:
            if connections.get_size() < size or connections.get_idle_size():
                raise
        metrics.store_failed(BUSY)
        raise busy()

    async def read(self, fn: Callable[[ReadQueries], T]) -> T:
        # One statement: no transaction, so no BEGIN/COMMIT round trips.
        async def run(conn: PgConnection) -> T:
            return await greenlet_spawn(fn, _Reader(conn, self._compiled))

        return await self._on_pool("read", "read", run)

    async def get_task(self, task_id: str, now: int) -> Task | None:
        # The polled read, straight through asyncpg: no greenlet to hop into
        # and out of, one prepared statement (asyncpg caches it per connection).
        if "\x00" in task_id:
            return None  # no text in PostgreSQL holds U+0000: no task has this id
        sql, names, _ = self._compiled(GET_TASK)
        args = {"task_id": task_id, "now": now}

        async def run(conn: PgConnection) -> Task | None:
            row = await conn.fetchrow(sql, *(args[n] for n in names))
            return None if row is None else task_from_row(tuple(row))

        return await self._on_pool("read", "read", run)

    async def snapshot(self, fn: Callable[[ReadQueries], T]) -> T:
        # Several statements see one snapshot.
        async def run(conn: PgConnection) -> T:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                return await greenlet_spawn(fn, _Reader(conn, self._compiled))

        return await self._on_pool("read", "snapshot", run)

    def _outage(self, exc: Exception) -> errors.CoreError | None:
        """What a failed statement means to a caller: no room left (53100), or a
        server that cannot be reached now (a connection refused, lost or shut
        down); anything else is raised as it is (a bug, answered INTERNAL).
        The pools make new connections at the next call: a server that comes
        back is used again, with no restart."""
        kind = outage_of(exc)
        if kind is None:
            return None
        self._outage_log(exc)
        failure = full() if kind == "full" else unreachable()
        metrics.store_failed(failure.reason)
        return failure

    def dsn(self) -> str:
        return dsn(self.url)

    # -- other processes' writes: LISTEN, and a slow poll behind it ------------------

    def change_poll_interval(self, configured: float) -> float:
        return BACKUP_POLL_INTERVAL

    def others_committed(self) -> bool:
        return True

    async def listen(self, heard: Callable[[str], None], resync: Callable[[], None]) -> None:
        """LISTEN on a connection of its own; made again when it breaks, and
        then every waiter looks again (a NOTIFY may have been missed)."""

        def notice(_conn: object, _pid: int, _channel: str, payload: object) -> None:
            origin, _, task_id = str(payload).partition(" ")
            if origin != ORIGIN:  # this process's own writes woke its waiters already
                heard(task_id)

        while True:
            lost = asyncio.Event()
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self.dsn())
                conn.add_termination_listener(functools.partial(_on_lost, lost))
                await conn.add_listener(CHANGES_CHANNEL, notice)
                resync()
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
            resync()
            await asyncio.sleep(1.0)

    async def check_schema(self) -> None:
        engine = create_async_engine(self.url, poolclass=NullPool)
        try:
            async with engine.connect() as conn:
                current = await conn.run_sync(migrations.current_revision)
        finally:
            await engine.dispose()
        migrations.check_revision(current)

    async def close(self) -> None:
        self._closed = True
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            try:
                await asyncio.wait_for(pool.close(), 5)
            except TimeoutError:
                pool.terminate()


async def migrate(url: str) -> None:
    """Bring the schema to the code's revision, one migrator at a time across hosts."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATE_LOCK})
            try:
                await conn.run_sync(migrations.upgrade)
                await conn.commit()
            finally:
                await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATE_LOCK})
                await conn.commit()
    finally:
        await engine.dispose()
