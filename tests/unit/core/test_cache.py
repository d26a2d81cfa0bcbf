"""The cache of ended tasks: bounded by count and by size, and never holding an
expired task for long, touched or not."""

from __future__ import annotations

import time

from tasktrail.core.cache import EndedTasks, task_size
from tasktrail.core.model import Scope, Status, Task

NOW = 1_000_000_000


def ended(n: int, *, expire_at: int | None = None, appended: int = 0) -> Task:
    return Task(
        task_id=f"t{n}",
        scope=Scope.DATABASE,
        entity_id="db",
        type="backup",
        status=Status.COMPLETED,
        created_at=NOW,
        updated_at=NOW,
        status_changed_at=NOW,
        expire_at=expire_at,
        last_append_ids=tuple(f"{i:036d}" for i in range(appended)),
    )


def test_bounded_by_count_and_by_size_oldest_out_first() -> None:
    by_count: EndedTasks[int] = EndedTasks(3, 1 << 30)
    for n in range(5):
        by_count.put(ended(n), n, NOW)
    assert len(by_count) == 3
    assert by_count.get("t0", NOW) is None
    assert by_count.get("t4", NOW) is not None
    by_size: EndedTasks[int] = EndedTasks(1000, 3 * task_size(ended(0)))
    for n in range(5):
        by_size.put(ended(n), n, NOW)
    assert len(by_size) == 3
    # A task's size counts its last append's ids: a big one pushes out more.
    assert task_size(ended(0, appended=1000)) > 50 * task_size(ended(0))


def test_expired_tasks_go_at_a_hit_and_all_of_them_now_and_then() -> None:
    cache: EndedTasks[int] = EndedTasks(1000, 1 << 30, prune_every=0.05)
    for n in range(10):
        cache.put(ended(n, expire_at=NOW + 10), n, NOW)
    assert cache.get("t0", NOW + 10) is None  # expired: gone at its hit
    assert len(cache) == 9
    time.sleep(0.06)
    cache.put(ended(99), 99, NOW + 10)  # the next put after `prune_every` drops every expired one
    assert len(cache) == 1
    assert cache.get("t99", NOW + 10) == (ended(99), 99)
