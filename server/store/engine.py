"""How statements reach the database.

Transactions are plain functions of a SQLAlchemy `Connection` (writes) or a
`Reader` (reads), the same on every database. Only the way they are run
differs:

- SQLite: writes run on one writer thread (SQLite has one writer at a time
  anyway), inside `BEGIN IMMEDIATE`, so nothing that fsyncs runs on the event
  loop. Reads run on the event loop through the standard `sqlite3` module,
  with SQLAlchemy statements compiled once to SQL: an indexed point read costs
  about 13 µs there, against about 650 µs through the async ORM (see
  docs/performance.md).
- PostgreSQL: both run through SQLAlchemy's asyncio engine on asyncpg.
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import contextlib
import json
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import asyncpg
from sqlalchemy import Connection, Engine, create_engine, event, func, select, text
from sqlalchemy.dialects import postgresql as postgresql_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from sqlalchemy.sql import Select
from sqlalchemy.util import await_only, greenlet_spawn

from tasktrail import errors

T = TypeVar("T")
C = TypeVar("C")
Row = tuple[Any, ...]


class Reader(Protocol):
    """Runs read statements inside one snapshot."""

    def rows(self, stmt: Select[Any], params: Mapping[str, Any]) -> Sequence[Row]: ...


@dataclass(frozen=True, slots=True)
class StoreOptions:
    # SQLite durability: NORMAL survives a crash of the process (the WAL is in
    # the OS); FULL also survives a crash of the machine, at an fsync a commit.
    sqlite_synchronous: str = "NORMAL"
    sqlite_busy_timeout_ms: int = 10_000


class Store(abc.ABC):
    """One database, with a write path and a read path."""

    dialect_name: str
    url: str

    @abc.abstractmethod
    async def write(self, fn: Callable[[Connection], T], changed: str | None = None) -> T:
        """Run `fn` in a write transaction; commit when it returns. `changed`
        names the task it wrote, for other processes' change feeds (PostgreSQL
        tells them with NOTIFY at commit; SQLite's feeds see the file change)."""

    @abc.abstractmethod
    async def read(self, fn: Callable[[Reader], T]) -> T:
        """Run `fn`, which makes one statement (its own snapshot)."""

    @abc.abstractmethod
    async def snapshot(self, fn: Callable[[Reader], T]) -> T:
        """Run `fn`, which may make several statements, in one read snapshot."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections and threads."""


def sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise ValueError("tasktrail needs a SQLite file, not an in-memory database")
    return Path(database)


def _sqlite_pragmas(conn: sqlite3.Connection, options: StoreOptions) -> None:
    conn.execute(f"PRAGMA busy_timeout = {int(options.sqlite_busy_timeout_ms)}")
    conn.execute(f"PRAGMA synchronous = {options.sqlite_synchronous}")


def sqlite_engine(url: str, options: StoreOptions) -> Engine:
    """A pysqlite engine whose transactions start with BEGIN IMMEDIATE.

    Taking the write lock up front means two processes never deadlock trying
    to upgrade a read lock; the busy timeout makes the second one wait.
    """
    engine = create_engine(url, poolclass=NullPool if ":memory:" in url else None)

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
        _sqlite_pragmas(dbapi_conn, options)

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class _Compiled(Generic[C]):
    """Statements compiled once each, by the statement object (kept with its
    SQL, so that its id stays its own)."""

    __slots__ = ("_compile", "_items")

    def __init__(self, compile_one: Callable[[Select[Any]], C]) -> None:
        self._compile = compile_one
        self._items: dict[int, tuple[Select[Any], C]] = {}

    def __call__(self, stmt: Select[Any]) -> C:
        hit = self._items.get(id(stmt))
        if hit is None or hit[0] is not stmt:
            hit = self._items[id(stmt)] = (stmt, self._compile(stmt))
        return hit[1]


