"""Live log tails: append-to-delivery latency for many followers of one task,
appends while the fan-out is saturated, 5,000 followers at once, and batched
ingest with followers attached. One server process behind Envoy (and a
second for writes with --write-lane); followers run in another process
(bench/follow_client.py). Each gRPC run and the ingest are measured against
a floor in alternating rounds (bench/floor_server.py): the fan-out floor
pushes the same frames to the same followers with no store; the append floor
inserts each batch in one statement first.

    .venv/bin/python -m bench.follow [--seconds 10] [--rounds 3] [--only NAME ...] [--store sqlite|postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc import aio

from bench.common import (
    PG_BASE,
    ROOT,
    envoy,
    free_port,
    make_token,
    pg_database,
    process,
    server,
    wait_grpc_healthy,
)
from tasktrail.edge.sample import WithToken
from tasktrail.store import migrate
from tasktrail.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc, writer_service_pb2, writer_service_pb2_grpc


@dataclass
class Run:
    name: str
    mode: str
    followers: int
    rate: float
    client: dict[str, Any] = field(default_factory=dict)
    appends_ms: list[float] = field(default_factory=list)
    server_cpu: float = 0.0
    server_rss_mb: float = 0.0
    envoy_cpu: float = 0.0


def ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


class Bench:
    def __init__(self, work: Path, url: str, token: str, server_pid: int, envoy_pid: int, rest: str, grpc_target: str):
        self.work, self.url, self.token = work, url, token
        self.server_pid, self.envoy_pid = server_pid, envoy_pid
        self.rest, self.grpc_target = rest, grpc_target
        channel = grpc.intercept_channel(grpc.insecure_channel(grpc_target), WithToken(token))
        self.writer = writer_service_pb2_grpc.TaskWriterServiceStub(channel)
        self.reader = task_service_pb2_grpc.TaskServiceStub(channel)
        # A floor keeps no log to read back (bench/floor_server.py).
        self.checks_log = True

    def running_task(self, database: str = "bench") -> str:
        task = self.writer.CreateTask(
            writer_service_pb2.CreateTaskRequest(scope=task_pb2.SCOPE_DATABASE, entity_id=database, type="update"),
            timeout=10,
        ).task
        self.writer.UpdateTask(
            writer_service_pb2.UpdateTaskRequest(task_id=task.task_id, status=task_pb2.TASK_STATUS_RUNNING), timeout=10
        )
        return str(task.task_id)

    def follow(self, run: Run, seconds: float) -> Run:
        task_id = self.running_task()
        target, task_arg = (
            (self.grpc_target, task_id)
            if run.mode == "grpc"
            else (self.rest.removeprefix("http://"), f"bench/{task_id}")
        )
        channels = max(1, run.followers // 250)
        argv = [sys.executable, "-m", "bench.follow_client", run.mode, target, self.token, task_arg, str(run.followers)]
        client = subprocess.Popen([*argv, "--channels", str(channels)], stdout=subprocess.PIPE, text=True)
        assert client.stdout is not None
        ready = json.loads(client.stdout.readline())
        assert ready.get("ready") == run.followers, ready
        cpu0, envoy0, t0 = ticks(self.server_pid), ticks(self.envoy_pid), time.monotonic()
        interval = 1.0 / run.rate
        next_at = time.monotonic()
        sent = 0
        while time.monotonic() - t0 < seconds:
            entry = task_pb2.LogEntry(message=f"line {sent}")
            entry.fields.update({"t": time.time_ns()})
            started = time.perf_counter()
            self.writer.AppendLogEntries(
                writer_service_pb2.AppendLogEntriesRequest(task_id=task_id, entries=[entry]), timeout=10
            )
            run.appends_ms.append((time.perf_counter() - started) * 1000)
            sent += 1
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))
        elapsed = time.monotonic() - t0
        run.server_cpu = (ticks(self.server_pid) - cpu0) / 100 / elapsed
        run.envoy_cpu = (ticks(self.envoy_pid) - envoy0) / 100 / elapsed
        self.writer.UpdateTask(
            writer_service_pb2.UpdateTaskRequest(task_id=task_id, status=task_pb2.TASK_STATUS_COMPLETED), timeout=10
        )
        out, _ = client.communicate(timeout=300)
        run.client = json.loads(out.strip().splitlines()[-1])
        run.client["sent"] = sent
        run.server_rss_mb = peak_rss_mb(self.server_pid)
        return run

    def ingest(self, seconds: float, writers: int, batch: int, followers: int) -> dict[str, Any]:
        tasks = [self.running_task("ingest") for _ in range(writers)]
        argv = [
            sys.executable,
            "-m",
            "bench.follow_client",
            "grpc",
            self.grpc_target,
            self.token,
            tasks[0],
            str(followers),
        ]
        client = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        assert client.stdout is not None
        json.loads(client.stdout.readline())
        acked: dict[str, int] = dict.fromkeys(tasks, 0)
        latencies: list[float] = []

        async def write(task_id: str, deadline: float) -> None:
            async with aio.insecure_channel(self.grpc_target) as channel:
                stub = writer_service_pb2_grpc.TaskWriterServiceStub(channel)
                metadata = (("authorization", f"Bearer {self.token}"),)
                n = 0
                while time.monotonic() < deadline:
                    entries = []
                    for _ in range(batch):
                        entry = task_pb2.LogEntry(message=f"P00   INFO: line {n}")
                        entry.fields.update({"t": time.time_ns()})
                        entries.append(entry)
                        n += 1
                    started = time.perf_counter()
                    reply = await stub.AppendLogEntries(
                        writer_service_pb2.AppendLogEntriesRequest(
                            task_id=task_id, entries=entries, append_id=str(uuid.uuid4())
                        ),
                        metadata=metadata,
                        timeout=30,
                    )
                    latencies.append((time.perf_counter() - started) * 1000)
                    acked[task_id] += len(reply.entry_ids)

        cpu0, t0 = ticks(self.server_pid), time.monotonic()
        asyncio.run(self._all(write, tasks, t0 + seconds))
        elapsed = time.monotonic() - t0
        cpu = (ticks(self.server_pid) - cpu0) / 100 / elapsed
        for task_id in tasks:
            self.writer.UpdateTask(
                writer_service_pb2.UpdateTaskRequest(task_id=task_id, status=task_pb2.TASK_STATUS_COMPLETED), timeout=10
            )
        out, _ = client.communicate(timeout=300)
        followed = json.loads(out.strip().splitlines()[-1])
        stored = {t: self.count(t) for t in tasks} if self.checks_log else None
        return {
            "first_task": acked[tasks[0]],
            "entries_per_s": sum(acked.values()) / elapsed,
            "append_p50_ms": pct(latencies, 0.5),
            "append_p99_ms": pct(latencies, 0.99),
            "server_cpu": cpu,
            "durable": None if stored is None else stored == acked,
            "acked": sum(acked.values()),
            "followers": followed,
        }

    @staticmethod
    async def _all(write: Any, tasks: list[str], deadline: float) -> None:
        await asyncio.gather(*(write(t, deadline) for t in tasks))

    def count(self, task_id: str) -> int:
        total, after = 0, ""
        while True:
            page = self.reader.GetTaskLog(
                task_service_pb2.GetTaskLogRequest(task_id=task_id, after_entry_id=after), timeout=30
            )
            total += len(page.entries)
            if not page.has_more:
                return total
            after = page.last_entry_id


def verdict(run: Run) -> str:
    c = run.client
    ok = (
        c.get("finished") == run.followers
        and c.get("ordered")
        and c.get("counts") == [c.get("sent")]
        and not c.get("errors")
    )
    return "every entry once, in order" if ok else "CHECK FAILED: " + json.dumps(c)


def report(run: Run) -> str:
    c = run.client
    return (
        f"  {run.name:34} p50 {c.get('p50_ms', 0):7.2f} ms  p99 {c.get('p99_ms', 0):7.2f} ms  "
        f"appends p99 {pct(run.appends_ms, 0.99):6.2f} ms  server CPU {run.server_cpu * 100:3.0f} %  "
        f"Envoy {run.envoy_cpu * 100:3.0f} %  {verdict(run)}"
    )


def spread(values: list[float]) -> str:
    ordered = sorted(values)
    return f"{statistics.median(ordered):.2f} ({ordered[0]:.2f}-{ordered[-1]:.2f})"


def runs() -> list[Run]:
    return [
        Run("100 followers x 100/s, gRPC", "grpc", 100, 100),
        Run("100 followers x 100/s, NDJSON", "ndjson", 100, 100),
        Run("1,000 followers x 10/s, gRPC", "grpc", 1000, 10),
        Run("1,000 followers x 100/s, gRPC", "grpc", 1000, 100),
    ]


def ingest_line(result: dict[str, Any]) -> str:
    f = result["followers"]
    stored = (
        ""
        if result["durable"] is None
        else f"every acknowledged entry stored: {result['durable']} ({result['acked']:,}); "
    )
    return (
        f"{result['entries_per_s']:,.0f} entries/s, appends p50 {result['append_p50_ms']:.1f} ms "
        f"p99 {result['append_p99_ms']:.1f} ms, server CPU {result['server_cpu'] * 100:.0f} %; {stored}"
        f"followers p99 {f.get('p99_ms')} ms, every entry once and in order: "
        f"{f.get('ordered') and f.get('counts') == [result['first_task']]}"
    )


def layout(name: str, lane: bool, args: argparse.Namespace, base: str) -> None:
    """Each run against tasktrail and against its floor (bench/floor_server.py:
    fan-out for follows, append for ingest), in alternating rounds."""
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tasktrail-bench-")))
        url = stack.enter_context(pg_database(base)) if args.store == "postgres" else f"sqlite:///{work / 'tt.db'}"
        floor_url = (
            stack.enter_context(pg_database(base)) if args.store == "postgres" else f"sqlite:///{work / 'floor.db'}"
        )
        migrate(url)
        migrate(floor_url)
        token = make_token(url, "bench")
        reader = stack.enter_context(server(url, work, "server"))
        writes = [stack.enter_context(server(url, work, "writer")).port] if lane else []
        edge = stack.enter_context(envoy(work, [reader.port], "follow", writes))
        tt = Bench(work, url, token, reader.pid, edge.pid, edge.rest, edge.grpc)
        floors = {}
        for kind, extra in (("fan-out", []), ("append", ["--store", floor_url])):
            port = free_port()
            argv = [sys.executable, str(ROOT / "bench" / "floor_server.py"), str(port), "--log", *extra]
            proc = stack.enter_context(process(argv, work / f"floor-{kind}.log"))
            wait_grpc_healthy(f"127.0.0.1:{port}")
            floor_edge = stack.enter_context(envoy(work, [port], f"floor-{kind}"))
            floors[kind] = Bench(work, floor_url, token, proc.pid, floor_edge.pid, floor_edge.rest, floor_edge.grpc)
            floors[kind].checks_log = False
        print(f"{name}:", flush=True)
        for run in runs():
            if args.only is not None and not any(o in run.name for o in args.only):
                continue
            if run.mode != "grpc":  # no floor speaks the REST stream
                print(report(tt.follow(run, args.seconds)), flush=True)
                continue
            ours: list[Run] = []
            theirs: list[Run] = []
            for i in range(args.rounds):
                pair = [(ours, tt), (theirs, floors["fan-out"])]
                for into, bench in pair if i % 2 == 0 else reversed(pair):
                    into.append(bench.follow(Run(run.name, run.mode, run.followers, run.rate), args.seconds))
            best = sorted(ours, key=lambda r: r.client.get("p99_ms", 0))[len(ours) // 2]
            print(report(best), flush=True)
            p99s = [
                r.client.get("p99_ms", 0) / f.client["p99_ms"]
                for r, f in zip(ours, theirs, strict=True)
                if f.client.get("p99_ms")  # a floor run that delivered nothing has no p99 to compare with
            ] or [float("nan")]
            floor_p99 = statistics.median(f.client.get("p99_ms", 0) for f in theirs)
            print(
                f"    fan-out floor p99 {floor_p99:.2f} ms; p99 / floor's p99: {spread(p99s)}; "
                f"floor: {'; '.join(sorted({verdict(f) for f in theirs}))}",
                flush=True,
            )
        if args.only is None or "5000" in args.only:
            crowd = tt.follow(Run("5,000 followers connecting at once", "grpc", 5000, 5), 2.0)
            print(report(crowd), flush=True)
            print(
                f"    server peak RSS {crowd.server_rss_mb:.0f} MB; "
                f"{crowd.client.get('finished')} of 5,000 served, connected in {crowd.client.get('connect_s')} s",
                flush=True,
            )
        if args.only is None or "ingest" in args.only:
            results: list[dict[str, Any]] = []
            floor_results: list[dict[str, Any]] = []
            for i in range(args.rounds):
                turns = [(results, tt), (floor_results, floors["append"])]
                for measured, side in turns if i % 2 == 0 else reversed(turns):
                    measured.append(side.ingest(args.seconds, writers=8, batch=100, followers=50))
            middle = sorted(results, key=lambda r: r["entries_per_s"])[len(results) // 2]
            print(f"  ingest, batches of 100, 8 writers, 50 followers: {ingest_line(middle)}", flush=True)
            ratios = [a["entries_per_s"] / b["entries_per_s"] for a, b in zip(results, floor_results, strict=True)]
            floor_rate = statistics.median(b["entries_per_s"] for b in floor_results)
            print(
                f"    append floor {floor_rate:,.0f} entries/s; tasktrail / floor: {spread(ratios)}",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--only", nargs="*", default=None, help="names of runs: '100 followers', 1,000, 5000, ingest")
    parser.add_argument("--layout", choices=["one", "lane", "both"], default="both")
    parser.add_argument("--rounds", type=int, default=3, help="alternating tasktrail / floor runs of each")
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--postgres", default=PG_BASE, help="the PostgreSQL server for --store postgres")
    args = parser.parse_args()
    where = "PostgreSQL" if args.store == "postgres" else "SQLite"
    print(f"Live log tails, on {where} behind Envoy; followers in another process")
    print("  polling anchor: a 500 ms poll (pgEdge's client) waits 250 ms on average, up to 500 ms")
    if args.layout in ("one", "both"):
        layout("one server process", False, args, args.postgres)
    if args.layout in ("lane", "both"):
        layout("a server process for reads and follows, and one for writes (--write-lane)", True, args, args.postgres)


if __name__ == "__main__":
    main()
