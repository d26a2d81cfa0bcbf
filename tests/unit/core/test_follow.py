"""Live log tails on in-process servers: the follow contract as a property.

Concurrent writers append while followers connect, disconnect at random points
and resume with their last entry id, some of them slow enough to fall behind
the feed's buffer; every follower ends with exactly the store's sequence:
nothing missing, nothing twice, nothing out of order, and the end frame.

With several replicas (servers on one store, each with its own connections,
change feed and log hub, as separate processes have), writers append through
one replica while followers follow, and resume, on others: on PostgreSQL what
wakes them is LISTEN/NOTIFY, on SQLite the file's change counter."""

from __future__ import annotations

import asyncio
import random
import tempfile
from pathlib import Path

import grpc
import pytest
from grpc import aio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasktrail.api import server
from tasktrail.api.server import ServerSettings
from tasktrail.core.follow import FollowSettings
from tasktrail.store import migrate
from tasktrail.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc, writer_service_pb2, writer_service_pb2_grpc
from tests.support import databases

EOF = aio.EOF


async def all_entries(reader: task_service_pb2_grpc.TaskServiceAsyncStub, task_id: str) -> list[str]:
    ids: list[str] = []
    after = ""
    while True:
        page = await reader.GetTaskLog(task_service_pb2.GetTaskLogRequest(task_id=task_id, after_entry_id=after))
        ids.extend(e.entry_id for e in page.entries)
        if not page.has_more:
            return ids
        after = page.last_entry_id


async def follower(
    readers: list[task_service_pb2_grpc.TaskServiceAsyncStub], task_id: str, cuts: list[int], slow: bool, seed: int
) -> tuple[list[str], int, int]:
    """Follows until the end frame, dropping the connection after each count in `cuts`
    entries and resuming, on any replica, after the last entry it got. Returns
    (ids, end status, resumes)."""
    rng = random.Random(seed)
    got: list[str] = []
    resumes = 0
    cuts = list(cuts)
    while True:
        reader = readers[(seed + resumes) % len(readers)]
        call = reader.FollowTaskLog(
            task_service_pb2.FollowTaskLogRequest(task_id=task_id, after_entry_id=got[-1] if got else "")
        )
        budget = cuts.pop(0) if cuts else None
        async for frame in call:
            kind = frame.WhichOneof("frame")
            if kind == "entries":
                got.extend(e.entry_id for e in frame.entries.entries)
                if slow:
                    await asyncio.sleep(rng.uniform(0, 0.02))
                if budget is not None:
                    budget -= len(frame.entries.entries)
                    if budget <= 0:
                        call.cancel()  # a dropped connection, mid-stream
                        break
            elif kind == "end":
                return got, frame.end.task_status, resumes
            elif kind == "error":
                raise AssertionError(frame.error.message)
        resumes += 1


async def scenario(
    writers: int, batches: list[int], followers: int, cuts: list[list[int]], late: int, replicas: int = 1
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = databases.fresh_url(Path(tmp))
        await asyncio.to_thread(migrate, url)  # it runs a loop of its own on PostgreSQL
        running = [
            await server.start(
                ServerSettings(
                    database_url=url,
                    port=0,
                    auth=False,
                    follow=FollowSettings(heartbeat=0.2, buffer=16, batch=7),  # small: every path is taken
                    change_poll_interval=0.01,
                )
            )
            for _ in range(replicas)
        ]
        channels = [aio.insecure_channel(f"127.0.0.1:{r.port}") for r in running]
        try:
            # Writes go through the first replica; followers start on the others (all, with one).
            writer = writer_service_pb2_grpc.TaskWriterServiceStub(channels[0])
            readers = [task_service_pb2_grpc.TaskServiceStub(c) for c in channels[1:] or channels]
            task = (
                await writer.CreateTask(
                    writer_service_pb2.CreateTaskRequest(scope=task_pb2.SCOPE_DATABASE, entity_id="f", type="t")
                )
            ).task
            await writer.UpdateTask(
                writer_service_pb2.UpdateTaskRequest(task_id=task.task_id, status=task_pb2.TASK_STATUS_RUNNING)
            )

            async def write(w: int) -> None:
                rng = random.Random(w)
                for n, size in enumerate(batches):
                    entries = [task_pb2.LogEntry(message=f"w{w} b{n} e{i}") for i in range(size)]
                    await writer.AppendLogEntries(
                        writer_service_pb2.AppendLogEntriesRequest(task_id=task.task_id, entries=entries)
                    )
                    await asyncio.sleep(rng.uniform(0, 0.01))

            following = [
                asyncio.create_task(follower(readers, task.task_id, cuts[i % len(cuts)], i % 3 == 0, i))
                for i in range(followers)
            ]
            await asyncio.gather(*(write(w) for w in range(writers)))
            # Some followers join only now, from the start of a long log.
            following += [asyncio.create_task(follower(readers, task.task_id, [], False, 100 + i)) for i in range(late)]
            await writer.UpdateTask(
                writer_service_pb2.UpdateTaskRequest(task_id=task.task_id, status=task_pb2.TASK_STATUS_COMPLETED)
            )
            results = await asyncio.wait_for(asyncio.gather(*following), 30)
            truth = await all_entries(readers[-1], task.task_id)
            assert len(truth) == writers * sum(batches)
            for got, status, _resumes in results:
                assert got == truth  # nothing missing, nothing twice, nothing out of order
                assert status == task_pb2.TASK_STATUS_COMPLETED
        finally:
            for channel in channels:
                await channel.close(None)
            for r in running:
                await r.stop(1)
            databases.drop(url)


@pytest.mark.anyio
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    writers=st.integers(1, 4),
    batches=st.lists(st.integers(1, 12), min_size=1, max_size=8),
    followers=st.integers(1, 6),
    cuts=st.lists(st.lists(st.integers(1, 20), max_size=4), min_size=1, max_size=3),
    late=st.integers(0, 2),
)
async def test_every_follower_gets_the_store_sequence(
    writers: int, batches: list[int], followers: int, cuts: list[list[int]], late: int
) -> None:
    await scenario(writers, batches, followers, cuts, late)


