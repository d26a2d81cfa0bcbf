"""The shared rate-limit window: counted in the store, so every process shares it."""

from __future__ import annotations

import pytest

from tasktrail.store import Store, open_store
from tasktrail.store.ratelimit import SharedWindow

pytestmark = pytest.mark.anyio


async def test_a_window_counts_per_key_and_refuses_past_its_limit(store: Store) -> None:
    now = [600.0]
    window = SharedWindow(store, limit=2, window=60.0, clock=lambda: now[0])
    first, second, third = [await window.hit("a") for _ in range(3)]
    assert [v.allowed for v in (first, second, third)] == [True, True, False]
    assert (first.remaining, second.remaining, third.remaining) == (1, 0, 0)
    assert third.retry_after == 60
    assert (await window.hit("b")).allowed  # another key has its own count
    now[0] = 660.5  # the next window
    fresh = await window.hit("a")
    assert (fresh.allowed, fresh.remaining, fresh.retry_after) == (True, 1, 60)


async def test_two_processes_share_one_count(store: Store, database_url: str) -> None:
    other = open_store(database_url)
    try:
        clock = lambda: 1200.0  # noqa: E731
        mine, theirs = SharedWindow(store, 3, 60.0, clock), SharedWindow(other, 3, 60.0, clock)
        assert [(await w.hit("k")).remaining for w in (mine, theirs, mine)] == [2, 1, 0]
        assert not (await theirs.hit("k")).allowed
    finally:
        await other.close()
