"""Who may do what: tokens made with the CLI, checked on every call."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from tasktrail.v1 import task_pb2, task_service_pb2, writer_service_pb2
from tests.support.clients import As, cli, code, make_token
from tests.support.stack import Stack, start_stack, stop_stack

pytestmark = pytest.mark.e2e


def test_calls_without_a_token_are_unauthenticated(stack: Stack) -> None:
    anonymous = As(stack, None)
    assert code(lambda: anonymous.get("d3cd2fab-4b1f-4eb9-b614-181c10b07acd")) == grpc.StatusCode.UNAUTHENTICATED
    assert code(lambda: anonymous.create(task_pb2.SCOPE_DATABASE, "x")) == grpc.StatusCode.UNAUTHENTICATED
    wrong = As(stack, "tt_000000000000_not-a-real-secret")
    assert code(lambda: wrong.get("d3cd2fab-4b1f-4eb9-b614-181c10b07acd")) == grpc.StatusCode.UNAUTHENTICATED
    forged = As(stack, stack.token[:-4] + "AAAA")  # a real id, the wrong secret
    assert code(lambda: forged.get("d3cd2fab-4b1f-4eb9-b614-181c10b07acd")) == grpc.StatusCode.UNAUTHENTICATED


def test_readers_read_their_scopes_only_and_never_write(stack: Stack) -> None:
    admin = As(stack, stack.token)
    db_task = admin.create(task_pb2.SCOPE_DATABASE, "auth-db")
    host_task = admin.create(task_pb2.SCOPE_HOST, "auth-host")
    reader = As(stack, make_token(stack, "reader", "database"))
    assert reader.get(db_task.task_id).task_id == db_task.task_id
    assert code(lambda: reader.get(host_task.task_id)) == grpc.StatusCode.NOT_FOUND  # never a hint it exists
    assert code(lambda: reader.create(task_pb2.SCOPE_DATABASE, "auth-db")) == grpc.StatusCode.PERMISSION_DENIED
    listed = reader.reader.ListTasks(task_service_pb2.ListTasksRequest(page_size=1000), timeout=10).tasks
    assert listed
    assert {t.scope for t in listed} == {task_pb2.SCOPE_DATABASE}
    hosts = reader.reader.ListTasks(task_service_pb2.ListTasksRequest(scope=task_pb2.SCOPE_HOST), timeout=10).tasks
    assert list(hosts) == []


def test_entity_grants(stack: Stack) -> None:
    admin = As(stack, stack.token)
    mine = admin.create(task_pb2.SCOPE_DATABASE, "auth-mine")
    theirs = admin.create(task_pb2.SCOPE_DATABASE, "auth-theirs")
    writer = As(stack, make_token(stack, "writer", "database:auth-mine"))
    assert writer.get(mine.task_id).entity_id == "auth-mine"
    assert code(lambda: writer.get(theirs.task_id)) == grpc.StatusCode.NOT_FOUND
    assert writer.create(task_pb2.SCOPE_DATABASE, "auth-mine").entity_id == "auth-mine"
    assert code(lambda: writer.create(task_pb2.SCOPE_DATABASE, "auth-theirs")) == grpc.StatusCode.PERMISSION_DENIED
    cancel = writer_service_pb2.UpdateTaskRequest(task_id=theirs.task_id, status=task_pb2.TASK_STATUS_RUNNING)
    assert code(lambda: writer.writer.UpdateTask(cancel, timeout=10)) == grpc.StatusCode.NOT_FOUND
    # A list of the scope is a list of the entities the token may see.
    listed = writer.reader.ListTasks(
        task_service_pb2.ListTasksRequest(scope=task_pb2.SCOPE_DATABASE, page_size=1000), timeout=10
    ).tasks
    assert {t.entity_id for t in listed} == {"auth-mine"}


def test_a_revoked_token_stops_working_at_once(stack: Stack) -> None:
    token = make_token(stack, "reader", "database")
    reader = As(stack, token)
    assert reader.get("d3cd2fab-4b1f-4eb9-b614-181c10b07acd").type == "create"
    listed = cli(stack, "tokens", "list")
    token_id = token.split("_")[1]
    assert token_id in listed
    assert token.split("_", 2)[2] not in listed  # never the secret
    cli(stack, "tokens", "revoke", token_id)
    assert code(lambda: reader.get("d3cd2fab-4b1f-4eb9-b614-181c10b07acd")) == grpc.StatusCode.UNAUTHENTICATED


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(Path(tmp_path_factory.mktemp("guarded")), "--controlplane-auth")
    yield running
    stop_stack(running)


def test_the_control_plane_port_can_require_a_token(guarded: Stack) -> None:
    url = f"{guarded.rest}/v1/databases/example/tasks"
    reply = httpx.get(url, timeout=10)
    assert reply.status_code == 401
    assert reply.headers["www-authenticate"] == 'Bearer realm="tasktrail"'
    assert reply.headers["goa-error"] == "unauthorized"
    assert reply.json()["name"] == "unauthorized"
    assert httpx.get(url, headers={"Authorization": "Bearer tt_x_y"}, timeout=10).status_code == 401
    ok = httpx.get(url, headers={"Authorization": f"Bearer {guarded.token}"}, timeout=10)
    assert ok.status_code == 200
    assert len(ok.json()["tasks"]) == 8
    narrow = make_token(guarded, "reader", "database:other")
    scoped = httpx.get(url, headers={"Authorization": f"Bearer {narrow}"}, timeout=10)
    assert (scoped.status_code, scoped.json()) == (200, {"tasks": []})
    one = httpx.get(
        f"{url}/d3cd2fab-4b1f-4eb9-b614-181c10b07acd", headers={"Authorization": f"Bearer {narrow}"}, timeout=10
    )
    assert one.status_code == 404