@pytest.mark.anyio
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    writers=st.integers(1, 4),
    batches=st.lists(st.integers(1, 12), min_size=1, max_size=8),
    followers=st.integers(1, 6),
    cuts=st.lists(st.lists(st.integers(1, 20), max_size=4), min_size=1, max_size=3),
    late=st.integers(0, 2),
    replicas=st.integers(2, 3),
)
async def test_followers_on_other_replicas_get_the_store_sequence(
    writers: int, batches: list[int], followers: int, cuts: list[list[int]], late: int, replicas: int
) -> None:
    await scenario(writers, batches, followers, cuts, late, replicas)


@pytest.mark.anyio
async def test_follow_frames(database_url: str) -> None:
    running = await server.start(
        ServerSettings(database_url=database_url, port=0, auth=False, follow=FollowSettings(heartbeat=0.1))
    )
    try:
        async with aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            writer = writer_service_pb2_grpc.TaskWriterServiceStub(channel)
            reader = task_service_pb2_grpc.TaskServiceStub(channel)
            with pytest.raises(aio.AioRpcError) as missing:
                await reader.FollowTaskLog(task_service_pb2.FollowTaskLogRequest(task_id="nope")).read()
            assert missing.value.code() == grpc.StatusCode.NOT_FOUND
            task = (
                await writer.CreateTask(
                    writer_service_pb2.CreateTaskRequest(scope=task_pb2.SCOPE_DATABASE, entity_id="f", type="t")
                )
            ).task
            call = reader.FollowTaskLog(task_service_pb2.FollowTaskLogRequest(task_id=task.task_id))

            async def read() -> task_service_pb2.FollowTaskLogResponse | None:
                frame = await call.read()
                return None if frame is EOF else frame  # type: ignore[return-value]

            first = await read()
            assert first is not None
            assert first.WhichOneof("frame") == "heartbeat"  # an idle follow says it is alive
            await writer.UpdateTask(
                writer_service_pb2.UpdateTaskRequest(task_id=task.task_id, status=task_pb2.TASK_STATUS_RUNNING)
            )
            await writer.AppendLogEntries(
                writer_service_pb2.AppendLogEntriesRequest(
                    task_id=task.task_id, entries=[task_pb2.LogEntry(message="hello")]
                )
            )
            frames = []
            while True:
                frame = await read()
                assert frame is not None
                frames.append(frame.WhichOneof("frame"))
                if frames[-1] == "entries":
                    assert [e.message for e in frame.entries.entries] == ["hello"]
                    break
            await reader.CancelTask(task_service_pb2.CancelTaskRequest(task_id=task.task_id))
            rest = []
            while (more := await read()) is not None:
                rest.append(more)
            kinds = [f.WhichOneof("frame") for f in rest if f.WhichOneof("frame") != "heartbeat"]
            assert kinds[-1] == "end"
            assert set(kinds[:-1]) == {"entries"}
            messages = [e.message for f in rest if f.WhichOneof("frame") == "entries" for e in f.entries.entries]
            assert messages == ["task is canceling", "task successfully canceled"]
            assert rest[-1].end.task_status == task_pb2.TASK_STATUS_CANCELED
    finally:
        await running.stop(1)


def test_cached_frames_are_bounded_by_their_text() -> None:
    from tasktrail.core.follow import BatchCache, Entries
    from tasktrail.core.model import LogEntry

    cache: BatchCache[str] = BatchCache(size=100, max_text=1000)
    for i in range(20):
        batch = [LogEntry(f"{i:08d}-0000-7000-8000-000000000000", 0, "x" * 300, size=300)]
        cache.get(Entries("t", batch), "grpc", lambda: "frame")
    assert len(cache._items) == 3  # 3 x 300 characters fit in 1000, not 20 of them
