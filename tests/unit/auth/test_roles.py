"""Roles on every surface that takes a token: a reader reads, an operator reads
and cancels, a writer does everything (docs/security.md). Cloud keys and
enterprise users keep what their APIs give them: they read and cancel their
own tasks; a caller without a credential on port 3000 cancels, as anyone may there."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
from grpc import aio

from tasktrail.api import server
from tasktrail.api.server import ServerSettings
from tasktrail.auth import tokens, users
from tasktrail.auth.gate import ANONYMOUS_HEADER
from tasktrail.auth.principal import Requirement, Role, meets
from tasktrail.controlplane.v1 import controlplane_pb2, controlplane_pb2_grpc
from tasktrail.core.model import Scope
from tasktrail.crdb.v1 import crdb_pb2, crdb_pb2_grpc
from tasktrail.store import Store
from tasktrail.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc, writer_service_pb2, writer_service_pb2_grpc

pytestmark = pytest.mark.anyio

Metadata = tuple[tuple[str, str], ...]
EVERY_SCOPE = [s.value for s in Scope]


def test_each_role_meets_its_own_need_and_those_below_it() -> None:
    assert [meets(Role.READER, n) for n in Requirement] == [True, False, False]
    assert [meets(Role.OPERATOR, n) for n in Requirement] == [True, True, False]
    assert [meets(Role.WRITER, n) for n in Requirement] == [True, True, True]


def bearer(token: str) -> Metadata:
    return (("authorization", f"Bearer {token}"),)


@dataclass
class Api:
    channel: aio.Channel
    store: Store
    writer_token: str

    @property
    def reader(self) -> task_service_pb2_grpc.TaskServiceAsyncStub:
        return task_service_pb2_grpc.TaskServiceStub(self.channel)

    @property
    def writer(self) -> writer_service_pb2_grpc.TaskWriterServiceAsyncStub:
        return writer_service_pb2_grpc.TaskWriterServiceStub(self.channel)

    @property
    def controlplane(self) -> controlplane_pb2_grpc.ControlPlaneTaskServiceAsyncStub:
        return controlplane_pb2_grpc.ControlPlaneTaskServiceStub(self.channel)

    @property
    def crdb(self) -> crdb_pb2_grpc.CrdbTaskServiceAsyncStub:
        return crdb_pb2_grpc.CrdbTaskServiceStub(self.channel)

    async def token(self, role: Role, *grants: str) -> str:
        return await self.store.write(lambda tx: tokens.create_token(tx, role.value, role, grants or EVERY_SCOPE))

    async def task(self, scope: task_pb2.Scope.ValueType, entity: str) -> str:
        request = writer_service_pb2.CreateTaskRequest(scope=scope, entity_id=entity, type="update")
        made = await self.writer.CreateTask(request, metadata=bearer(self.writer_token))
        return made.task.task_id

    async def status(self, task_id: str) -> task_pb2.TaskStatus.ValueType:
        got = await self.reader.GetTask(
            task_service_pb2.GetTaskRequest(task_id=task_id), metadata=bearer(self.writer_token)
        )
        return got.task.status


async def start(database_url: str, store: Store, controlplane_auth: bool) -> AsyncIterator[Api]:
    writer = await store.write(lambda tx: tokens.create_token(tx, "unit", Role.WRITER, EVERY_SCOPE))
    settings = ServerSettings(database_url=database_url, port=0, auth=True, controlplane_auth=controlplane_auth)
    srv = await server.start(settings)
    async with aio.insecure_channel(f"127.0.0.1:{srv.port}") as channel:
        yield Api(channel, store, writer)
    await srv.stop(1)


@pytest.fixture
async def api(database_url: str, store: Store) -> AsyncIterator[Api]:
    """Port 3000 open to anyone (the default)."""
    async for running in start(database_url, store, controlplane_auth=False):
        yield running


@pytest.fixture
async def guarded(database_url: str, store: Store) -> AsyncIterator[Api]:
    """Port 3000 asks for a token (--controlplane-auth)."""
    async for running in start(database_url, store, controlplane_auth=True):
        yield running


def http_hint(error: aio.AioRpcError) -> tuple[int, dict[str, str]]:
    """A REST dialect's answer, as it travels to Envoy: the HTTP status and body."""
    pairs = {k: v for k, v in (error.trailing_metadata() or ()) if isinstance(v, str)}
    return int(pairs["x-http-status"]), json.loads(pairs["x-http-body"])


