"""Scale-out on PostgreSQL, beside SQLite, in one run.

1. Reads: GET of a running task (read from the store every time, as a client
   polling for progress does) through Envoy, under concurrent load, for SQLite
   with one server process and PostgreSQL with 1, 2 and 3 replicas; each as a
   ratio of a floor measured in the same run (the same Envoy in front of a gRPC
   handler that returns a constant task).
2. Append-to-follower latency: a writer appends through Envoy (so, round robin,
   on any replica) while followers, spread by Envoy across the replicas, follow
   the task; latency is from the append's start to each follower's receipt.
3. Pages on PostgreSQL: list-page and log-page latency at 1,000 and at
   1,000,000 tasks (one server, sequential requests on one connection).

    .venv/bin/python -m bench.scale [--postgres URL] [--seconds 8] [--only reads,tails,pages]

Everything runs on this machine: Envoy, the servers, PostgreSQL, and the load
(wrk, a follower process) share its cores.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import grpc

from bench.common import (
    PG_BASE,
    ROOT,
    Load,
    envoy,
    free_port,
    make_token,
    pg_database,
    process,
    seed,
    seed_logs,
    server,
    wait_grpc_healthy,
    wrk,
)
from bench.get_task import lua_paths
from bench.list_pages import measure as measure_lists
from bench.list_pages import percentile
from tasktrail.edge.sample import WithToken
from tasktrail.v1 import task_pb2, writer_service_pb2, writer_service_pb2_grpc

DEFAULT_PG = PG_BASE
VARIANTS = [("sqlite", 1), ("postgres", 1), ("postgres", 2), ("postgres", 3)]


@contextmanager
def store(kind: str, base: str, work: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{work / 'tasktrail.db'}"
    else:
        with pg_database(base) as url:
            yield url


@contextmanager
def replicas(url: str, work: Path, n: int) -> Iterator[list[int]]:
    with ExitStack() as stack:
        yield [stack.enter_context(server(url, work, f"replica-{i}")).port for i in range(n)]


def label(kind: str, n: int) -> str:
    return f"{'SQLite' if kind == 'sqlite' else 'PostgreSQL'}, {n} {'replica' if n == 1 else 'replicas'}"


@contextmanager
def store_floors(url: str, work: Path, n: int) -> Iterator[list[int]]:
    """n store floors (bench/floor_server.py --store): as many processes as the variant has replicas."""
    with ExitStack() as stack:
        ports = []
        for i in range(n):
            port = free_port()
            argv = [sys.executable, str(ROOT / "bench" / "floor_server.py"), str(port), "--store", url]
            stack.enter_context(process(argv, work / f"store-floor-{i}.log"))
            wait_grpc_healthy(f"127.0.0.1:{port}")
            ports.append(port)
        yield ports


def spread(values: list[float]) -> str:
    ordered = sorted(values)
    return f"{statistics.median(ordered):.2f} ({ordered[0]:.2f}-{ordered[-1]:.2f})"


def reads(args: argparse.Namespace, work: Path) -> None:
    floor_port = free_port()
    floor_argv = [sys.executable, str(ROOT / "bench" / "floor_server.py"), str(floor_port)]
    results: dict[str, list[Load]] = {}
    against: dict[str, list[Load]] = {}
    busy: dict[str, float] = {}
    floors: list[Load] = []
    with process(floor_argv, work / "floor.log"):
        wait_grpc_healthy(f"127.0.0.1:{floor_port}")
        with envoy(work, [floor_port], "floor") as floor_edge:
            for kind, n in VARIANTS:
                with store(kind, args.postgres, work / kind) as url:
                    (work / kind).mkdir(exist_ok=True)
                    picked = seed(url, databases=100, per_database=args.tasks // 100, running_every=10)
                    random.Random(1).shuffle(picked)
                    running = [f"/v1/databases/{d}/tasks/{t}" for d, t, r in picked if r]
                    script = lua_paths(work / "running.lua", running)
                    name = label(kind, n)
                    with ExitStack() as stack:
                        ports = stack.enter_context(replicas(url, work / kind, n))
                        edge = stack.enter_context(envoy(work, ports, f"{kind}-{n}"))
                        floor_ports = stack.enter_context(store_floors(url, work / kind, n))
                        store_edge = stack.enter_context(envoy(work, floor_ports, f"{kind}-{n}-floor"))
                        floors.append(wrk(floor_edge.rest, connections=32, seconds=args.seconds, script=script))
                        for url_ in (edge.rest, store_edge.rest):
                            wrk(url_, connections=32, seconds=3, script=script)  # warm up
                        results[name], against[name] = [], []
                        spent: list[float] = []  # the machine's busy share while tasktrail ran
                        for i in range(args.rounds):  # alternating, so that drift hits both alike
                            pair = [(results[name], edge.rest), (against[name], store_edge.rest)]
                            for into, target in pair if i % 2 == 0 else reversed(pair):
                                before = cpu_times()
                                into.append(wrk(target, connections=32, seconds=args.seconds, script=script))
                                if into is results[name]:
                                    spent.append(cpu_busy(before, cpu_times()))
                        busy[name] = statistics.median(spent)
    floor = statistics.median(f.requests_per_s for f in floors)
    print(
        f"Reads: GET a running task through Envoy ({args.tasks:,} tasks, 32 connections, "
        f"{args.rounds} rounds x {args.seconds} s each)"
    )
    print(
        f"  {'':28} {'req/s':>8} {'vs constant':>8} {'vs store floor, same processes':>31} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'errors':>6} {'CPU busy':>9}"
    )
    print(f"  {'floor (constant task)':28} {floor:8.0f} {1:11.2f}")
    for name, loads in results.items():
        rps = statistics.median(x.requests_per_s for x in loads)
        ratios = [t.requests_per_s / f.requests_per_s for t, f in zip(loads, against[name], strict=True)]
        floor_rps = statistics.median(x.requests_per_s for x in against[name])
        print(
            f"  {name:28} {rps:8.0f} {rps / floor:11.2f} {spread(ratios) + f' of {floor_rps:.0f}':>31} "
            f"{statistics.median(x.p50_ms for x in loads):7.2f} {statistics.median(x.p99_ms for x in loads):7.2f} "
            f"{sum(x.errors for x in loads):6d} {busy[name]:8.0%}"
        )
    print(
        f"  (constant floor: median of {len(floors)} runs, one before each variant; store floor: as many "
        f"floor processes as replicas, median (min-max) of the rounds; CPU busy: of all {os.cpu_count()} cores, "
        "with wrk, Envoy, PostgreSQL and the servers on them)",
        flush=True,
    )


def cpu_times() -> tuple[int, int]:
    """(idle, total) jiffies of the whole machine."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return fields[3] + fields[4], sum(fields)


