"""The native gRPC API on an in-process server (a real grpc.aio server and
channel on loopback; Envoy is not involved)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc import aio

from tasktrail.api import server
from tasktrail.api.server import ServerSettings
from tasktrail.core.validation import Limits
from tasktrail.v1 import (
    task_pb2,
    task_service_pb2,
    task_service_pb2_grpc,
    writer_service_pb2,
    writer_service_pb2_grpc,
)

pytestmark = pytest.mark.anyio


class Api:
    def __init__(self, channel: aio.Channel) -> None:
        self.reader = task_service_pb2_grpc.TaskServiceStub(channel)
        self.writer = writer_service_pb2_grpc.TaskWriterServiceStub(channel)

    async def create(
        self, entity: str = "db1", scope: task_pb2.Scope.ValueType = task_pb2.SCOPE_DATABASE, **kw: str
    ) -> task_pb2.Task:
        request = writer_service_pb2.CreateTaskRequest(scope=scope, entity_id=entity, type="create")
        for name, value in kw.items():
            setattr(request, name, value)
        reply = await self.writer.CreateTask(request)
        return reply.task


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[Api]:
    running = await server.start(
        ServerSettings(
            database_url=database_url, port=0, auth=False, limits=Limits(max_page_size=4, default_page_size=3)
        )
    )
    async with aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        yield Api(channel)
    await running.stop(1)


def error_reason(err: aio.AioRpcError) -> str:
    pairs: tuple[tuple[str, str | bytes], ...] = tuple(err.trailing_metadata() or ())
    for key, value in pairs:
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
            info = error_details_pb2.ErrorInfo()
            status.details[0].Unpack(info)
            return str(info.reason)
    raise AssertionError("no error details")


async def test_create_get_update_append(api: Api) -> None:
    task = await api.create(node_name="n1")
    assert task.status == task_pb2.TASK_STATUS_PENDING
    assert uuid.UUID(task.task_id).version == 7
    assert task.node_name == "n1"
    running = await api.writer.UpdateTask(
        writer_service_pb2.UpdateTaskRequest(
            task_id=task.task_id,
            status=task_pb2.TASK_STATUS_RUNNING,
            progress=task_pb2.TaskProgress(percent=40, step="copying"),
        )
    )
    assert running.task.HasField("started_at")
    assert running.task.progress.step == "copying"
    ids = (
        await api.writer.AppendLogEntries(
            writer_service_pb2.AppendLogEntriesRequest(
                task_id=task.task_id,
                entries=[task_pb2.LogEntry(message="one"), task_pb2.LogEntry(message="two")],
            )
        )
    ).entry_ids
    assert list(ids) == sorted(ids)
    got = (await api.reader.GetTask(task_service_pb2.GetTaskRequest(task_id=task.task_id))).task
    assert got.last_entry_id == ids[-1]
    done = await api.writer.UpdateTask(
        writer_service_pb2.UpdateTaskRequest(
            task_id=task.task_id,
            status=task_pb2.TASK_STATUS_COMPLETED,
            result=task_pb2.TaskResult(resource_id="77899", resource_path="/v1/subscriptions/77899"),
        )
    )
    assert done.task.HasField("completed_at")
    assert done.task.result.resource_id == "77899"


async def test_errors_carry_a_reason(api: Api) -> None:
    with pytest.raises(aio.AioRpcError) as missing:
        await api.reader.GetTask(task_service_pb2.GetTaskRequest(task_id=str(uuid.uuid4())))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_reason(missing.value) == "TASK_NOT_FOUND"

    task = await api.create()
    with pytest.raises(aio.AioRpcError) as illegal:
        await api.writer.UpdateTask(
            writer_service_pb2.UpdateTaskRequest(task_id=task.task_id, status=task_pb2.TASK_STATUS_COMPLETED)
        )
    assert illegal.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(illegal.value) == "ILLEGAL_TRANSITION"

    assert (await api.create(task_id=task.task_id)).created_at == task.created_at  # a retry: the same task
    with pytest.raises(aio.AioRpcError) as taken:
        await api.create(task_id=task.task_id, node_name="n2")  # the same id, other content
    assert taken.value.code() == grpc.StatusCode.ALREADY_EXISTS

    with pytest.raises(aio.AioRpcError) as no_scope:
        await api.writer.CreateTask(writer_service_pb2.CreateTaskRequest(entity_id="x", type="create"))
    assert no_scope.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    with pytest.raises(aio.AioRpcError) as bad_entity:
        await api.create(entity="Not_An_Id")
    assert bad_entity.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_commit_phase_refuses_a_graceful_cancel(api: Api) -> None:
    task = await api.create()
    await api.writer.UpdateTask(
        writer_service_pb2.UpdateTaskRequest(
            task_id=task.task_id, status=task_pb2.TASK_STATUS_RUNNING, in_commit_phase=True
        )
    )
    with pytest.raises(aio.AioRpcError) as refused:
        await api.reader.CancelTask(task_service_pb2.CancelTaskRequest(task_id=task.task_id))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(refused.value) == "TASK_IN_COMMIT_PHASE"
    forced = await api.reader.CancelTask(task_service_pb2.CancelTaskRequest(task_id=task.task_id, force=True))
    assert forced.task.status == task_pb2.TASK_STATUS_CANCELING


async def test_list_pages_with_tokens_and_filters(api: Api) -> None:
    made = [await api.create(entity="paged") for _ in range(7)]
    await api.create(entity="other")
    await api.create(entity="h1", scope=task_pb2.SCOPE_HOST)
    await api.writer.UpdateTask(
        writer_service_pb2.UpdateTaskRequest(task_id=made[2].task_id, status=task_pb2.TASK_STATUS_RUNNING)
    )
    seen: list[str] = []
    request = task_service_pb2.ListTasksRequest(
        scope=task_pb2.SCOPE_DATABASE, entity_id="paged", sort_order=task_pb2.SORT_ORDER_ASCENDING
    )
    while True:
        page = await api.reader.ListTasks(request)
        assert len(page.tasks) <= 3  # the default page size
        seen.extend(t.task_id for t in page.tasks)
        if not page.next_page_token:
            break
        request.page_token = page.next_page_token
    assert seen == [t.task_id for t in made]

    newest_first = await api.reader.ListTasks(task_service_pb2.ListTasksRequest(page_size=100))
    assert len(newest_first.tasks) == 4  # capped at the maximum
    assert newest_first.next_page_token

    running = await api.reader.ListTasks(
        task_service_pb2.ListTasksRequest(statuses=[task_pb2.TASK_STATUS_RUNNING], page_size=4)
    )
    assert [t.task_id for t in running.tasks] == [made[2].task_id]

    hosts = await api.reader.ListTasks(task_service_pb2.ListTasksRequest(scope=task_pb2.SCOPE_HOST))
    assert [t.entity_id for t in hosts.tasks] == ["h1"]

    first = await api.reader.ListTasks(task_service_pb2.ListTasksRequest(scope=task_pb2.SCOPE_DATABASE))
    with pytest.raises(aio.AioRpcError) as changed:
        await api.reader.ListTasks(
            task_service_pb2.ListTasksRequest(scope=task_pb2.SCOPE_HOST, page_token=first.next_page_token)
        )
    assert changed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(aio.AioRpcError) as garbage:
        await api.reader.ListTasks(task_service_pb2.ListTasksRequest(page_token="not-a-token"))
    assert garbage.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_log_pages_forward(api: Api) -> None:
    task = await api.create()
    await api.writer.UpdateTask(
        writer_service_pb2.UpdateTaskRequest(task_id=task.task_id, status=task_pb2.TASK_STATUS_RUNNING)
    )
    entries = [task_pb2.LogEntry(message=str(i)) for i in range(10)]
    entries[3].fields.update({"duration_ms": 8972, "success": True, "nested": {"a": [1, "b"]}})
    ids = (
        await api.writer.AppendLogEntries(
            writer_service_pb2.AppendLogEntriesRequest(task_id=task.task_id, entries=entries)
        )
    ).entry_ids
    got: list[task_pb2.LogEntry] = []
    after = ""
    while True:
        page = await api.reader.GetTaskLog(
            task_service_pb2.GetTaskLogRequest(task_id=task.task_id, after_entry_id=after, page_size=4)
        )
        got.extend(page.entries)
        after = page.last_entry_id
        if not page.has_more:
            break
    assert [e.entry_id for e in got] == list(ids)
    assert dict(got[3].fields) == {"duration_ms": 8972, "success": True, "nested": {"a": [1, "b"]}}
    assert after == ids[-1]
    caught_up = await api.reader.GetTaskLog(
        task_service_pb2.GetTaskLogRequest(task_id=task.task_id, after_entry_id=after)
    )
    assert (list(caught_up.entries), caught_up.last_entry_id, caught_up.has_more) == ([], ids[-1], False)


async def test_imported_entry_ids_must_increase(api: Api) -> None:
    task = await api.create()
    await api.writer.UpdateTask(
        writer_service_pb2.UpdateTaskRequest(task_id=task.task_id, status=task_pb2.TASK_STATUS_RUNNING)
    )
    first = "0d639fbe-72bf-41ca-a81d-f7a524083cd4"
    await api.writer.AppendLogEntries(
        writer_service_pb2.AppendLogEntriesRequest(
            task_id=task.task_id, entries=[task_pb2.LogEntry(message="imported", entry_id=first)]
        )
    )
    with pytest.raises(aio.AioRpcError) as older:
        await api.writer.AppendLogEntries(
            writer_service_pb2.AppendLogEntriesRequest(
                task_id=task.task_id,
                entries=[task_pb2.LogEntry(message="older", entry_id="0a000000-0000-4000-8000-000000000000")],
            )
        )
    assert older.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    [made] = (
        await api.writer.AppendLogEntries(
            writer_service_pb2.AppendLogEntriesRequest(task_id=task.task_id, entries=[task_pb2.LogEntry(message="new")])
        )
    ).entry_ids
    assert made > first


async def test_health_and_reflection(api: Api, database_url: str) -> None:
    running = await server.start(ServerSettings(database_url=database_url, port=0, auth=False))
    try:
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        async with aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            reply = await health.Check(health_pb2.HealthCheckRequest(service="tasktrail.v1.TaskService"))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await running.stop(1)


async def test_a_retried_append_lands_once(api: Api) -> None:
    task = await api.create()
    await api.writer.UpdateTask(
        writer_service_pb2.UpdateTaskRequest(task_id=task.task_id, status=task_pb2.TASK_STATUS_RUNNING)
    )
    request = writer_service_pb2.AppendLogEntriesRequest(
        task_id=task.task_id, entries=[task_pb2.LogEntry(message="once")], append_id="batch-1"
    )
    first = (await api.writer.AppendLogEntries(request)).entry_ids
    again = (await api.writer.AppendLogEntries(request)).entry_ids  # the answer was lost: the worker sends it again
    assert list(again) == list(first)
    log = await api.reader.GetTaskLog(task_service_pb2.GetTaskLogRequest(task_id=task.task_id))
    assert [e.message for e in log.entries] == ["once"]


async def test_text_with_nul_gets_the_same_answer_on_every_store(api: Api) -> None:
    """PostgreSQL's text cannot hold U+0000: what would store one is refused, what
    looks one up finds nothing, and neither is an internal error, on SQLite too."""

    async def code(call: Awaitable[object]) -> grpc.StatusCode:
        try:
            await call
        except grpc.RpcError as error:
            return error.code()
        return grpc.StatusCode.OK

    refused = grpc.StatusCode.INVALID_ARGUMENT
    crdb = writer_service_pb2.CreateTaskRequest(scope=task_pb2.SCOPE_CRDB, entity_id="guid", type="a\x00b")
    assert await code(api.writer.CreateTask(crdb)) == refused
    assert await code(api.create(request_id="r\x00")) == refused
    task = await api.create()
    nul_worker = writer_service_pb2.ClaimTaskRequest(task_id=task.task_id, worker_name="w\x00")
    assert await code(api.writer.ClaimTask(nul_worker)) == refused
    claim = await api.writer.ClaimTask(writer_service_pb2.ClaimTaskRequest(task_id=task.task_id, worker_name="w"))
    entries = [task_pb2.LogEntry(message="a\x00b")]
    append = writer_service_pb2.AppendLogEntriesRequest(task_id=task.task_id, lease_id=claim.lease_id, entries=entries)
    assert await code(api.writer.AppendLogEntries(append)) == refused

    kept = task_pb2.LogEntry(message="fields hold it")
    kept.fields.update({"k": "v\x00w"})
    await api.writer.AppendLogEntries(
        writer_service_pb2.AppendLogEntriesRequest(task_id=task.task_id, lease_id=claim.lease_id, entries=[kept])
    )
    log = await api.reader.GetTaskLog(task_service_pb2.GetTaskLogRequest(task_id=task.task_id))
    assert [dict(e.fields) for e in log.entries] == [{"k": "v\x00w"}]

    missing = grpc.StatusCode.NOT_FOUND
    assert await code(api.reader.GetTask(task_service_pb2.GetTaskRequest(task_id="a\x00b"))) == missing
    update = writer_service_pb2.UpdateTaskRequest(task_id="a\x00b", status=task_pb2.TASK_STATUS_RUNNING)
    assert await code(api.writer.UpdateTask(update)) == missing
    listed = await api.reader.ListTasks(task_service_pb2.ListTasksRequest(scope=task_pb2.SCOPE_CRDB, entity_id="g\x00"))
    assert list(listed.tasks) == []
    # A type holding it matches no task, and the filter's other types still do.
    for types, found in ((["create", "x\x00"], [task.task_id]), (["x\x00"], [])):
        query = task_service_pb2.ListTasksRequest(scope=task_pb2.SCOPE_DATABASE, entity_id="db1", types=types)
        assert [t.task_id for t in (await api.reader.ListTasks(query)).tasks] == found
    # Entry ids never hold it: a cursor that does is refused, as PostgreSQL could not compare it.
    cursor = task_service_pb2.GetTaskLogRequest(task_id=task.task_id, after_entry_id=log.entries[0].entry_id + "\x00")
    assert await code(api.reader.GetTaskLog(cursor)) == refused
    follow = api.reader.FollowTaskLog(
        task_service_pb2.FollowTaskLogRequest(task_id=task.task_id, after_entry_id=cursor.after_entry_id)
    )
    with pytest.raises(grpc.RpcError) as following:
        [frame async for frame in follow]
    assert following.value.code() == refused


async def test_an_entry_timestamp_outside_protobufs_range_is_refused(api: Api) -> None:
    task = await api.create()
    claim = await api.writer.ClaimTask(writer_service_pb2.ClaimTaskRequest(task_id=task.task_id, worker_name="w"))
    late = task_pb2.LogEntry(message="from the year 318857")
    late.timestamp.seconds = 10**13
    request = writer_service_pb2.AppendLogEntriesRequest(task_id=task.task_id, lease_id=claim.lease_id, entries=[late])
    with pytest.raises(grpc.RpcError) as refused:
        await api.writer.AppendLogEntries(request)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    log = await api.reader.GetTaskLog(task_service_pb2.GetTaskLogRequest(task_id=task.task_id))
    assert list(log.entries) == []