def _compile_sqlite(stmt: Select[Any]) -> tuple[str, dict[str, Any], bool]:
    """The SQL, the default parameters (such as OFFSET's 0), and whether the SQL
    answers its rows as one JSON array.

    The sqlite3 module lets go of the GIL and takes it back at every row, and each
    time it waits for whichever thread holds it (up to the 5 ms switch interval
    while the writer thread is busy). A page (a statement with a LIMIT) comes as
    one row, so it waits once; a point read is cheaper as it is."""
    paged = stmt._limit_clause is not None
    if paged:
        inner = stmt.subquery()
        stmt = select(func.json_group_array(func.json_array(*inner.c)))
    compiled = stmt.compile(dialect=_SQLITE_NAMED)
    return str(compiled), {k: v for k, v in compiled.params.items() if v is not None}, paged


class _SqliteReader:
    """Executes compiled SQLAlchemy statements with the stdlib driver."""

    __slots__ = ("_conn", "_sql")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._sql = _Compiled(_compile_sqlite)

    def rows(self, stmt: Select[Any], params: Mapping[str, Any]) -> Sequence[Row]:
        sql, defaults, paged = self._sql(stmt)
        cursor = self._conn.execute(sql, {**defaults, **params} if defaults else params)
        if not paged:
            return cursor.fetchall()
        [(rows,)] = cursor.fetchall()
        return [tuple(row) for row in json.loads(rows)]


_SQLITE_NAMED = sqlite_dialect.dialect(paramstyle="named")


class SqliteStore(Store):
    dialect_name = "sqlite"

    def __init__(self, url: str, options: StoreOptions) -> None:
        self.url = url
        self.path = sqlite_path(url)
        self.options = options
        self._engine = sqlite_engine(url, options)
        self._writer = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="tasktrail-writer")
        self._reader_conn: sqlite3.Connection | None = None
        self._reader: _SqliteReader | None = None
        self._reader_thread: int | None = None

    def _open_reader(self) -> _SqliteReader:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
        # A reader waits briefly, never long: it runs on the event loop.
        conn.execute("PRAGMA busy_timeout = 200")
        conn.execute("PRAGMA query_only = ON")
        # Map the file: a point read then copies no pages through read(2).
        conn.execute("PRAGMA mmap_size = 1073741824")
        self._reader_conn = conn
        self._reader_thread = threading.get_ident()
        self._reader = _SqliteReader(conn)
        return self._reader

    async def write(self, fn: Callable[[Connection], T], changed: str | None = None) -> T:
        def run() -> T:
            with self._engine.begin() as conn:
                return fn(conn)

        return await asyncio.get_running_loop().run_in_executor(self._writer, run)

    # Each sqlite3 call releases the GIL, and each release hands it to gRPC's
    # poller thread and back: a single-statement read makes no BEGIN/COMMIT.
    async def read(self, fn: Callable[[Reader], T]) -> T:
        return fn(self._current_reader())

    async def snapshot(self, fn: Callable[[Reader], T]) -> T:
        return self.snapshot_now(fn)

    def _current_reader(self) -> _SqliteReader:
        reader = self._reader
        if reader is None or self._reader_thread != threading.get_ident():
            reader = self._open_reader()
        return reader

    def snapshot_now(self, fn: Callable[[Reader], T]) -> T:
        """Run reads in one snapshot, on the calling (event-loop) thread."""
        reader = self._current_reader()
        conn = self._reader_conn
        assert conn is not None
        conn.execute("BEGIN")
        try:
            return fn(reader)
        finally:
            conn.execute("COMMIT")

    async def close(self) -> None:
        self._writer.shutdown(wait=True)
        self._engine.dispose()
        if self._reader_conn is not None:
            self._reader_conn.close()
            self._reader_conn = None
            self._reader = None


# The channel on which every write names the task it changed.
CHANGES_CHANNEL = "tasktrail_changes"
# A notice is "<origin> <task id>": the writing process has told its own waiters
# already, so its listener skips its own notices.
ORIGIN = secrets.token_hex(8)
_NOTIFY = text(f"SELECT pg_notify('{CHANGES_CHANNEL}', '{ORIGIN} ' || :task_id)")


_PG_DIALECT = postgresql_dialect.asyncpg.dialect()  # type: ignore[no-untyped-call]
PgConnection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