def cpu_busy(before: tuple[int, int], after: tuple[int, int]) -> float:
    idle, total = after[0] - before[0], after[1] - before[1]
    return 1 - idle / total if total else 0.0


def tails(args: argparse.Namespace, work: Path) -> None:
    rows = []
    for kind, n in VARIANTS:
        with store(kind, args.postgres, work / kind) as url:
            (work / kind).mkdir(exist_ok=True)
            from tasktrail.store import migrate

            migrate(url)
            token = make_token(url, "bench")
            with replicas(url, work / kind, n) as ports, envoy(work, ports, f"tails-{kind}-{n}") as edge:
                rows.append((label(kind, n), *follow_once(edge.grpc, token, args)))
    print(
        f"Append to follower through Envoy: {args.followers} followers of one task, "
        f"{args.rate:.0f} appends/s for {args.seconds} s"
    )
    print(f"  {'':28} {'p50 ms':>7} {'p99 ms':>7} {'append p50':>10} {'append p99':>10} {'delivered':>10}")
    for name, p50, p99, a50, a99, ok in rows:
        print(f"  {name:28} {p50:7.2f} {p99:7.2f} {a50:10.2f} {a99:10.2f} {ok:>10}")
    print("  (latency: from the append's start to the follower's receipt; delivered: every entry, once, in order)")


def follow_once(target: str, token: str, args: argparse.Namespace) -> tuple[float, float, float, float, str]:
    channel = grpc.intercept_channel(grpc.insecure_channel(target), WithToken(token))
    writer = writer_service_pb2_grpc.TaskWriterServiceStub(channel)
    task = writer.CreateTask(
        writer_service_pb2.CreateTaskRequest(scope=task_pb2.SCOPE_DATABASE, entity_id="bench", type="update"),
        timeout=10,
    ).task
    writer.UpdateTask(
        writer_service_pb2.UpdateTaskRequest(task_id=task.task_id, status=task_pb2.TASK_STATUS_RUNNING), timeout=10
    )
    argv = [sys.executable, "-m", "bench.follow_client", "grpc", target, token, task.task_id, str(args.followers)]
    client = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert client.stdout is not None
    ready = json.loads(client.stdout.readline())
    assert ready.get("ready") == args.followers, ready
    appends: list[float] = []
    sent, started_at, interval = 0, time.monotonic(), 1.0 / args.rate
    next_at = started_at
    while time.monotonic() - started_at < args.seconds:
        entry = task_pb2.LogEntry(message=f"line {sent}")
        entry.fields.update({"t": time.time_ns()})
        began = time.perf_counter()
        writer.AppendLogEntries(
            writer_service_pb2.AppendLogEntriesRequest(task_id=task.task_id, entries=[entry]), timeout=10
        )
        appends.append((time.perf_counter() - began) * 1000)
        sent += 1
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))
    writer.UpdateTask(
        writer_service_pb2.UpdateTaskRequest(task_id=task.task_id, status=task_pb2.TASK_STATUS_COMPLETED), timeout=10
    )
    out, _ = client.communicate(timeout=300)
    channel.close()
    got = json.loads(out.strip().splitlines()[-1])
    complete = got["finished"] == args.followers and got["counts"] == [sent] and got["ordered"] and not got["errors"]
    return (
        got["p50_ms"],
        got["p99_ms"],
        statistics.median(appends),
        percentile(appends, 0.99),
        "yes" if complete else f"NO {got}",
    )


