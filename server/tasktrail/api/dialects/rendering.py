"""What the REST dialects share in rendering: RFC 3339 times, and a cache of
ended tasks' renderings."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from tasktrail.core.cache import EndedTasks
from tasktrail.core.model import Task, now_us

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
    Task object for it, so the same message serves every read."""

    __slots__ = ("_kept", "_render")

    def __init__(self, render: Callable[[Task], M], size: int = 10_000, max_bytes: int = 32 * 1024 * 1024) -> None:
        self._render = render
        self._kept: EndedTasks[M] = EndedTasks(size, max_bytes)

    def __call__(self, task: Task) -> M:
        if not task.status.terminal:
            return self._render(task)
        now = now_us()
        hit = self._kept.get(task.task_id, now)
        if hit is not None and hit[0] is task:
            return hit[1]
        message = self._render(task)
        self._kept.put(task, message, now)
        return message
