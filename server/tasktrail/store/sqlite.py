"""SQLite, the default store: one file, several processes.

- Writes run on one writer thread (SQLite has one writer at a time anyway),
  inside `BEGIN IMMEDIATE`, so nothing that fsyncs runs on the event loop.
- Reads run on the event loop through the standard `sqlite3` module, with
  SQLAlchemy statements compiled once to SQL: an indexed point read costs
  about 13 µs there, against about 650 µs through the async ORM (see
  docs/performance.md).
- Other processes' writes are seen by polling the watched tasks' versions,
  made only when `PRAGMA data_version` says another connection committed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, func, select
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.pool import NullPool
from sqlalchemy.sql import Select
from sqlalchemy.sql.base import Executable

from tasktrail.core import errors, metrics
from tasktrail.core.model import LogEntry
from tasktrail.core.storage import Conflict
from tasktrail.store import migrate as migrations
from tasktrail.store.base import Compiled, OutageLog, Store, StoreOptions, full, unreachable
from tasktrail.store.statements import ReadQueries, Row, WriteQueries, fields_text

T = TypeVar("T")


def sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise ValueError("tasktrail needs a SQLite file, not an in-memory database")
    return Path(database)


def _pragmas(conn: sqlite3.Connection, options: StoreOptions) -> None:
    conn.execute(f"PRAGMA busy_timeout = {int(options.sqlite_busy_timeout_ms)}")
    conn.execute(f"PRAGMA synchronous = {'FULL' if options.durability == 'full' else 'NORMAL'}")


def sqlite_engine(url: str, options: StoreOptions) -> Engine:
    """A pysqlite engine whose transactions start with BEGIN IMMEDIATE.

    Taking the write lock up front means two processes never deadlock trying
    to upgrade a read lock; the busy timeout makes the second one wait.
    """
    engine = create_engine(url, poolclass=NullPool if ":memory:" in url else None)

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
        _pragmas(dbapi_conn, options)

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def migrate(url: str) -> None:
    """Bring the file's schema to the code's revision, one process at a time."""
    path = sqlite_path(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(path.with_name(path.name + ".migrate-lock")):
        # WAL lets readers run beside the writer; it is a property of the file.
        with contextlib.closing(sqlite3.connect(path)) as raw:
            raw.execute("PRAGMA journal_mode = WAL")
        engine = sqlite_engine(url, StoreOptions())
        try:
            with engine.connect() as conn:
                migrations.upgrade(conn)
                conn.commit()
        finally:
            engine.dispose()


_NAMED = sqlite_dialect.dialect(paramstyle="named")


def compile_statement(stmt: Select[Any]) -> tuple[str, dict[str, Any], bool]:
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
    compiled = stmt.compile(dialect=_NAMED)
    return str(compiled), {k: v for k, v in compiled.params.items() if v is not None}, paged


class _Reader(ReadQueries):
    """Executes compiled SQLAlchemy statements with the stdlib driver."""

    __slots__ = ("_conn", "_sql")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._sql = Compiled(compile_statement)

    def rows(self, stmt: Select[Any], params: Mapping[str, Any]) -> Sequence[Row]:
        sql, defaults, paged = self._sql(stmt)
        cursor = self._conn.execute(sql, {**defaults, **params} if defaults else params)
        if not paged:
            return cursor.fetchall()
        [(rows,)] = cursor.fetchall()
        return [tuple(row) for row in json.loads(rows)]


# The whole batch as one statement over one JSON array. An executemany lets go
# of the GIL and takes it back once a row, and each time it waits for the event
# loop's thread to let go (up to the 5 ms switch interval while that thread is
# busy): one statement waits once.
_INSERT_ENTRIES = (
    "INSERT INTO log_entries (task_id, entry_id, timestamp, message, fields) "
    "SELECT ?, json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), "
    "json_extract(value, '$[3]') FROM json_each(?)"
)
_BATCH = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class _Writes(WriteQueries):
    """Statements on the writer thread's connection, inside BEGIN IMMEDIATE."""

    __slots__ = ("conn",)
    dialect = "sqlite"

    def __init__(self, conn: Connection) -> None:
        super().__init__()
        self.conn = conn

    def rows(self, stmt: Executable, params: Mapping[str, Any] | None = None) -> Sequence[Row]:
        return [tuple(r) for r in self.conn.execute(stmt, params)]

    def execute(self, stmt: Executable, params: Mapping[str, Any] | None = None) -> int:
        return int(self.conn.execute(stmt, params).rowcount)

    def execute_many(self, stmt: Executable, params: Sequence[Mapping[str, Any]]) -> None:
        if params:
            self.conn.execute(stmt, list(params))

    def _insert_entries(self, task_id: str, entries: Sequence[LogEntry]) -> None:
        # Each entry's fields are text already (encoded once, at the append).
        batch = _BATCH.encode([[e.entry_id, e.timestamp, e.message, fields_text(e)] for e in entries])
        self.conn.exec_driver_sql(_INSERT_ENTRIES, (task_id, batch))


