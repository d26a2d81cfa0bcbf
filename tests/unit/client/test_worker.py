"""The worker protocol and the SDK on an in-process server (a real grpc.aio
server on loopback), with short durations."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc import aio
from sqlalchemy import func, select

from tasktrail.api import server
from tasktrail.api.server import ServerSettings
from tasktrail.client import AsyncTaskClient, AsyncTaskWriter, NotFound, TaskCanceled, WorkerPolicy, wait_request
from tasktrail.core.housekeeping import Housekeeping
from tasktrail.core.model import Retention
from tasktrail.core.tasks import Timing
from tasktrail.store import open_store
from tasktrail.store.schema import tasks
from tasktrail.v1 import task_pb2, task_service_pb2_grpc, writer_service_pb2

pytestmark = pytest.mark.anyio
FAST = WorkerPolicy(lease=1.0, heartbeat=0.2, flush_interval=0.02)


@pytest.fixture
async def target(database_url: str) -> AsyncIterator[str]:
    running = await server.start(
        ServerSettings(
            database_url=database_url,
            port=0,
            auth=False,
            timing=Timing(lease_min=50_000, max_wait=2_000_000, watch_keepalive=500_000),
            retention=Retention(database=None, host=None, account=300_000, crdb=500_000_000),
            housekeeping=Housekeeping(lease_check_interval=0.05, sweep_interval=0.05),
            change_poll_interval=0.01,
        )
    )
    yield f"127.0.0.1:{running.port}"
    await running.stop(1)


async def test_a_worker_completes_on_normal_exit(target: str) -> None:
    async with AsyncTaskWriter(target, "", policy=FAST) as writer, AsyncTaskClient(target, "") as reader:
        task = await writer.create("database", "db1", "node_backup")
        async with writer.task(task.task_id) as t:
            for i in range(250):
                t.log(f"line {i}", i=i)
            await t.progress(50, "copying", [("n1", "copying")])
            t.result(resource_id="20250618-175430F", resource={"size_mb": 22})
        done = await reader.get(task.task_id)
        assert done.status == task_pb2.TASK_STATUS_COMPLETED
        assert done.result.resource_id == "20250618-175430F"
        assert done.progress.targets[0].name == "n1"
        assert not done.HasField("lease_expires_at")
        assert [e.message async for e in reader.log(task.task_id)] == [f"line {i}" for i in range(250)]


async def test_an_exception_fails_the_task_with_its_message(target: str) -> None:
    async with AsyncTaskWriter(target, "", policy=FAST) as writer, AsyncTaskClient(target, "") as reader:
        task = await writer.create("database", "db1", "update")

        async def work() -> None:
            async with writer.task(task.task_id) as t:
                t.log("refreshing current state")
                raise RuntimeError("failed to get current state: connection refused")

        with pytest.raises(RuntimeError):
            await work()
        failed = await reader.get(task.task_id)
        assert failed.status == task_pb2.TASK_STATUS_FAILED
        assert (failed.error.code, failed.error.message) == (
            "RuntimeError",
            "failed to get current state: connection refused",
        )
        assert [e.message async for e in reader.log(task.task_id)] == ["refreshing current state"]


async def test_a_cancel_reaches_the_worker_on_both_paths(target: str) -> None:
    async with AsyncTaskWriter(target, "", policy=FAST) as writer, AsyncTaskClient(target, "") as reader:
        task = await writer.create("database", "db1", "switchover")
        async with writer.task(task.task_id) as t:
            stub = writer.stub
            heartbeat = await stub.Heartbeat(
                writer_service_pb2.HeartbeatRequest(task_id=task.task_id, lease_id=t.lease_id)
            )
            assert not heartbeat.cancel_requested
            stream = stub.WatchTask(writer_service_pb2.WatchTaskRequest(task_id=task.task_id, lease_id=t.lease_id))
            first = await stream.read()
            assert isinstance(first, writer_service_pb2.WatchTaskResponse)
            assert (first.status, first.cancel_requested) == (task_pb2.TASK_STATUS_RUNNING, False)
            started = time.monotonic()
            await reader.cancel(task.task_id)
            told = await asyncio.wait_for(stream.read(), 2)
            assert isinstance(told, writer_service_pb2.WatchTaskResponse)
            assert (told.cancel_requested, told.cancel_forced) == (True, False)
            assert time.monotonic() - started < 0.5
            heartbeat = await stub.Heartbeat(
                writer_service_pb2.HeartbeatRequest(task_id=task.task_id, lease_id=t.lease_id)
            )
            assert (heartbeat.cancel_requested, heartbeat.status) == (True, task_pb2.TASK_STATUS_CANCELING)
            await asyncio.wait_for(t.canceled(), 2)
            stream.cancel()
            raise TaskCanceled()
        canceled = await reader.get(task.task_id)
        assert canceled.status == task_pb2.TASK_STATUS_CANCELED


async def test_a_lost_worker_fails_the_task(target: str) -> None:
    async with AsyncTaskWriter(target, "") as writer, AsyncTaskClient(target, "") as reader:
        task = await writer.create("database", "db1", "update")
        claim = writer_service_pb2.ClaimTaskRequest(task_id=task.task_id, worker_name="ghost")
        claim.lease_duration.FromMilliseconds(100)
        lease = (await writer.stub.ClaimTask(claim)).lease_id
        ended = await reader.wait(task.task_id, timeout=3)
        assert ended.status == task_pb2.TASK_STATUS_FAILED
        assert ended.error.code == "lease_expired"
        with pytest.raises(aio.AioRpcError) as late:
            await writer.stub.Heartbeat(writer_service_pb2.HeartbeatRequest(task_id=task.task_id, lease_id=lease))
        assert late.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_retention_by_scope_and_the_sweeper(target: str, database_url: str) -> None:
    async with AsyncTaskWriter(target, "") as writer, AsyncTaskClient(target, "") as reader:
        kept = await writer.create("database", "db1", "create")
        gone = await writer.create("account", "acct-1", "subscriptionCreateRequest")  # 0.3 s in this server
        for task in (kept, gone):
            for status in (task_pb2.TASK_STATUS_RUNNING, task_pb2.TASK_STATUS_COMPLETED):
                await writer.stub.UpdateTask(writer_service_pb2.UpdateTaskRequest(task_id=task.task_id, status=status))
        assert not (await reader.get(kept.task_id)).HasField("expire_at")
        assert (await reader.get(gone.task_id)).HasField("expire_at")
        await asyncio.sleep(0.5)
        with pytest.raises(NotFound) as missing:  # the SDK's typed error (a grpc.RpcError too)
            await reader.get(gone.task_id)
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        assert missing.value.reason == "TASK_NOT_FOUND"
        assert isinstance(missing.value.__cause__, aio.AioRpcError)
        assert (await reader.get(kept.task_id)).status == task_pb2.TASK_STATUS_COMPLETED
    store = open_store(database_url)
    try:
        count = select(func.count()).select_from(tasks).where(tasks.c.task_id == gone.task_id)
        assert await store.read(lambda r: r.rows(count, {})) == [(0,)]  # swept: the row is gone
    finally:
        await store.close()


async def test_wait_is_capped_by_the_server(target: str) -> None:
    async with AsyncTaskWriter(target, "") as writer:
        task = await writer.create("database", "db1", "update")
    started = time.monotonic()
    async with aio.insecure_channel(target) as channel:
        stub = task_service_pb2_grpc.TaskServiceStub(channel)
        # One call asking for an hour: the server caps it (at 2 s here).
        reply = await stub.WaitTask(wait_request(task.task_id, 3600), timeout=10)
    assert not reply.done
    assert 1.9 < time.monotonic() - started < 4
