"""The floors: gRPC servers that do only the physical work of a path, behind
the same Envoy as tasktrail, so that each path is measured as a ratio to what
its work costs at the least.

    python -m bench.floor_server PORT                       # constant: a fixed task, no store
    python -m bench.floor_server PORT --store URL           # store: a point read by primary key; a page read
    python -m bench.floor_server PORT --log                 # fan-out: appends pushed to followers, no store
    python -m bench.floor_server PORT --log --store URL     # append: each batch inserted, then pushed

- **constant** measures what Envoy, transcoding, gRPC and the event loop cost
  with no store at all.
- **store** reads the task's row by its primary key straight through the
  driver (stdlib sqlite3 on SQLite; one prepared asyncpg statement on a pool
  on PostgreSQL) and fills the answer from it: the work a read of a running
  task cannot avoid, and nothing else (no authorization, no status mapping,
  no metrics, no cache). Its ListDatabaseTasks reads a keyset page of 20 in
  one statement, as a list of the same entity costs at the least.
- **fan-out** takes `AppendLogEntries`, encodes the batch once as a
  `FollowTaskLogResponse` frame and hands the same bytes to every follower of
  the task (`FollowTaskLog`), with no store: what pushing frames of that size
  to that many followers over the same Envoy costs.
- **append** is the fan-out floor that first inserts each batch in one
  statement through the driver, committed at tasktrail's default durability
  (SQLite: WAL, synchronous=FULL, on a writer thread; PostgreSQL:
  synchronous_commit on).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import signal
import sqlite3
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import asyncpg
import grpc
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from sqlalchemy.engine import make_url

from tasktrail.api.server import GRPC_OPTIONS
from tasktrail.controlplane.v1 import controlplane_pb2 as pb
from tasktrail.controlplane.v1 import controlplane_pb2_grpc as pb_grpc
from tasktrail.v1 import task_pb2, task_service_pb2, writer_service_pb2

TASK = pb.Task(
    scope="database",
    entity_id="db-0001",
    database_id="db-0001",
    task_id="019783f4-75f4-71e7-85a3-c9b96b345d77",
    created_at="2025-06-18T16:52:05Z",
    completed_at="2025-06-18T16:52:35Z",
    type="update",
    status="completed",
)
# The columns an answer is made of; the primary key picks the row.
POINT_READ = "SELECT scope, entity_id, task_id, type, status, created_at FROM tasks WHERE task_id = {}"

# A keyset page of 20, newest first, after a cursor (or the first page): one
# statement, the cursor's position read inside it.
PAGE_READ = (
    "SELECT scope, entity_id, task_id, type, status, created_at FROM tasks "
    "WHERE scope = 'database' AND entity_id = {entity} AND ({after} = '' OR (created_at, task_id) < "
    "(SELECT created_at, task_id FROM tasks WHERE task_id = {after})) "
    "ORDER BY created_at DESC, task_id DESC LIMIT 20"
)


class Constant(pb_grpc.ControlPlaneTaskServiceServicer):
    async def GetDatabaseTask(self, request: pb.GetDatabaseTaskRequest, context: Any) -> pb.Task:
        return TASK


def answer(row: Any) -> pb.Task:
    scope, entity_id, task_id, type_, status, created_at = row
    return pb.Task(
        scope=scope, entity_id=entity_id, database_id=entity_id, task_id=task_id, type=type_, status=status,
        created_at=str(created_at),
    )  # fmt: skip


class SqliteRead(pb_grpc.ControlPlaneTaskServiceServicer):
    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        self.sql = POINT_READ.format("?")
        self.page = PAGE_READ.replace("{entity}", "?").replace("{after}", "?")

    async def GetDatabaseTask(self, request: pb.GetDatabaseTaskRequest, context: Any) -> pb.Task:
        return answer(self.conn.execute(self.sql, (request.task_id,)).fetchone())

    async def ListDatabaseTasks(self, request: pb.ListDatabaseTasksRequest, context: Any) -> Any:
        rows = self.conn.execute(self.page, (request.database_id, request.after_task_id, request.after_task_id))
        return pb.ListDatabaseTasksResponse(tasks=[answer(row) for row in rows.fetchall()])


class PostgresRead(pb_grpc.ControlPlaneTaskServiceServicer):
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.sql = POINT_READ.format("$1")
        self.page = PAGE_READ.replace("{entity}", "$1").replace("{after}", "$2::text")

    async def GetDatabaseTask(self, request: pb.GetDatabaseTaskRequest, context: Any) -> pb.Task:
        async with self.pool.acquire() as conn:
            return answer(await conn.fetchrow(self.sql, request.task_id))  # asyncpg prepares and caches it

    async def ListDatabaseTasks(self, request: pb.ListDatabaseTasksRequest, context: Any) -> Any:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(self.page, request.database_id, request.after_task_id)
        return pb.ListDatabaseTasksResponse(tasks=[answer(row) for row in rows])


Insert = Callable[[str, Sequence[task_pb2.LogEntry]], Awaitable[None]]
# The SQL tasktrail's stores insert a batch with: one statement a batch.
SQLITE_INSERT = (
    "INSERT INTO log_entries (task_id, entry_id, timestamp, message, fields) "
    "SELECT ?, json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), "
    "json_extract(value, '$[3]') FROM json_each(?)"
)
POSTGRES_INSERT = (
    "INSERT INTO log_entries (task_id, entry_id, timestamp, message, fields) "
    "SELECT $1, * FROM unnest($2::text[], $3::bigint[], $4::text[], $5::text[])"
)


def rows(entries: Sequence[task_pb2.LogEntry]) -> list[tuple[str, int, str, str]]:
    return [
        (e.entry_id, e.timestamp.ToMicroseconds(), e.message, json.dumps(dict(e.fields), separators=(",", ":")))
        for e in entries
    ]


def sqlite_insert(path: str) -> Insert:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    writer = concurrent.futures.ThreadPoolExecutor(1)  # as tasktrail: commits off the event loop

    def insert(task_id: str, batch: str) -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(SQLITE_INSERT, (task_id, batch))
        conn.execute("COMMIT")

    async def run(task_id: str, entries: Sequence[task_pb2.LogEntry]) -> None:
        batch = json.dumps(rows(entries), separators=(",", ":"))
        await asyncio.get_running_loop().run_in_executor(writer, insert, task_id, batch)

    return run


def postgres_insert(pool: asyncpg.Pool) -> Insert:
    async def run(task_id: str, entries: Sequence[task_pb2.LogEntry]) -> None:
        ids, stamps, messages, fields = zip(*rows(entries), strict=True)
        async with pool.acquire() as conn:
            await conn.execute(POSTGRES_INSERT, task_id, list(ids), list(stamps), list(messages), list(fields))

    return run


HEARTBEAT = task_service_pb2.FollowTaskLogResponse(heartbeat=task_service_pb2.Heartbeat()).SerializeToString()


class LogFloor:
    """The writer calls the follow benchmark makes, and FollowTaskLog, with no
    lifecycle, no leases, no authorization and no resumption: frames are
    encoded once and the same bytes go to every follower."""

    def __init__(self, insert: Insert | None) -> None:
        self.insert = insert
        self.followers: dict[str, list[asyncio.Queue[bytes | None]]] = defaultdict(list)
        self.sequence = 0

    async def create(self, request: writer_service_pb2.CreateTaskRequest, context: Any) -> Any:
        task = task_pb2.Task(task_id=str(uuid.uuid4()), scope=request.scope, entity_id=request.entity_id,
                             type=request.type, status=task_pb2.TASK_STATUS_PENDING)  # fmt: skip
        return writer_service_pb2.CreateTaskResponse(task=task)

    async def update(self, request: writer_service_pb2.UpdateTaskRequest, context: Any) -> Any:
        if request.status in (task_pb2.TASK_STATUS_COMPLETED, task_pb2.TASK_STATUS_FAILED):
            end = task_service_pb2.FollowTaskLogResponse(end=task_service_pb2.FollowEnd(task_status=request.status))
            frame = end.SerializeToString()
            for queue in self.followers.pop(request.task_id, []):
                queue.put_nowait(frame)
                queue.put_nowait(None)
        return writer_service_pb2.UpdateTaskResponse(task=task_pb2.Task(task_id=request.task_id, status=request.status))

    async def append(self, request: writer_service_pb2.AppendLogEntriesRequest, context: Any) -> Any:
        entries = list(request.entries)
        now = time.time_ns() // 1000
        for entry in entries:
            self.sequence += 1
            entry.entry_id = f"00000000-0000-7000-8000-{self.sequence:012d}"  # increasing, as UUIDv7s are
            if not entry.HasField("timestamp"):
                entry.timestamp.FromMicroseconds(now)
        if self.insert is not None:
            await self.insert(request.task_id, entries)
        batch = task_service_pb2.LogEntryBatch(entries=entries)
        frame = task_service_pb2.FollowTaskLogResponse(entries=batch).SerializeToString()
        for queue in self.followers.get(request.task_id, ()):
            queue.put_nowait(frame)
        return writer_service_pb2.AppendLogEntriesResponse(entry_ids=[e.entry_id for e in entries])

    async def follow(self, request: task_service_pb2.FollowTaskLogRequest, context: Any) -> AsyncIterator[bytes]:
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.followers[request.task_id].append(queue)
        yield HEARTBEAT  # as tasktrail's first frame: the follow is open
        while (frame := await queue.get()) is not None:
            yield frame

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        def unary(fn: Any, request: Any, response: Any) -> grpc.RpcMethodHandler[Any, Any]:
            return grpc.unary_unary_rpc_method_handler(
                fn, request_deserializer=request.FromString, response_serializer=response.SerializeToString
            )

        w = writer_service_pb2
        writer = {
            "CreateTask": unary(self.create, w.CreateTaskRequest, w.CreateTaskResponse),
            "UpdateTask": unary(self.update, w.UpdateTaskRequest, w.UpdateTaskResponse),
            "AppendLogEntries": unary(self.append, w.AppendLogEntriesRequest, w.AppendLogEntriesResponse),
        }
        reader = {
            "FollowTaskLog": grpc.unary_stream_rpc_method_handler(
                self.follow,
                request_deserializer=task_service_pb2.FollowTaskLogRequest.FromString,
                response_serializer=bytes,  # the frames are encoded already
            )
        }
        return [
            grpc.method_handlers_generic_handler("tasktrail.v1.TaskWriterService", writer),
            grpc.method_handlers_generic_handler("tasktrail.v1.TaskService", reader),
        ]


async def keep(_conn: asyncpg.Connection) -> None:
    """No reset query when a connection goes back to the pool: the floor sets no session state."""


async def main(port: int, store: str | None, log: bool = False) -> None:
    floor: pb_grpc.ControlPlaneTaskServiceServicer = Constant()  # type: ignore[abstract]  # one method is enough
    pool = None
    if store and store.startswith("postgresql"):
        dsn = make_url(store).set(drivername="postgresql").render_as_string(hide_password=False)
        pool = await asyncpg.create_pool(  # as tasktrail's readers, and its writes' durability
            dsn, min_size=1, max_size=10, reset=keep, server_settings={"synchronous_commit": "on"}
        )
        floor = PostgresRead(pool)  # type: ignore[abstract]
    elif store:
        floor = SqliteRead(make_url(store).database or "")  # type: ignore[abstract]
    server = aio.server(options=GRPC_OPTIONS)
    if log:
        insert = (
            None
            if not store
            else postgres_insert(pool)
            if pool is not None
            else sqlite_insert(make_url(store).database or "")
        )
        server.add_generic_rpc_handlers(LogFloor(insert).handlers())
    else:
        pb_grpc.add_ControlPlaneTaskServiceServicer_to_server(floor, server)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(1)
    if pool is not None:
        await pool.close()


if __name__ == "__main__":
    import uvloop

    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--store", help="a database URL: read the task from it (with --log: insert into it)")
    parser.add_argument("--log", action="store_true", help="the fan-out floor (with --store: the append floor)")
    args = parser.parse_args()
    uvloop.run(main(args.port, args.store, args.log))