class SqliteStore(Store):
    def __init__(self, url: str, options: StoreOptions) -> None:
        self.url = url
        self.path = sqlite_path(url)
        self.options = options
        self._engine = sqlite_engine(url, options)
        self._writer = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="tasktrail-writer")
        self._reader_conn: sqlite3.Connection | None = None
        self._reader: _Reader | None = None
        self._reader_thread: int | None = None
        self._probe: sqlite3.Connection | None = None
        self._data_version: int | None = None
        self._closed = False
        self._outage_log = OutageLog()

    def _open_reader(self) -> _Reader:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
        # A reader waits briefly, never long: it runs on the event loop.
        conn.execute("PRAGMA busy_timeout = 200")
        conn.execute("PRAGMA query_only = ON")
        # Map the file: a point read then copies no pages through read(2).
        conn.execute("PRAGMA mmap_size = 1073741824")
        self._reader_conn = conn
        self._reader_thread = threading.get_ident()
        self._reader = _Reader(conn)
        return self._reader

    async def write(self, fn: Callable[[WriteQueries], T], changed: str | None = None) -> T:
        def run() -> tuple[T, _Writes]:
            with self._engine.begin() as conn:
                writes = _Writes(conn)
                return fn(writes), writes

        started = time.perf_counter()
        try:
            result, writes = await asyncio.get_running_loop().run_in_executor(self._writer, run)
        except IntegrityError as exc:
            raise Conflict(str(exc.orig)) from exc
        except (sqlite3.Error, DBAPIError, RuntimeError) as exc:
            raise self._outage(exc) from exc
        metrics.store_call("write", time.perf_counter() - started)
        writes.tally()
        return result

    # Each sqlite3 call releases the GIL, and each release hands it to gRPC's
    # poller thread and back: a single-statement read makes no BEGIN/COMMIT.
    async def read(self, fn: Callable[[ReadQueries], T]) -> T:
        started = time.perf_counter()
        try:
            result = fn(self._current_reader())
        except (sqlite3.Error, RuntimeError) as exc:
            raise self._outage(exc) from exc
        metrics.store_call("read", time.perf_counter() - started)
        return result

    async def snapshot(self, fn: Callable[[ReadQueries], T]) -> T:
        started = time.perf_counter()
        try:
            result = self.snapshot_now(fn)
        except (sqlite3.Error, RuntimeError) as exc:
            raise self._outage(exc) from exc
        metrics.store_call("snapshot", time.perf_counter() - started)
        return result

    def _outage(self, exc: BaseException) -> errors.CoreError:
        """What a failed statement means to a caller: no room left (SQLITE_FULL),
        or a store that cannot do its work now (the file gone, a lock held past
        the busy timeout, an I/O error). The reader is made again at the next
        read: a file that comes back is read again."""
        self._outage_log(exc)
        self._drop_reader()
        cause = getattr(exc, "orig", None) or exc
        failure = full() if isinstance(cause, sqlite3.Error) and "full" in str(cause) else unreachable()
        metrics.store_failed(failure.reason)
        return failure

    def _drop_reader(self) -> None:
        if self._reader_conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._reader_conn.close()
        self._reader_conn = self._reader = None

    def _current_reader(self) -> _Reader:
        if self._closed:
            raise RuntimeError("the store is closed")
        reader = self._reader
        if reader is None or self._reader_thread != threading.get_ident():
            reader = self._open_reader()
        return reader

    def snapshot_now(self, fn: Callable[[ReadQueries], T]) -> T:
        """Run reads in one snapshot, on the calling (event-loop) thread."""
        reader = self._current_reader()
        conn = self._reader_conn
        assert conn is not None
        conn.execute("BEGIN")
        try:
            return fn(reader)
        finally:
            conn.execute("COMMIT")

    # -- other processes' writes: polled, only when the file says someone committed

    def change_poll_interval(self, configured: float) -> float:
        return configured

    def others_committed(self) -> bool:
        if self._probe is None:
            self._probe = sqlite3.connect(self.path, isolation_level=None)
        version = self._probe.execute("PRAGMA data_version").fetchone()[0]
        changed = version != self._data_version
        self._data_version = version
        return bool(changed)

    async def listen(self, heard: Callable[[str], None], resync: Callable[[], None]) -> None:
        """SQLite has no channel: the poll does it all."""

    async def check_schema(self) -> None:
        with contextlib.closing(sqlite3.connect(self.path)) as raw:
            rows = raw.execute("SELECT name FROM sqlite_master WHERE name = 'alembic_version'").fetchall()
            current = raw.execute("SELECT version_num FROM alembic_version").fetchone() if rows else None
        migrations.check_revision(current[0] if current else None)

    async def close(self) -> None:
        self._closed = True
        self._writer.shutdown(wait=True)
        self._engine.dispose()
        for conn in (self._reader_conn, self._probe):
            if conn is not None:
                conn.close()
        self._reader_conn = self._reader = self._probe = None
