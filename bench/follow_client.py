"""Followers for the follow benchmark, in a process of their own.

    python -m bench.follow_client MODE TARGET TOKEN TASK_ID COUNT [--channels N]

MODE is grpc (FollowTaskLog through Envoy's gRPC port) or ndjson (the REST
stream through Envoy; TARGET is then host:port of the REST port and TASK_ID is
database/task). Each follower reads until the end frame and checks that its
entries came once each, in order. Every entry carries its send time
(fields.t, ns since the epoch); the process prints one JSON line: how many
followers finished, entries each, and append-to-delivery latencies.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import grpc
from grpc import aio

from tasktrail.v1 import task_service_pb2, task_service_pb2_grpc


class Stats:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.counts: list[int] = []
        self.ordered = True
        self.errors: list[str] = []


def record(stats: Stats, entry_id: str, last: str, sent_ns: float, now_ns: int) -> None:
    if entry_id <= last:
        stats.ordered = False
    stats.latencies.append((now_ns - sent_ns) / 1e6)


async def grpc_follower(stub: Any, metadata: Any, task_id: str, stats: Stats, ready: asyncio.Event) -> None:
    call = stub.FollowTaskLog(task_service_pb2.FollowTaskLogRequest(task_id=task_id), metadata=metadata)
    last, count = "", 0
    async for frame in call:
        ready.set()
        kind = frame.WhichOneof("frame")
        if kind == "entries":
            now = time.time_ns()
            for entry in frame.entries.entries:
                record(stats, entry.entry_id, last, entry.fields["t"], now)
                last = entry.entry_id
                count += 1
        elif kind == "end":
            break
        elif kind == "error":
            stats.errors.append(frame.error.message)
            break
    stats.counts.append(count)


async def ndjson_follower(host: str, port: int, path: str, stats: Stats, ready: asyncio.Event) -> None:
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/x-ndjson\r\n\r\n".encode())
    await writer.drain()
    status = await reader.readline()
    if b" 200 " not in status:
        stats.errors.append(status.decode().strip())
        writer.close()
        return
    while (await reader.readline()) not in (b"\r\n", b""):
        continue  # headers
    last, count, pending = "", 0, b""
    done = False
    while not done:
        size = int((await reader.readline()).strip() or b"0", 16)
        if size == 0:
            break
        chunk = await reader.readexactly(size + 2)
        now = time.time_ns()
        pending += chunk[:-2]
        *lines, pending = pending.split(b"\n")
        for line in lines:
            item = json.loads(line)
            ready.set()
            if "entry_id" in item:
                record(stats, item["entry_id"], last, item["fields"]["t"], now)
                last = item["entry_id"]
                count += 1
            elif "end" in item:
                done = True
    writer.close()
    stats.counts.append(count)


async def main(args: argparse.Namespace) -> None:
    stats = Stats()
    readies = [asyncio.Event() for _ in range(args.count)]
    channels: list[aio.Channel] = []
    if args.mode == "grpc":
        options = [("grpc.max_concurrent_streams", 100_000)]
        channels = [aio.insecure_channel(args.target, options=options) for _ in range(args.channels)]
        stubs = [task_service_pb2_grpc.TaskServiceStub(c) for c in channels]
        metadata = (("authorization", f"Bearer {args.token}"),)
        jobs = [
            grpc_follower(stubs[i % len(stubs)], metadata, args.task_id, stats, readies[i]) for i in range(args.count)
        ]
    else:
        host, _, port = args.target.rpartition(":")
        database, _, task = args.task_id.partition("/")
        path = f"/v1/databases/{database}/tasks/{task}/log/stream"
        jobs = [ndjson_follower(host, int(port), path, stats, readies[i]) for i in range(args.count)]
    running = [asyncio.create_task(j) for j in jobs]
    started = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 120)
    connect_s = round(time.monotonic() - started, 2)
    print(json.dumps({"ready": args.count, "seconds": connect_s}), flush=True)
    results = await asyncio.gather(*running, return_exceptions=True)
    failures = [repr(r) for r in results if isinstance(r, BaseException)]
    for channel in channels:
        await channel.close(None)
    lat = sorted(stats.latencies)

    def pct(q: float) -> float:
        return round(lat[min(len(lat) - 1, int(q * len(lat)))], 3) if lat else 0.0

    print(
        json.dumps(
            {
                "finished": len(stats.counts),
                "counts": sorted(set(stats.counts)),
                "ordered": stats.ordered,
                "errors": stats.errors[:5] + failures[:5],
                "p50_ms": pct(0.50),
                "p99_ms": pct(0.99),
                "max_ms": pct(1.0),
                "deliveries": len(lat),
                "connect_s": connect_s,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["grpc", "ndjson"])
    parser.add_argument("target")
    parser.add_argument("token")
    parser.add_argument("task_id")
    parser.add_argument("count", type=int)
    parser.add_argument("--channels", type=int, default=4)
    try:
        import uvloop

        uvloop.run(main(parser.parse_args()))
    except grpc.RpcError as error:
        print(json.dumps({"error": str(error)}), flush=True)
        sys.exit(1)
