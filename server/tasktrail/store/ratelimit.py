"""Request rate limits, per key, in fixed windows (as Redis Cloud's: 400
requests a minute per account key, counted in the window the minute is in).

The count lives in the store, so that every server process of a deployment,
on one machine or many, counts against the same limit: one upsert a request.
Windows are numbered by wall-clock time, which the processes share.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from tasktrail.store.base import Store
from tasktrail.store.schema import rate_counts
from tasktrail.store.statements import WriteQueries


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    # Seconds until the window ends (when refused: how long to wait).
    retry_after: int


def count_hit(tx: WriteQueries, key: str, period: int, forget_before: int | None) -> int:
    """Add one request to the key's count in this period; the count after it."""
    count = int(tx.rows(_UPSERTS[tx.dialect], {"key": key, "period": period, "one": 1})[0][0])
    if forget_before is not None:
        tx.execute(_FORGET, {"before": forget_before})
    return count


def _upsert(insert: Any) -> Any:
    stmt = insert(rate_counts).values(key=bindparam("key"), period=bindparam("period"), count=bindparam("one"))
    return stmt.on_conflict_do_update(
        index_elements=[rate_counts.c.key, rate_counts.c.period],
        set_={"count": rate_counts.c.count + stmt.excluded.count},
    ).returning(rate_counts.c.count)


# One statement per dialect, built once and with no values of its own (so that
# a backend compiles it once): a request makes one upsert.
_UPSERTS = {"postgresql": _upsert(pg_insert), "sqlite": _upsert(sqlite_insert)}
_FORGET = delete(rate_counts).where(rate_counts.c.period < bindparam("before"))


class SharedWindow:
    def __init__(self, store: Store, limit: int, window: float = 60.0, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.limit = limit
        self.window = window
        self.clock = clock
        self._period = -1

    async def hit(self, key: str) -> Verdict:
        now = self.clock()
        period = int(now // self.window)
        # The first request of a period in this process also forgets the periods before the last.
        forget = period - 1 if period != self._period else None
        self._period = period
        count = await self.store.write(lambda conn: count_hit(conn, key, period, forget))
        return self._verdict(count, period, now)

    async def peek(self, key: str) -> Verdict:
        """The key's count in this period, without adding to it (one read)."""
        now = self.clock()
        period = int(now // self.window)
        rows = await self.store.read(lambda r: r.rows(_COUNT, {"key": key, "period": period}))
        # At the limit already: the next one would be past it.
        return self._verdict(int(rows[0][0]) + 1 if rows else 1, period, now)

    def _verdict(self, count: int, period: int, now: float) -> Verdict:
        retry_after = max(1, int((period + 1) * self.window - now + 0.999))
        return Verdict(count <= self.limit, self.limit, max(0, self.limit - count), retry_after)


_COUNT = select(rate_counts.c.count).where(
    rate_counts.c.key == bindparam("key"), rate_counts.c.period == bindparam("period")
)