async def test_a_reader_token_may_not_cancel_and_is_told_which_role_may(api: Api) -> None:
    task_id = await api.task(task_pb2.SCOPE_DATABASE, "db")
    reader = bearer(await api.token(Role.READER))
    assert (await api.reader.GetTask(task_service_pb2.GetTaskRequest(task_id=task_id), metadata=reader)).task
    with pytest.raises(aio.AioRpcError) as refused:
        await api.reader.CancelTask(task_service_pb2.CancelTaskRequest(task_id=task_id), metadata=reader)
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    message = refused.value.details() or ""
    assert "cancelling a task needs an operator or writer token" in message
    assert "this token is a reader" in message
    assert "tasktrail tokens create --role operator" in message
    assert await api.status(task_id) == task_pb2.TASK_STATUS_PENDING  # nothing happened


async def test_an_operator_token_reads_and_cancels_but_never_writes(api: Api) -> None:
    task_id = await api.task(task_pb2.SCOPE_DATABASE, "db")
    operator = bearer(await api.token(Role.OPERATOR, "database"))
    done = await api.reader.CancelTask(task_service_pb2.CancelTaskRequest(task_id=task_id), metadata=operator)
    assert done.task.status in (task_pb2.TASK_STATUS_CANCELING, task_pb2.TASK_STATUS_CANCELED)
    request = writer_service_pb2.CreateTaskRequest(scope=task_pb2.SCOPE_DATABASE, entity_id="db", type="x")
    with pytest.raises(aio.AioRpcError) as refused:
        await api.writer.CreateTask(request, metadata=operator)
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert refused.value.details() == (
        "writing tasks needs a writer token; this token is an operator"
        " (tasktrail tokens create --role writer makes one)"
    )


async def test_a_writer_token_cancels(api: Api) -> None:
    task_id = await api.task(task_pb2.SCOPE_HOST, "h")
    done = await api.reader.CancelTask(
        task_service_pb2.CancelTaskRequest(task_id=task_id), metadata=bearer(api.writer_token)
    )
    assert done.task.status in (task_pb2.TASK_STATUS_CANCELING, task_pb2.TASK_STATUS_CANCELED)


async def test_the_crdb_cancel_over_grpc_needs_an_operator_token(api: Api) -> None:
    task_id = await api.task(task_pb2.SCOPE_CRDB, "1d7741cc-1110-4e2f-bc6c-935292783d24")
    reader = bearer(await api.token(Role.READER, "crdb"))
    assert (await api.crdb.GetCrdbTask(crdb_pb2.GetCrdbTaskRequest(task_id=task_id), metadata=reader)).id == task_id
    with pytest.raises(aio.AioRpcError) as refused:
        await api.crdb.CancelCrdbTask(crdb_pb2.CancelCrdbTaskRequest(task_id=task_id), metadata=reader)
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    status, body = http_hint(refused.value)
    assert status == 403
    assert body["error_code"] == "forbidden"
    assert "operator or writer token" in body["description"]
    operator = bearer(await api.token(Role.OPERATOR, "crdb"))
    done = await api.crdb.CancelCrdbTask(crdb_pb2.CancelCrdbTaskRequest(task_id=task_id), metadata=operator)
    assert done.id == task_id
    assert await api.status(task_id) == task_pb2.TASK_STATUS_CANCELED


