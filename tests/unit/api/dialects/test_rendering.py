"""A dialect renders an ended task once, for as long as the core hands out the
same Task object for it; anything else is rendered afresh."""

from __future__ import annotations

import dataclasses

from tasktrail.api.dialects.rendering import Rendered
from tasktrail.core.model import Scope, Status, Task, now_us


def task(task_id: str, status: Status) -> Task:
    return Task(task_id, Scope.DATABASE, "db", "create", status, 1, 1, 1)


def counting(calls: list[str]) -> Rendered[str]:
    def render(t: Task) -> str:
        calls.append(t.task_id)
        return f"{t.task_id}:{t.status.value}:{t.expire_at}"

    return Rendered(render, size=2)


def test_an_ended_task_is_rendered_once_per_task_object() -> None:
    calls: list[str] = []
    rendered = counting(calls)
    done = task("a", Status.COMPLETED)
    assert rendered(done) == rendered(done) == "a:completed:None"
    assert calls == ["a"]
    # A new object for the same task (its expiry moved): rendered again, and kept.
    later = now_us() + 60_000_000
    moved = dataclasses.replace(done, expire_at=later)
    assert rendered(moved) == rendered(moved) == f"a:completed:{later}"
    assert calls == ["a", "a"]


def test_a_running_task_is_rendered_every_time() -> None:
    calls: list[str] = []
    rendered = counting(calls)
    running = task("r", Status.RUNNING)
    rendered(running)
    rendered(running)
    assert calls == ["r", "r"]


def test_the_oldest_goes_first_when_full() -> None:
    calls: list[str] = []
    rendered = counting(calls)
    a, b, c = (task(x, Status.FAILED) for x in "abc")
    for t in (a, b, c, b, c, a):
        rendered(t)
    assert calls == ["a", "b", "c", "a"]