def pages(args: argparse.Namespace, work: Path) -> None:
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[int, tuple[list[float], list[float]]] = {}
    for size in sizes:
        with pg_database(args.postgres) as url:
            started = time.monotonic()
            picked = seed(url, databases=10, per_database=size // 10)
            logged = seed_logs(url, [t for _, t, _ in picked], per_task=args.entries)
            print(f"seeded {size:,} tasks in PostgreSQL in {time.monotonic() - started:.0f} s", file=sys.stderr)
            with server(url, work, f"pages-{size}") as tt, envoy(work, [tt.port], f"pages-{size}") as edge:
                measure_lists(edge.rest, picked, 300)  # warm up
                lists = measure_lists(edge.rest, picked, args.requests)
                logs = measure_logs(edge.rest, logged, args.requests)
                results[size] = (lists, logs)
    print(f"Pages on PostgreSQL through Envoy, one server, {args.requests} sequential requests each")
    print(f"  {'tasks':>10} {'list p50':>9} {'list p99':>9} {'log p50':>8} {'log p99':>8}")
    for size, (lists, logs) in results.items():
        print(
            f"  {size:>10,} {statistics.median(lists):9.3f} {percentile(lists, 0.99):9.3f} "
            f"{statistics.median(logs):8.3f} {percentile(logs, 0.99):8.3f}"
        )
    if len(sizes) >= 2:
        (l0, g0), (l1, g1) = results[sizes[0]], results[sizes[-1]]
        print(
            f"  p50 ratio {sizes[-1]:,} / {sizes[0]:,}: list {statistics.median(l1) / statistics.median(l0):.2f}, "
            f"log {statistics.median(g1) / statistics.median(g0):.2f}"
        )
    print(f"  (list: limit=20, random cursor and order; log: {args.entries} entries a task, limit=10 and a cursor)")


def measure_logs(rest: str, logged: list[tuple[str, str, list[str]]], requests: int) -> list[float]:
    import http.client
    import urllib.parse

    parsed = urllib.parse.urlsplit(rest)
    conn = http.client.HTTPConnection(parsed.hostname or "127.0.0.1", parsed.port, timeout=10)
    rng = random.Random(11)
    samples: list[float] = []
    for i in range(requests + 300):
        db, task_id, entries = rng.choice(logged)
        query = f"?after_entry_id={rng.choice(entries)}" if i % 2 else "?limit=10"
        began = time.perf_counter()
        conn.request("GET", f"/v1/databases/{db}/tasks/{task_id}/log{query}")
        reply = conn.getresponse()
        body = reply.read()
        assert reply.status == 200, body
        if i >= 300:  # the first 300 warm up
            samples.append((time.perf_counter() - began) * 1000)
    conn.close()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", default=DEFAULT_PG, help="a server where the benchmark may create databases")
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--tasks", type=int, default=100_000, help="tasks in the store for the reads")
    parser.add_argument("--followers", type=int, default=100)
    parser.add_argument("--rate", type=float, default=100.0, help="appends a second")
    parser.add_argument("--sizes", default="1000,1000000")
    parser.add_argument("--entries", type=int, default=2, help="log entries a task, for the log pages")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3, help="alternating tasktrail / store floor runs of reads")
    parser.add_argument("--only", default="reads,tails,pages")
    args = parser.parse_args()
    parts = args.only.split(",")
    with tempfile.TemporaryDirectory(prefix="tasktrail-bench-") as tmp:
        work = Path(tmp)
        if "reads" in parts:
            reads(args, work)
        if "tails" in parts:
            tails(args, work)
        if "pages" in parts:
            pages(args, work)


if __name__ == "__main__":
    main()
