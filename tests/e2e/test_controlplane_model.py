"""Random writes and random reads through the real stack, against a simple
model of the control-plane API's list and log semantics.

The stack runs with small server maximums (5 tasks a page, 4 log entries a
read), so that the caps are exercised as often as the cursors are.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from tasktrail.v1 import task_pb2, task_service_pb2, writer_service_pb2
from tests.support.stack import Stack, start_stack, stop_stack

pytestmark = pytest.mark.e2e

MAX_PAGE = 5
MAX_LOG = 4
DATABASES = ("db-a", "db-b")
HOST = "host-m"
ASC = ("asc", "ascend", "ascending")
DESC = ("desc", "descend", "descending", "")
TERMINAL = {"completed", "failed", "canceled"}
NEXT = {"pending": ["running", "failed"], "running": ["completed", "failed"], "canceling": ["canceled", "completed"]}
PB_STATUS = {
    "running": task_pb2.TASK_STATUS_RUNNING,
    "completed": task_pb2.TASK_STATUS_COMPLETED,
    "failed": task_pb2.TASK_STATUS_FAILED,
    "canceled": task_pb2.TASK_STATUS_CANCELED,
}
GREGORIAN = 0x01B21DD213814000


@dataclass
class ModelTask:
    task_id: str
    scope: str
    entity: str
    created_us: int
    status: str = "pending"
    entries: list[str] = field(default_factory=list)

    @property
    def position(self) -> tuple[int, str]:
        return (self.created_us, self.task_id)


def cursor_position(cursor: str, tasks: dict[str, ModelTask]) -> tuple[int, str]:
    if cursor in tasks:
        return tasks[cursor].position
    u = uuid.UUID(cursor)
    if u.version == 7:
        return ((u.int >> 80) * 1000, cursor)
    assert u.version == 1
    return ((u.time - GREGORIAN) // 10, cursor)


@pytest.fixture(scope="module")
def model_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(
        Path(tmp_path_factory.mktemp("model")),
        "--no-sample",
        "--max-page-size",
        str(MAX_PAGE),
        "--max-log-entries",
        str(MAX_LOG),
    )
    yield running
    stop_stack(running)


class ControlPlaneModel(RuleBasedStateMachine):
    stack: Stack
    http: httpx.Client

    def __init__(self) -> None:
        super().__init__()
        self.tasks: dict[str, ModelTask] = {}
        self.rng = random.Random(0)
        # Each run of the machine works in databases of its own.
        self.run = uuid.uuid4().hex[:6]

    def db(self, i: int) -> str:
        return f"{DATABASES[i]}-{self.run}"

    # -- writes ------------------------------------------------------------------------

    @initialize()
    def start(self) -> None:
        self.create(0, False, "database")

    @rule(db=st.integers(0, 1), supplied=st.booleans(), scope=st.sampled_from(["database", "database", "host"]))
    def create(self, db: int, supplied: bool, scope: str) -> None:
        entity = self.db(db) if scope == "database" else f"{HOST}-{self.run}"
        request = writer_service_pb2.CreateTaskRequest(
            scope=task_pb2.SCOPE_DATABASE if scope == "database" else task_pb2.SCOPE_HOST,
            entity_id=entity,
            type="update",
            task_id=str(uuid.uuid4()) if supplied else "",
        )
        task = self.stack.writer.CreateTask(request, timeout=10).task
        created = task.created_at.seconds * 1_000_000 + task.created_at.nanos // 1000
        self.tasks[task.task_id] = ModelTask(task.task_id, scope, entity, created)

    def pick(self, data: st.DataObject, alive: bool = False) -> ModelTask | None:
        pool = [t for t in self.tasks.values() if not alive or t.status not in TERMINAL]
        # In creation order: ids differ from run to run, and draws must not depend on them.
        return data.draw(st.sampled_from(pool)) if pool else None

    @rule(data=st.data())
    def transition(self, data: st.DataObject) -> None:
        task = self.pick(data, alive=True)
        if task is None:
            return
        target = data.draw(st.sampled_from(NEXT[task.status]))
        update = writer_service_pb2.UpdateTaskRequest(task_id=task.task_id, status=PB_STATUS[target])
        if target == "failed":
            update.error.message = "boom"
        self.stack.writer.UpdateTask(update, timeout=10)
        task.status = target

    @rule(data=st.data(), n=st.integers(1, 6))
    def append(self, data: st.DataObject, n: int) -> None:
        task = self.pick(data, alive=True)
        if task is None:
            return
        request = writer_service_pb2.AppendLogEntriesRequest(
            task_id=task.task_id, entries=[task_pb2.LogEntry(message=f"line {len(task.entries) + i}") for i in range(n)]
        )
        ids = list(self.stack.writer.AppendLogEntries(request, timeout=10).entry_ids)
        assert ids == sorted(ids)
        assert not task.entries or ids[0] > task.entries[-1]
        task.entries.extend(ids)

    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        task = self.pick(data)
        if task is None or task.scope != "database":
            return
        reply = self.http.get(f"/v1/databases/{task.entity}/tasks/{task.task_id}/cancel")
        if task.status in ("pending", "running"):
            assert (reply.status_code, reply.json()["status"]) == (200, "canceling")
            # These writers hold no lease: the server finishes the cancel at once.
            task.status = "canceled"
            # The server wrote those entries: learn their ids.
            task.entries = self.read_all(task)
        else:
            assert reply.status_code == 400
            assert reply.json()["name"] == "invalid_input"

    def read_all(self, task: ModelTask) -> list[str]:
        """The log's ids, read with the native API (forward, every page)."""
        ids: list[str] = []
        after = ""
        while True:
            page = self.stack.reader.GetTaskLog(
                task_service_pb2.GetTaskLogRequest(task_id=task.task_id, after_entry_id=after), timeout=10
            )
            ids.extend(e.entry_id for e in page.entries)
            if not page.has_more:
                return ids
            after = page.last_entry_id

    # -- reads ----------------------------------------------------------------------------

    def list_path(self, which: int) -> tuple[str, dict[str, str], list[ModelTask]]:
        if which < 2:
            entity = self.db(which)
            return f"/v1/databases/{entity}/tasks", {}, [t for t in self.tasks.values() if t.entity == entity]
        if which == 2:
            entity = f"{HOST}-{self.run}"
            return f"/v1/hosts/{entity}/tasks", {}, [t for t in self.tasks.values() if t.entity == entity]
        entity = self.db(0)
        return (
            "/v1/tasks",
            {"scope": "database", "entity_id": entity},
            [t for t in self.tasks.values() if t.entity == entity],
        )

    def expected_page(
        self, pool: list[ModelTask], ascending: bool, limit: int | None, cursor: str | None, cap: int = MAX_PAGE
    ) -> tuple[list[str], bool]:
        ordered = sorted(pool, key=lambda t: t.position, reverse=not ascending)
        if cursor is not None:
            at = cursor_position(cursor, self.tasks)
            ordered = [t for t in ordered if (t.position > at if ascending else t.position < at)]
        n = cap if limit is None or limit <= 0 else min(limit, cap)
        return [t.task_id for t in ordered[:n]], len(ordered) > n

    def draw_cursor(self, data: st.DataObject) -> str | None:
        kind = data.draw(st.sampled_from(["none", "none", "task", "v7", "v1"]))
        if kind == "task" and self.tasks:
            return data.draw(st.sampled_from(list(self.tasks)))
        if kind in ("v7", "v1") and self.tasks:
            times = sorted(t.created_us for t in self.tasks.values())
            at_us = data.draw(st.sampled_from(times)) + data.draw(st.sampled_from([-1500, 0, 1500]))
            if kind == "v7":
                value = ((at_us // 1000) << 80) | (0x7 << 76) | (0b10 << 62) | self.rng.getrandbits(62)
                return str(uuid.UUID(int=value))
            ticks = at_us * 10 + GREGORIAN
            return str(
                uuid.UUID(fields=(ticks & 0xFFFFFFFF, (ticks >> 32) & 0xFFFF, (ticks >> 48) | 0x1000, 0x80, 0, 1))
            )
        return None

    @rule(data=st.data(), which=st.integers(0, 3))
    def list_page(self, data: st.DataObject, which: int) -> None:
        path, params, pool = self.list_path(which)
        order = data.draw(st.sampled_from(ASC + DESC))
        limit = data.draw(st.sampled_from([None, -1, 0, 1, 2, 3, 7]))
        cursor = self.draw_cursor(data)
        if order:
            params["sort_order"] = order
        if limit is not None:
            params["limit"] = str(limit)
        if cursor is not None:
            params["after_task_id"] = cursor
        reply = self.http.get(path, params=params)
        assert reply.status_code == 200, reply.text
        expected, more = self.expected_page(pool, order in ASC, limit, cursor)
        tasks = reply.json()["tasks"]
        assert [t["task_id"] for t in tasks] == expected, (params, reply.json())
        assert [t["status"] for t in tasks] == [self.tasks[i].status for i in expected]
        assert (reply.headers.get("x-has-more") == "true") == more

    @rule(which=st.integers(0, 3), order=st.sampled_from(ASC + DESC), size=st.integers(1, 3))
    def paginate_everything(self, which: int, order: str, size: int) -> None:
        path, params, pool = self.list_path(which)
        seen: list[str] = []
        cursor = None
        while True:
            query = {**params, "sort_order": order, "limit": str(size)}
            if cursor:
                query["after_task_id"] = cursor
            page = [t["task_id"] for t in self.http.get(path, params=query).json()["tasks"]]
            if not page:
                break
            seen.extend(page)
            cursor = page[-1]
        expected = self.expected_page(pool, order in ASC, None, None, cap=len(pool))[0]
        assert seen == expected, "\n".join(
            f"{a} {b} {self.tasks[a].position if a in self.tasks else '?'}"
            for a, b in zip(seen, expected, strict=False)
        )
        assert sorted(seen) == sorted(t.task_id for t in pool)

    def log_path(self, task: ModelTask) -> str:
        if task.scope == "database":
            return f"/v1/databases/{task.entity}/tasks/{task.task_id}/log"
        return f"/v1/hosts/{task.entity}/tasks/{task.task_id}/logs"

    @precondition(lambda self: bool(self.tasks))
    @rule(data=st.data())
    def read_log(self, data: st.DataObject) -> None:
        task = self.pick(data)
        assert task is not None
        others = [e for t in self.tasks.values() for e in t.entries]
        after = data.draw(
            st.sampled_from(
                [
                    None,
                    *task.entries[-2:],
                    *(task.entries[:2]),
                    *(others[:3]),
                    str(uuid.uuid4()),
                    "0" * 8 + "-0000-4000-8000-" + "0" * 12,
                ]
            )
        )
        limit = data.draw(st.sampled_from([None, -1, 0, 1, 2, 3, 9]))
        params = {}
        if after is not None:
            params["after_entry_id"] = after
        if limit is not None:
            params["limit"] = str(limit)
        reply = self.http.get(self.log_path(task), params=params)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        in_range = [e for e in task.entries if after is None or e >= after]
        if limit is not None and limit > 0:
            read = in_range[-min(limit, MAX_LOG) :]
            entries = [e for e in read if e != after]
            last = read[-1] if read else None
            more = False
        else:
            included = bool(in_range) and in_range[0] == after
            useful = in_range[1:] if included else in_range
            entries = useful[:MAX_LOG]
            more = len(useful) > MAX_LOG
            last = entries[-1] if entries else (after if included else None)
        assert len(body["entries"]) == len(entries), (params, body, task.entries)
        assert body.get("last_entry_id") == last
        status = "running" if more and task.status in TERMINAL else task.status
        assert body["task_status"] == status
        assert (reply.headers.get("x-has-more") == "true") == more

    @precondition(lambda self: bool(self.tasks))
    @rule(data=st.data())
    def follow_log_like_pgedge(self, data: st.DataObject) -> None:
        """pgEdge's client loop: after_entry_id = last_entry_id until the task is terminal."""
        task = self.pick(data)
        assert task is not None
        seen: list[str] = []
        after: str | None = None
        for _ in range(100):
            params = {"after_entry_id": after} if after else {}
            body = self.http.get(self.log_path(task), params=params).json()
            seen.extend(e["message"] for e in body["entries"])
            after = body.get("last_entry_id", after)
            if not body["entries"]:
                break
        assert len(seen) == len(task.entries)
        assert after == (task.entries[-1] if task.entries else None)

    @invariant()
    def get_matches(self) -> None:
        for task in list(self.tasks.values())[-2:]:
            base = "/v1/databases" if task.scope == "database" else "/v1/hosts"
            body = self.http.get(f"{base}/{task.entity}/tasks/{task.task_id}").json()
            assert (body["task_id"], body["status"]) == (task.task_id, task.status)


ControlPlaneModel.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
TestControlPlaneModel = ControlPlaneModel.TestCase


@pytest.fixture(autouse=True, scope="module")
def _bind(model_stack: Stack) -> Iterator[None]:
    with httpx.Client(base_url=model_stack.rest, timeout=10) as client:
        ControlPlaneModel.stack = model_stack
        ControlPlaneModel.http = client
        yield
