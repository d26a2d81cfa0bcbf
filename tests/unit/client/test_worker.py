"""The worker protocol and the SDK on an in-process server (a real grpc.aio
server on loopback), with short durations."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
from grpc import aio
from sqlalchemy import func, select

from tasktrail.api import server
from tasktrail.api.server import ServerSettings
from tasktrail.client import (
    AsyncTaskClient,
    AsyncTaskWriter,
    LogRefused,
    NotFound,
    RetryPolicy,
    TaskCanceled,
    WorkerPolicy,
    wait_request,
)
from tasktrail.core.housekeeping import Housekeeping
from tasktrail.core.model import Retention
from tasktrail.core.tasks import Timing
from tasktrail.core.validation import Limits
from tasktrail.store import open_store
from tasktrail.store.schema import tasks
from tasktrail.v1 import task_pb2, task_service_pb2_grpc, writer_service_pb2, writer_service_pb2_grpc

pytestmark = pytest.mark.anyio
FAST = WorkerPolicy(lease=1.0, heartbeat=0.2, flush_interval=0.02)


QUICK = RetryPolicy(initial=0.01, maximum=0.05, deadline=5.0)


def settings(database_url: str, limits: Limits | None = None) -> ServerSettings:
    return ServerSettings(
        database_url=database_url,
        port=0,
        auth=False,
        limits=limits or Limits(),
        timing=Timing(lease_min=50_000, max_wait=2_000_000, watch_keepalive=500_000),
        retention=Retention(database=None, host=None, account=300_000, crdb=500_000_000),
        housekeeping=Housekeeping(lease_check_interval=0.05, sweep_interval=0.05),
        change_poll_interval=0.01,
    )


@pytest.fixture
async def target(database_url: str) -> AsyncIterator[str]:
    running = await server.start(settings(database_url))
    yield f"127.0.0.1:{running.port}"
    await running.stop(1)


class LoseAnswers(aio.UnaryUnaryClientInterceptor):
    """The network on a bad day: the first `times` calls of `method` reach the
    server and are done, and their answers are lost (DEADLINE_EXCEEDED)."""

    def __init__(self, method: str, times: int = 1, meanwhile: Callable[[], None] | None = None) -> None:
        self.method, self.left, self.meanwhile, self.lost = method, times, meanwhile, 0

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        call = await continuation(details, request)
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        if method.endswith("/" + self.method) and self.left > 0:
            self.left -= 1
            await call  # done on the server
            if self.meanwhile is not None:
                self.meanwhile()
            self.lost += 1
            raise aio.AioRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, aio.Metadata(), aio.Metadata(), "lost", None)
        return call


def through(writer: AsyncTaskWriter, target: str, interceptor: LoseAnswers) -> aio.Channel:
    """Send `writer`'s calls through `interceptor`; the channel, to close."""
    channel = aio.insecure_channel(target, interceptors=[interceptor])
    writer.stub = writer_service_pb2_grpc.TaskWriterServiceStub(channel)
    return channel


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


async def test_a_lost_append_answer_sends_the_same_batch_again(target: str) -> None:
    """The batch in flight is sent again as it was (its append_id is its batch);
    lines logged meanwhile go in the next one: each line once, in order."""
    worker: list[Any] = []
    lose = LoseAnswers("AppendLogEntries", times=2, meanwhile=lambda: worker[0].log("meanwhile"))
    async with AsyncTaskWriter(target, "", policy=FAST, retry=QUICK) as writer, AsyncTaskClient(target, "") as reader:
        task = await writer.create("database", "db1", "node_backup")
        channel = through(writer, target, lose)
        async with writer.task(task.task_id) as t:
            worker.append(t)
            for i in range(5):
                t.log(f"line {i}")
            await t.flush()
            t.log("after")
        await channel.close(None)
        assert lose.lost == 2
        assert (await reader.get(task.task_id)).status == task_pb2.TASK_STATUS_COMPLETED
        logged = [e.message async for e in reader.log(task.task_id)]
        assert logged == [*(f"line {i}" for i in range(5)), "meanwhile", "meanwhile", "after"]


async def test_lost_answers_to_create_and_complete_answer_the_same(target: str) -> None:
    """A retried create finds the task it made (one task, not two); a retried
    completion finds the task completed (no error after a success)."""
    for method in ("CreateTask", "UpdateTask"):
        lose = LoseAnswers(method)
        async with (
            AsyncTaskWriter(target, "", policy=FAST, retry=QUICK) as writer,
            AsyncTaskClient(target, "") as reader,
        ):
            channel = through(writer, target, lose)
            task = await writer.create("database", f"lost-{method.lower()}", "node_backup")
            async with writer.task(task.task_id) as t:
                t.log("working")
            await channel.close(None)
            assert lose.lost == 1
            listed = [x.task_id async for x in reader.list("database", f"lost-{method.lower()}")]
            assert listed == [task.task_id]
            assert (await reader.get(task.task_id)).status == task_pb2.TASK_STATUS_COMPLETED


async def test_a_line_the_server_never_takes_is_refused_where_it_is_logged(target: str) -> None:
    async with AsyncTaskWriter(target, "", policy=FAST) as writer, AsyncTaskClient(target, "") as reader:
        task = await writer.create("database", "db1", "node_backup")
        async with writer.task(task.task_id) as t:
            t.log("before")
            with pytest.raises(ValueError, match="NUL"):
                t.log("a NUL \x00 inside")
            with pytest.raises(ValueError, match="at most 65536 characters"):
                t.log("x" * (64 * 1024 + 1))
            with pytest.raises(ValueError, match="fields are at most"):
                t.log("fields too big", blob="y" * (64 * 1024))
            t.log("after")
        assert (await reader.get(task.task_id)).status == task_pb2.TASK_STATUS_COMPLETED
        assert [e.message async for e in reader.log(task.task_id)] == ["before", "after"]


async def test_lines_refused_for_good_fail_the_task_never_complete_it(database_url: str) -> None:
    """A server that will never take a batch (here: batches of at most 10): the
    block raises LogRefused, later lines are refused at once, and the task ends
    FAILED saying why, never COMPLETED without its lines."""
    running = await server.start(settings(database_url, Limits(max_append_batch=10)))
    target = f"127.0.0.1:{running.port}"
    try:
        policy = WorkerPolicy(lease=1.0, heartbeat=0.2, flush_interval=10.0, batch_size=50)
        async with AsyncTaskWriter(target, "", policy=policy) as writer, AsyncTaskClient(target, "") as reader:
            task = await writer.create("database", "db1", "node_backup")
            t = writer.task(task.task_id)
            await t.__aenter__()
            for i in range(20):
                t.log(f"line {i}")
            with pytest.raises(LogRefused) as refused:
                await t.__aexit__(None, None, None)
            assert refused.value.lines == 20
            with pytest.raises(LogRefused):
                t.log("later")
            ended = await reader.get(task.task_id)
            assert (ended.status, ended.error.code) == (task_pb2.TASK_STATUS_FAILED, "log_refused")
            assert "20 log lines" in ended.error.message
    finally:
        await running.stop(1)
