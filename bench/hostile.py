"""Hostile load against one server process behind Envoy: does the service stay
fast for everyone else? For each attack kind, the health check's p50/p99 and
normal reads' throughput (GET a running task on port 3000, wrk), against the
same run without the attack (quiet runs before and after, median).

Attacks, each from two other processes at `--rate` requests a second each (an
attacker elsewhere; as fast as two local processes go would measure the
attacker's own CPU on these two cores), for the whole run:
  malformed   AppendLogEntries of 1 MiB nested 300 deep, no credential (refused as INVALID_ARGUMENT)
  wide        ListTasks with 20,000 statuses and 1,000 types (120 KB), a reader's token (INVALID_ARGUMENT)
  passwords   basic-auth guesses at 9443 for 200 user names (argon2id, throttled)
  tokens      random bearer tokens at 50051 (UNAUTHENTICATED)

    .venv/bin/python -m bench.hostile [--seconds 8] [--tasks 20000] [--rate 100]

It also prints what one attacking request costs the server process (CPU ms,
from 3 s of the attack alone, before the run with reads).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import multiprocessing
import os
import random
import secrets
import ssl
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.common import Edge, envoy, make_token, seed, server, wrk
from bench.get_task import lua_paths
from tasktrail.auth import users
from tasktrail.store import open_store
from tasktrail.v1 import task_pb2, task_service_pb2
from tests.support.wire import deep_append

ATTACKS = ("malformed", "wide", "passwords", "tokens")


def attack(kind: str, edge: Edge, token: str, seconds: float, rate: float, sent: Any) -> None:
    """One attacking process: `kind` at `rate` requests a second, for `seconds`."""
    deadline = time.monotonic() + seconds
    gap = 1 / rate
    following = time.monotonic()

    def pace() -> None:
        nonlocal following
        following += gap
        time.sleep(max(0.0, following - time.monotonic()))
        with sent.get_lock():
            sent.value += 1

    if kind in ("malformed", "wide", "tokens"):
        with grpc.insecure_channel(edge.grpc) as channel:
            metadata: tuple[tuple[str, str], ...]
            if kind == "malformed":
                call: Any = channel.unary_unary("/tasktrail.v1.TaskWriterService/AppendLogEntries", None, None)
                payload, metadata = deep_append(300, 1 << 20), ()
            elif kind == "wide":
                call = channel.unary_unary("/tasktrail.v1.TaskService/ListTasks", None, None)
                wide = task_service_pb2.ListTasksRequest(
                    statuses=[task_pb2.TASK_STATUS_PENDING] * 20_000, types=["t" * 100] * 1000
                )
                payload = wide.SerializeToString()
                metadata = (("authorization", f"Bearer {token}"),)
            else:
                call = channel.unary_unary("/tasktrail.v1.TaskService/GetTask", None, None)
                payload, metadata = task_service_pb2.GetTaskRequest(task_id="x").SerializeToString(), ()
            while time.monotonic() < deadline:
                guess = (("authorization", f"Bearer tt_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"),)
                with contextlib.suppress(grpc.RpcError):
                    call(payload, metadata=guess if kind == "tokens" else metadata, timeout=5)
                pace()
        return
    context = ssl._create_unverified_context()  # the bench's own local CA; only the load matters here
    i = 0
    while time.monotonic() < deadline:
        i += 1
        request = urllib.request.Request(edge.crdb + "/v1/crdb_tasks")
        credentials = f"user-{i % 200}@example.com:guess-{i}".encode()
        request.add_header("authorization", "Basic " + base64.b64encode(credentials).decode())
        with contextlib.suppress(OSError):
            urllib.request.urlopen(request, timeout=5, context=context).close()
        pace()


def health_sampler(edge: Edge, seconds: float, out: list[float]) -> Callable[[], None]:
    def run() -> None:
        with grpc.insecure_channel(edge.grpc) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                started = time.monotonic()
                with contextlib.suppress(grpc.RpcError):
                    stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
                out.append((time.monotonic() - started) * 1000)
                time.sleep(0.01)

    return run


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    edge: Edge, server_pid: int, script: Path, token: str, kind: str | None, seconds: int, rate: float
) -> tuple[float, float, float, float, float]:
    """Health p50, p99 (ms) and read throughput (req/s) while `kind` attacks (None:
    quiet); and what one attacking request costs the server (CPU s, from 3 s of
    the attack alone first) and the attacking requests a second."""
    sent = multiprocessing.Value("i", 0)
    alone = 3 if kind else 0
    attackers = [
        multiprocessing.Process(
            target=attack, args=(kind, edge, token, seconds + alone + 1, rate / 2, sent), daemon=True
        )
        for _ in range(2 if kind else 0)
    ]
    for process in attackers:
        process.start()
    cpu, before, started = cpu_seconds(server_pid), sent.value, time.monotonic()
    time.sleep(alone)
    cost = (cpu_seconds(server_pid) - cpu) / max(1, sent.value - before)
    took: list[float] = []
    sampler = threading.Thread(target=health_sampler(edge, seconds, took))
    sampler.start()
    load = wrk(edge.rest, connections=16, seconds=seconds, script=script)
    sampler.join()
    attack_rate = sent.value / (time.monotonic() - started)
    for process in attackers:
        process.join(seconds + 30)
        if process.is_alive():
            process.kill()
    took.sort()
    return statistics.median(took), took[int(len(took) * 0.99)], load.requests_per_s, cost, attack_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=100.0, help="attacking requests a second, in all")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tasktrail-bench-") as tmp:
        work = Path(tmp)
        url = f"sqlite:///{work / 'tasktrail.db'}"
        print(f"seeding {args.tasks:,} tasks ...", file=sys.stderr)
        picked = seed(url, databases=20, per_database=args.tasks // 20, running_every=10)
        random.Random(1).shuffle(picked)
        script = lua_paths(work / "running.lua", [f"/v1/databases/{d}/tasks/{t}" for d, t, r in picked if r])
        token = make_token(url, "bench", ("database",))
        asyncio.run(_user(url))
        results: dict[str, list[tuple[float, float, float, float, float]]] = {}
        with server(url, work) as tt, envoy(work, [tt.port], "tt") as edge:
            wrk(edge.rest, connections=16, seconds=3, script=script)  # warm up
            for kind in (None, *ATTACKS, None):
                run = measure(edge, tt.pid, script, token, kind, args.seconds, args.rate)
                results.setdefault(kind or "quiet", []).append(run)
    quiet = results["quiet"]
    quiet_rps = statistics.median(r[2] for r in quiet)
    print(
        f"Hostile load, one server process on SQLite behind Envoy, {args.seconds} s a run, "
        f"{args.rate:.0f} attacking requests/s from 2 processes"
    )
    print(
        f"  {'':12} {'health p50':>11} {'p99 ms':>8} {'reads/s':>8} {'ratio':>6} {'attack/s':>9} {'CPU ms/attack':>14}"
    )
    for kind, runs in results.items():
        p50 = statistics.median(r[0] for r in runs)
        p99 = statistics.median(r[1] for r in runs)
        rps = statistics.median(r[2] for r in runs)
        sent = statistics.median(r[4] for r in runs)
        cost = statistics.median(r[3] for r in runs) * 1000
        shown = f"{cost:14.2f}" if kind != "quiet" else f"{'':>14}"
        print(f"  {kind:12} {p50:11.2f} {p99:8.2f} {rps:8.0f} {rps / quiet_rps:6.2f} {sent:9.0f} {shown}")
    print("  (ratio: reads/s against the quiet runs' median; aim: health p99 < 100 ms, ratio >= 0.8)")


async def _user(url: str) -> None:
    store = open_store(url)
    try:
        await store.write(lambda tx: users.create_user(tx, "user-0@example.com", secrets.token_urlsafe(12)))
    finally:
        await store.close()


if __name__ == "__main__":
    main()