def _compile_pg(stmt: Select[Any]) -> tuple[str, tuple[str, ...], dict[str, Any]]:
    """The SQL, its parameters in order, and the values bound in the statement
    itself (its defaults)."""
    compiled = stmt.compile(dialect=_PG_DIALECT, compile_kwargs={"render_postcompile": True})
    return str(compiled), tuple(compiled.positiontup or ()), compiled.params


class _PgReader:
    """Executes compiled SQLAlchemy statements with asyncpg itself, inside a
    greenlet (as SQLAlchemy's own asyncio layer does): a read pays for one
    prepared statement's round trip, not for the ORM-core machinery."""

    __slots__ = ("_compiled", "_conn")

    def __init__(self, conn: PgConnection, compiled: _Compiled[tuple[str, tuple[str, ...], dict[str, Any]]]) -> None:
        self._conn = conn
        self._compiled = compiled

    def rows(self, stmt: Select[Any], params: Mapping[str, Any]) -> Sequence[Row]:
        sql, names, defaults = self._compiled(stmt)
        args = [params[n] if n in params else defaults[n] for n in names]
        if any(type(a) is str and "\x00" in a for a in args):
            return []  # no text in PostgreSQL holds U+0000, and a statement given one fails: nothing matches
        return [tuple(r) for r in await_only(self._conn.fetch(sql, *args))]


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


class PostgresStore(Store):
    dialect_name = "postgresql"

    def __init__(self, url: str, options: StoreOptions) -> None:
        self.url = url
        self.options = options
        self._engine: AsyncEngine = create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)
        # Reads: asyncpg's own pool (made on first use, on the running loop).
        self._pool: asyncpg.Pool | None = None
        self._pool_made: asyncio.Lock | None = None
        self._closed = False
        self._compiled = _Compiled(_compile_pg)

    async def _readers(self) -> asyncpg.Pool:
        if self._pool is None:
            self._pool_made = self._pool_made or asyncio.Lock()
            async with self._pool_made:  # one pool, however many reads arrive first
                if self._pool is None and not self._closed:
                    pool = await asyncpg.create_pool(self.dsn(), min_size=1, max_size=10)
                    self._keep_or_close(pool)
        if self._pool is None:
            raise RuntimeError("the store is closed")
        return self._pool

    def _keep_or_close(self, pool: asyncpg.Pool) -> None:
        if self._closed:  # closed while the pool was being made
            pool.terminate()
        else:
            self._pool = pool

    async def write(self, fn: Callable[[Connection], T], changed: str | None = None) -> T:
        def run(conn: Connection) -> T:
            result = fn(conn)
            if changed is not None:
                conn.execute(_NOTIFY, {"task_id": changed})  # delivered at commit, to every listener
            return result

        with _refusing_nul():
            async with self._engine.begin() as conn:
                return await conn.run_sync(run)

    async def read(self, fn: Callable[[Reader], T]) -> T:
        # One statement: no transaction, so no BEGIN/COMMIT round trips.
        async with (await self._readers()).acquire() as conn:
            return await greenlet_spawn(fn, _PgReader(conn, self._compiled))

    async def snapshot(self, fn: Callable[[Reader], T]) -> T:
        # Several statements see one snapshot.
        async with (
            (await self._readers()).acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            return await greenlet_spawn(fn, _PgReader(conn, self._compiled))

    def dsn(self) -> str:
        """The URL as asyncpg itself takes it."""
        return make_url(self.url).set(drivername="postgresql").render_as_string(hide_password=False)

    @property
    def async_engine(self) -> AsyncEngine:
        return self._engine

    async def close(self) -> None:
        self._closed = True
        if self._pool is not None:
            try:
                await asyncio.wait_for(self._pool.close(), 5)
            except TimeoutError:
                self._pool.terminate()
            self._pool = None
        await self._engine.dispose()


def normalize_url(url: str) -> str:
    """postgresql:// means asyncpg; sqlite URLs stay as they are."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() != "asyncpg":
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    return url


def open_store(url: str, options: StoreOptions | None = None) -> Store:
    url = normalize_url(url)
    options = options or StoreOptions()
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        return SqliteStore(url, options)
    if backend == "postgresql":
        return PostgresStore(url, options)
    raise ValueError(f"unsupported database: {backend} (use sqlite:/// or postgresql+asyncpg://)")