async def test_an_enterprise_user_still_cancels_crdb_tasks(api: Api, store: Store) -> None:
    await store.write(lambda tx: users.create_user(tx, "ops@example.com", "pw"))
    basic = (("authorization", "Basic " + base64.b64encode(b"ops@example.com:pw").decode()),)
    first = await api.task(task_pb2.SCOPE_CRDB, "1d7741cc-1110-4e2f-bc6c-935292783d24")
    assert (await api.crdb.CancelCrdbTask(crdb_pb2.CancelCrdbTaskRequest(task_id=first), metadata=basic)).id == first
    second = await api.task(task_pb2.SCOPE_CRDB, "1d7741cc-1110-4e2f-bc6c-935292783d24")
    await api.reader.CancelTask(task_service_pb2.CancelTaskRequest(task_id=second), metadata=basic)
    assert await api.status(second) == task_pb2.TASK_STATUS_CANCELED
    request = writer_service_pb2.CreateTaskRequest(scope=task_pb2.SCOPE_CRDB, entity_id="g", type="x")
    with pytest.raises(aio.AioRpcError) as refused:
        await api.writer.CreateTask(request, metadata=basic)
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert refused.value.details() == (
        "writing tasks needs a writer token; an enterprise user only reads and cancels tasks"
    )


async def test_cloud_keys_still_cancel_their_own_tasks(api: Api, cloud_account: tuple[str, str, str]) -> None:
    account_id, api_key, secret = cloud_account
    keys = (("x-api-key", api_key), ("x-api-secret-key", secret))
    task_id = await api.task(task_pb2.SCOPE_ACCOUNT, account_id)
    await api.reader.CancelTask(task_service_pb2.CancelTaskRequest(task_id=task_id), metadata=keys)
    assert await api.status(task_id) == task_pb2.TASK_STATUS_CANCELED


async def test_a_caller_without_a_credential_on_port_3000_cancels_but_never_writes(api: Api) -> None:
    """The anonymous principal of the native API's REST face (Envoy marks its calls)."""
    anonymous = ((ANONYMOUS_HEADER, "1"),)
    task_id = await api.task(task_pb2.SCOPE_DATABASE, "db")
    await api.reader.CancelTask(task_service_pb2.CancelTaskRequest(task_id=task_id), metadata=anonymous)
    assert await api.status(task_id) == task_pb2.TASK_STATUS_CANCELED
    request = writer_service_pb2.CreateTaskRequest(scope=task_pb2.SCOPE_DATABASE, entity_id="db", type="x")
    with pytest.raises(aio.AioRpcError) as refused:
        await api.writer.CreateTask(request, metadata=anonymous)
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    # And the control-plane dialect, open: anyone cancels, as on pgEdge's.
    open_task = await api.task(task_pb2.SCOPE_DATABASE, "db")
    cancel = controlplane_pb2.CancelDatabaseTaskRequest(database_id="db", task_id=open_task)
    assert (await api.controlplane.CancelDatabaseTask(cancel)).task_id == open_task


async def test_the_control_plane_cancel_with_a_token_needs_an_operator(guarded: Api) -> None:
    task_id = await guarded.task(task_pb2.SCOPE_DATABASE, "db")
    cancel = controlplane_pb2.CancelDatabaseTaskRequest(database_id="db", task_id=task_id)
    reader = bearer(await guarded.token(Role.READER, "database"))
    listed = await guarded.controlplane.ListDatabaseTasks(
        controlplane_pb2.ListDatabaseTasksRequest(database_id="db"), metadata=reader
    )
    assert [t.task_id for t in listed.tasks] == [task_id]
    with pytest.raises(aio.AioRpcError) as refused:
        await guarded.controlplane.CancelDatabaseTask(cancel, metadata=reader)
    status, body = http_hint(refused.value)
    assert (status, body["name"]) == (403, "forbidden")
    assert "operator or writer token" in body["message"]
    assert await guarded.status(task_id) == task_pb2.TASK_STATUS_PENDING
    operator = bearer(await guarded.token(Role.OPERATOR, "database"))
    assert (await guarded.controlplane.CancelDatabaseTask(cancel, metadata=operator)).status == "canceling"
