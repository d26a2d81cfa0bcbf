"""A cache of what belongs to ended tasks: an ended task never changes again
(every write to one is refused, in this process or any other), so what is kept
for it never goes stale. Only its expiry ends it."""

from __future__ import annotations

import time
from typing import Generic, TypeVar

from tasktrail.core.model import Task

V = TypeVar("V")


class EndedTasks(Generic[V]):
    """A value per ended task, bounded by count and by size, oldest out first.

    Expired tasks go at a hit, and all of them at most once every `prune_every`
    seconds: a task swept from the store would otherwise stay until newer ones
    push it out, and a process that serves with retention would grow to its
    bounds however few tasks it keeps."""

    __slots__ = ("_bytes", "_items", "_max_bytes", "_next_prune", "_prune_every", "_size")

    def __init__(self, size: int, max_bytes: int, prune_every: float = 5.0) -> None:
        self._size = size
        self._max_bytes = max_bytes
        self._prune_every = prune_every
        self._next_prune = 0.0
        self._bytes = 0
        self._items: dict[str, tuple[Task, V, int]] = {}

    def __len__(self) -> int:
        return len(self._items)

    def get(self, task_id: str, now: int) -> tuple[Task, V] | None:
        hit = self._items.get(task_id)
        if hit is None:
            return None
        if hit[0].expire_at is not None and hit[0].expire_at <= now:
            self._drop(task_id)
            return None
        return hit[0], hit[1]

    def put(self, task: Task, value: V, now: int) -> None:
        size = task_size(task)
        self._drop(task.task_id)
        if self._size <= 0 or size > self._max_bytes:
            return
        if time.monotonic() >= self._next_prune:
            self._prune(now)
        while self._items and (len(self._items) >= self._size or self._bytes + size > self._max_bytes):
            self._drop(next(iter(self._items)))
        self._items[task.task_id] = (task, value, size)
        self._bytes += size

    def _prune(self, now: int) -> None:
        self._next_prune = time.monotonic() + self._prune_every
        for task_id in [k for k, (task, _, _) in self._items.items() if task.expire_at and task.expire_at <= now]:
            self._drop(task_id)

    def _drop(self, task_id: str) -> None:
        gone = self._items.pop(task_id, None)
        if gone is not None:
            self._bytes -= gone[2]


def task_size(task: Task) -> int:
    """About how much memory a task holds (its fixed part, and what callers fill)."""
    size = 1024 + len(task.entity_id) + len(task.type) + 80 * len(task.last_append_ids)
    if task.error is not None:
        size += len(task.error.message) + sum(len(d.message) + 64 for d in task.error.details)
    if task.progress is not None:
        size += len(task.progress.step) + sum(len(t.step) + 64 for t in task.progress.targets)
    if task.result is not None:
        size += len(task.result.additional_info) + len(repr(task.result.resource or ""))
    return size
