"""What `--durability full` costs: appends with each setting, on one server
process (direct gRPC), in the same run. `normal` is the floor: `full` is
printed as its ratio.

  sequential  one writer, one entry an append, one after the other: latency
  concurrent  16 writers, each its own task, 10 entries an append: entries/s

    .venv/bin/python -m bench.durability [--store sqlite|postgres] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from grpc import aio

from bench.common import make_token, pg_database, server
from tasktrail.store import migrate
from tasktrail.v1 import task_pb2, writer_service_pb2, writer_service_pb2_grpc

PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


async def appends(port: int, token: str, seconds: float) -> tuple[list[float], float]:
    """Sequential append latencies (ms), then concurrent entries a second."""
    metadata = (("authorization", f"Bearer {token}"),)
    async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        writer = writer_service_pb2_grpc.TaskWriterServiceStub(channel)

        async def task() -> str:
            request = writer_service_pb2.CreateTaskRequest(
                scope=task_pb2.SCOPE_DATABASE, entity_id="bench", type="t", request_id=str(uuid.uuid4())
            )
            return (await writer.CreateTask(request, metadata=metadata)).task.task_id

        one = await task()
        took: list[float] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            request = writer_service_pb2.AppendLogEntriesRequest(task_id=one, entries=[task_pb2.LogEntry(message="x")])
            started = time.perf_counter()
            await writer.AppendLogEntries(request, metadata=metadata)
            took.append((time.perf_counter() - started) * 1000)

        written = 0

        async def concurrent(task_id: str, until: float) -> None:
            nonlocal written
            entries = [task_pb2.LogEntry(message=f"line {i}") for i in range(10)]
            while time.monotonic() < until:
                request = writer_service_pb2.AppendLogEntriesRequest(task_id=task_id, entries=entries)
                await writer.AppendLogEntries(request, metadata=metadata)
                written += len(entries)

        ids = [await task() for _ in range(16)]
        started = time.monotonic()
        await asyncio.gather(*(concurrent(i, started + seconds) for i in ids))
        return took, written / (time.monotonic() - started)


def measure(url: str, work: Path, durability: str, seconds: float) -> tuple[list[float], float]:
    migrate(url)
    token = make_token(url, f"bench-{durability}")
    with server(url, work, f"server-{durability}", "--durability", durability) as srv:
        return asyncio.run(appends(srv.port, token, seconds))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="tasktrail-durability-") as tmp:
        for durability in ("normal", "full"):
            work = Path(tmp) / durability
            work.mkdir()
            if args.store == "sqlite":
                results[durability] = measure(f"sqlite:///{work / 'tasktrail.db'}", work, durability, args.seconds)
            else:
                with pg_database(PG) as url:
                    results[durability] = measure(url, work, durability, args.seconds)
    print(f"durability on {args.store} (one server process, direct gRPC, {args.seconds:.0f} s a run)")
    (floor_lat, floor_rate), (full_lat, full_rate) = results["normal"], results["full"]
    for name, (lat, rate) in results.items():
        p50 = statistics.median(lat)
        p99 = statistics.quantiles(lat, n=100)[98]
        print(f"  {name:6}  sequential p50 {p50:.2f} ms p99 {p99:.2f} ms; concurrent {rate:,.0f} entries/s")
    print(
        f"  full / normal: sequential p50 {statistics.median(full_lat) / statistics.median(floor_lat):.2f}x the "
        f"latency; concurrent {full_rate / floor_rate:.2f}x the throughput"
    )


if __name__ == "__main__":
    main()
