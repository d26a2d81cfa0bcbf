"""What the REST dialects share in rendering: RFC 3339 times, and a cache of
ended tasks' renderings."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from tasktrail.core.model import Task
from tasktrail.core.tasks import task_size

M = TypeVar("M")


def rfc3339(us: int) -> str:
    """RFC 3339 in UTC with whole seconds, as Go's time.RFC3339 writes it."""
    return _rfc3339_seconds(us // 1_000_000)


@functools.lru_cache(maxsize=4096)  # a log's entries share their seconds
def _rfc3339_seconds(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


class Rendered(Generic[M]):
    """A dialect's rendering of tasks, kept for ended ones: an ended task never
    changes, and while it stays in the core's memory the core hands out the same
    Task object for it, so the same message serves every read. Bounded by count
    and by size; oldest first out."""

    __slots__ = ("_bytes", "_items", "_max_bytes", "_render", "_size")

    def __init__(self, render: Callable[[Task], M], size: int = 10_000, max_bytes: int = 32 * 1024 * 1024) -> None:
        self._render = render
        self._size = size
        self._max_bytes = max_bytes
        self._bytes = 0
        self._items: dict[str, tuple[Task, M, int]] = {}

    def __call__(self, task: Task) -> M:
        if not task.status.terminal:
            return self._render(task)
        hit = self._items.get(task.task_id)
        if hit is not None and hit[0] is task:
            return hit[1]
        message = self._render(task)
        size = task_size(task)
        if hit is not None:
            self._bytes -= self._items.pop(task.task_id)[2]
        while self._items and (len(self._items) >= self._size or self._bytes + size > self._max_bytes):
            self._bytes -= self._items.pop(next(iter(self._items)))[2]
        if size <= self._max_bytes:
            self._items[task.task_id] = (task, message, size)
            self._bytes += size
        return message
