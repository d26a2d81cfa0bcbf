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

from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from tasktrail.store.base import Store
from tasktrail.store.schema import rate_counts
from tasktrail.store.statements import WriteQueries


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    remaining: int
    # Seconds until the window ends (when refused: how long to wait).
    retry_after: int


def count_hit(tx: WriteQueries, key: str, period: int, forget_before: int | None) -> int:
    """Add one request to the key's count in this period; the count after it."""
    conn = tx.conn
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = insert(rate_counts).values(key=key, period=period, count=1)
    upsert = stmt.on_conflict_do_update(
        index_elements=[rate_counts.c.key, rate_counts.c.period], set_={"count": rate_counts.c.count + 1}
    ).returning(rate_counts.c.count)
    count = int(conn.execute(upsert).scalar_one())
    if forget_before is not None:
        conn.execute(delete(rate_counts).where(rate_counts.c.period < forget_before))
    return count


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
        retry_after = max(1, int((period + 1) * self.window - now + 0.999))
        return Verdict(count <= self.limit, max(0, self.limit - count), retry_after)
