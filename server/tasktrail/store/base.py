"""What every backend of the store shares: the `Store` base, its options, and
a cache of compiled statements.

Transactions are plain functions of the core's `Transaction` (writes) or
`Snapshot` (reads), the same on every database; only the way a backend runs
them differs (`sqlite.py`, `postgres.py`).
"""

from __future__ import annotations

import abc
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy.engine import make_url
from sqlalchemy.sql import Select

from tasktrail.core import errors
from tasktrail.core.model import Task
from tasktrail.store.statements import ReadQueries, WriteQueries

log = logging.getLogger("tasktrail.store")

T = TypeVar("T")
C = TypeVar("C")


# What an acknowledged write survives: "full", a crash of the machine (a power
# loss) too, at an fsync a commit; "normal", a crash of any process (SQLite's
# WAL is in the OS's cache; PostgreSQL's synchronous_commit is off).
DURABILITY = ("full", "normal")


@dataclass(frozen=True, slots=True)
class StoreOptions:
    durability: str = "full"
    sqlite_busy_timeout_ms: int = 10_000


class Store(abc.ABC):
    """One database, with a write path and a read path: the core's `TaskStore`."""

    url: str

    @abc.abstractmethod
    async def write(self, fn: Callable[[WriteQueries], T], changed: str | None = None) -> T:
        """Run `fn` in a write transaction; commit when it returns. `changed`
        names the task it wrote, for other processes' change feeds."""

    @abc.abstractmethod
    async def read(self, fn: Callable[[ReadQueries], T]) -> T:
        """Run `fn`, which makes one statement (its own snapshot)."""

    @abc.abstractmethod
    async def snapshot(self, fn: Callable[[ReadQueries], T]) -> T:
        """Run `fn`, which may make several statements, in one read snapshot."""

    async def get_task(self, task_id: str, now: int) -> Task | None:
        """One task by id, unless it expired by `now`: the read a polling client
        makes. A backend may answer it by a shorter path of its own."""
        return await self.read(lambda r: r.get_task(task_id, now))

    @abc.abstractmethod
    def change_poll_interval(self, configured: float) -> float:
        """How often a change feed polls the versions of the tasks it watches."""

    @abc.abstractmethod
    def others_committed(self) -> bool:
        """Whether another process may have written since the last call."""

    @abc.abstractmethod
    def listen(self, heard: Callable[[str], None], resync: Callable[[], None]) -> Awaitable[None]:
        """Hear of other processes' writes for as long as the process serves."""

    @abc.abstractmethod
    async def check_schema(self) -> None:
        """Raise SchemaOutdated unless the schema is the one this code needs."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections and threads."""


class Compiled(Generic[C]):
    """Statements compiled once each, by the statement object (kept with its
    SQL, so that its id stays its own). The statements are a bounded set of
    shapes (statements.py caches each shape's statement), and so is this:
    the least recently used goes first past `size`. With `keep`, only the
    compiled statements it accepts are kept (the rest compile at each call)."""

    __slots__ = ("_compile", "_items", "_keep", "_size")

    def __init__(
        self, compile_one: Callable[[Select[Any]], C], size: int = 512, keep: Callable[[C], bool] | None = None
    ) -> None:
        self._compile = compile_one
        self._size = size
        self._keep = keep
        self._items: OrderedDict[int, tuple[Select[Any], C]] = OrderedDict()

    def __call__(self, stmt: Select[Any]) -> C:
        key = id(stmt)
        hit = self._items.get(key)
        if hit is not None and hit[0] is stmt:
            self._items.move_to_end(key)
            return hit[1]
        made = self._compile(stmt)
        if self._keep is not None and not self._keep(made):
            return made
        self._items[key] = (stmt, made)
        if len(self._items) > self._size:
            self._items.popitem(last=False)
        return made

    def __len__(self) -> int:
        return len(self._items)


def normalize_url(url: str) -> str:
    """postgresql:// means asyncpg; sqlite URLs stay as they are."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() != "asyncpg":
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    return url


def backend_of(url: str) -> str:
    """sqlite or postgresql; anything else is refused."""
    backend = make_url(url).get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ValueError(f"unsupported database: {backend} (use sqlite:/// or postgresql+asyncpg://)")
    return backend


class OutageLog:
    """Says that the store is failing, and why, at most once every few seconds
    (an outage fails every request; the log should not)."""

    def __init__(self, every: float = 5.0) -> None:
        self.every = every
        self._last = 0.0
        self._quiet = 0

    def __call__(self, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._last < self.every:
            self._quiet += 1
            return
        more = f" (and {self._quiet} more since)" if self._quiet else ""
        log.warning("the store failed: %s: %s%s", type(exc).__name__, exc, more)
        self._last, self._quiet = now, 0


def full() -> errors.ResourceExhausted:
    return errors.ResourceExhausted(
        "the store has no room left: writes resume once space is freed", retry_after=5, reason=errors.STORE_FULL
    )


def unreachable() -> errors.Unavailable:
    return errors.Unavailable("the store cannot be reached now: retry in a moment", reason=errors.STORE_UNAVAILABLE)


def busy() -> errors.Unavailable:
    """Every pooled connection stayed in use for as long as a call waits for
    one: the store is there, only busy (not an outage, so not logged as one)."""
    return errors.Unavailable(
        "the store is busy: every connection is in use; retry in a moment", reason=errors.STORE_UNAVAILABLE
    )
