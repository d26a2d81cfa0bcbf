"""The first hour with the CLI, against a running stack: roles that say what
they allow, refusals that say what to do, and a demo that shows what it does
and never fails silently (issue 16)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tasktrail.v1 import task_pb2, writer_service_pb2
from tests.support.clients import make_token
from tests.support.stack import Stack, start_stack, stop_stack

pytestmark = pytest.mark.e2e

# What a demo line looks like: time, type, scope and entity, task id, outcome.
DEMO_LINE = re.compile(r"^\d\d:\d\d:\d\d  (\w+) +(database|host) (\S+) +([0-9a-f-]{36}|-) +(.+)$")


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack of its own: the demo writes many tasks."""
    running = start_stack(Path(tmp_path_factory.mktemp("first-hour")), "--no-sample")
    yield running
    stop_stack(running)


def tasktrail(
    stack: Stack, *args: str, token: str | None, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it: with this token in TASKTRAIL_TOKEN, or none at all."""
    env = {k: v for k, v in os.environ.items() if k not in ("TASKTRAIL_TOKEN", "TASKTRAIL_DATA_DIR")}
    env.update({"TASKTRAIL_TARGET": stack.grpc_target, "NO_COLOR": "1"})
    if token is not None:
        env["TASKTRAIL_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "tasktrail", *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd
    )


def new_task(stack: Stack, entity: str = "first-hour") -> str:
    request = writer_service_pb2.CreateTaskRequest(scope=task_pb2.SCOPE_DATABASE, entity_id=entity, type="update")
    return stack.writer.CreateTask(request, timeout=10).task.task_id


def no_traceback(done: subprocess.CompletedProcess[str]) -> None:
    for text in (done.stdout, done.stderr):
        assert "Traceback" not in text, text
        assert "never retrieved" not in text, text


def test_a_reader_reads_but_may_not_cancel(fresh: Stack) -> None:
    task_id = new_task(fresh)
    reader = make_token(fresh, "reader", "database")
    assert tasktrail(fresh, "tasks", "get", task_id, token=reader).returncode == 0
    refused = tasktrail(fresh, "tasks", "cancel", task_id, token=reader)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        "tasktrail: PERMISSION_DENIED: cancelling a task needs an operator or writer token; this token is a reader "
        "(tasktrail tokens create --role operator makes one)"
    )
    assert re.search(r"^status +pending$", tasktrail(fresh, "tasks", "get", task_id, token=reader).stdout, re.M)


def test_an_operator_cancels_but_may_not_write(fresh: Stack) -> None:
    task_id = new_task(fresh)
    made = fresh.tasktrail("tokens", "create", "--name", "on call", "--role", "operator", "--grant", "database")
    operator, note = made.splitlines()
    assert note.startswith("# operator token 'on call' for database")
    assert "operator" in fresh.tasktrail("tokens", "list")
    done = tasktrail(fresh, "tasks", "cancel", task_id, token=operator)
    assert (done.returncode, done.stdout.strip()) == (0, f"{task_id}: canceling")
    demo = tasktrail(fresh, "demo", "--duration", "1", token=operator, timeout=60)
    assert demo.returncode == 1
    assert "the demo creates and runs tasks, which needs a writer token: PERMISSION_DENIED" in demo.stderr
    no_traceback(demo)


def test_the_rest_face_on_port_3000_lets_anyone_cancel_and_a_token_by_its_role(fresh: Stack) -> None:
    reader = make_token(fresh, "reader", "database")
    mine = new_task(fresh)
    with_reader = httpx.post(
        f"{fresh.rest}/api/v1/tasks/{mine}/cancel", json={}, headers={"Authorization": f"Bearer {reader}"}, timeout=10
    )
    assert with_reader.status_code == 403, with_reader.text
    assert "operator or writer token" in with_reader.json()["message"]
    anyone = httpx.post(f"{fresh.rest}/api/v1/tasks/{mine}/cancel", json={}, timeout=10)
    assert anyone.status_code == 200, anyone.text
    assert anyone.json()["task"]["status"] in ("TASK_STATUS_CANCELING", "TASK_STATUS_CANCELED")


def test_a_missing_token_says_what_to_do(fresh: Stack, tmp_path: Path) -> None:
    """Run where no `tasktrail up` keeps its data: no token at all."""
    done = tasktrail(fresh, "tasks", "list", token=None, cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith(
        "tasktrail: UNAUTHENTICATED: a token is required: pass --token or set TASKTRAIL_TOKEN"
    )
    assert "./data/dev-token" in done.stderr
    assert "authorization: Bearer <token>" in done.stderr


def test_the_demo_says_what_it_does_as_it_goes(fresh: Stack) -> None:
    done = tasktrail(
        fresh, "demo", "--duration", "4", "--speed", "8", "--concurrency", "4", "--seed", "5", token=fresh.token
    )
    assert done.returncode == 0, done.stderr
    no_traceback(done)
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"tasktrail demo: driving {fresh.grpc_target}")
    assert lines[-1].startswith("tasktrail demo: ran ")
    events = [line for line in lines if not line.startswith("tasktrail demo: ")]
    told = [DEMO_LINE.match(line) for line in events]
    assert all(told), [line for line, m in zip(events, told, strict=True) if m is None]
    outcomes = [m.group(5) for m in told if m is not None]
    started = {m.group(4) for m in told if m is not None and m.group(5) == "started"}
    ended = {m.group(4) for m in told if m is not None and re.match(r"(completed|failed|canceled)\b", m.group(5))}
    assert started
    assert started == ended  # every task it started, it said how it ended
    assert any(o.startswith("completed (") for o in outcomes)
    # The first line comes at once, not after the first operation has ended.
    assert outcomes[0] == "started"


def test_the_demo_refuses_a_reader_token_at_once(fresh: Stack) -> None:
    reader = make_token(fresh, "reader", "database", "host")
    done = tasktrail(fresh, "demo", "--duration", "10", token=reader, timeout=60)
    assert done.returncode == 1
    no_traceback(done)
    assert done.stdout == ""  # it never started
    first, hint = done.stderr.splitlines()
    assert first == (
        "tasktrail demo: the demo creates and runs tasks, which needs a writer token: PERMISSION_DENIED: writing "
        "tasks needs a writer token; this token is a reader (tasktrail tokens create --role writer makes one)"
    )
    assert hint.startswith("tasktrail demo: pass a writer token of the database and host scopes with --token")
    assert "`tasktrail tokens create --name demo --role writer --grant database --grant host`" in hint


def test_the_demo_never_exits_0_after_a_failure(fresh: Stack) -> None:
    """A writer whose grants do not cover the demo's databases: the first operation fails, and says so."""
    narrow = make_token(fresh, "writer", "database:elsewhere")
    done = tasktrail(fresh, "demo", "--duration", "10", "--seed", "1", token=narrow, timeout=90)
    assert done.returncode == 1, done.stdout
    no_traceback(done)
    errors = [line for line in done.stdout.splitlines() if "error: PERMISSION_DENIED" in line]
    assert errors, done.stdout
    assert DEMO_LINE.match(errors[0])
    assert "tasktrail demo: stopped by a failure: PERMISSION_DENIED" in done.stderr
