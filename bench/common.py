"""Helpers for the benchmarks: free ports, processes, Envoy, seeding, load."""

from __future__ import annotations

import asyncio
import functools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy.engine import make_url

from tasktrail.auth import tokens
from tasktrail.auth.principal import Role
from tasktrail.core.ids import IdGenerator
from tasktrail.core.model import Scope, Status, Task
from tasktrail.edge import config, tls
from tasktrail.store import migrate, open_store
from tasktrail.store import statements as q

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def process(argv: Sequence[str], log: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_grpc_healthy(target: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                    return
            except grpc.RpcError:
                time.sleep(0.1)
    raise TimeoutError(f"{target} never became healthy")


@dataclass
class Edge:
    rest: str
    grpc: str
    admin: str
    pid: int
    cloud: str = ""
    crdb: str = ""


@contextmanager
def envoy(workdir: Path, backends: Sequence[int], name: str, writes: Sequence[int] = ()) -> Iterator[Edge]:
    rest, grpc_port, admin, cloud, crdb = free_port(), free_port(), free_port(), free_port(), free_port()
    certificate = tls.server_certificate(workdir, "127.0.0.1", None, None)
    edge = config.EdgeConfig(
        backends=[("127.0.0.1", p) for p in backends],
        write_backends=[("127.0.0.1", p) for p in writes],
        rest_port=rest,
        grpc_port=grpc_port,
        cloud_port=cloud,
        crdb_port=crdb,
        tls_cert=certificate.cert,
        tls_key=certificate.key,
        admin_port=admin,
    )
    path = config.write(edge, workdir / f"envoy-{name}")
    with process(config.envoy_command(path), workdir / f"envoy-{name}.log") as proc:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{admin}/ready", timeout=1) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                time.sleep(0.05)
        else:
            raise TimeoutError("Envoy never became ready")
        # The cluster's first health check must have passed too.
        time.sleep(1.5)
        yield Edge(
            f"http://127.0.0.1:{rest}",
            f"127.0.0.1:{grpc_port}",
            f"127.0.0.1:{admin}",
            proc.pid,
            f"https://127.0.0.1:{cloud}",
            f"https://127.0.0.1:{crdb}",
        )


@dataclass
class Server:
    port: int
    pid: int


@contextmanager
def server(database_url: str, workdir: Path, name: str = "server", *extra: str) -> Iterator[Server]:
    port = free_port()
    argv = [sys.executable, "-m", "tasktrail", "serve", "--database-url", database_url, "--port", str(port), *extra]
    with process(argv, workdir / f"{name}.log") as proc:
        wait_grpc_healthy(f"127.0.0.1:{port}")
        yield Server(port, proc.pid)
        assert proc.poll() is None, f"{name} died; see {workdir / (name + '.log')}"


def seed(
    database_url: str, databases: int, per_database: int, batch: int = 20_000, running_every: int = 0
) -> list[tuple[str, str, bool]]:
    """Write tasks straight into the store, in creation order (every `running_every`-th one still
    running); returns (database, task_id, running) samples."""
    migrate(database_url)

    async def go() -> list[tuple[str, str, bool]]:
        store = open_store(database_url)
        copy = await asyncpg.connect(_asyncpg_dsn(database_url)) if database_url.startswith("postgresql") else None

        async def write(rows: list[Task]) -> None:
            if copy is None:
                await store.write(functools.partial(insert_all, rows))
                return
            values = [q.task_values(t) for t in rows]  # PostgreSQL: COPY, much faster than INSERTs
            columns = list(values[0])
            await copy.copy_records_to_table(
                "tasks", records=[tuple(v[c] for c in columns) for v in values], columns=columns
            )

        ids = IdGenerator()
        picked: list[tuple[str, str, bool]] = []
        total = databases * per_database
        start_us = time.time_ns() // 1000 - total * 1000
        rows: list[Task] = []
        for n in range(total):
            created = start_us + n * 1000
            db = f"db-{n % databases:04d}"
            running = running_every > 0 and n % running_every == 0
            task = Task(
                task_id=ids.new(created // 1000),
                scope=Scope.DATABASE,
                entity_id=db,
                type="update",
                status=Status.RUNNING if running else Status.COMPLETED,
                created_at=created,
                updated_at=created,
                status_changed_at=created,
                started_at=created,
                completed_at=None if running else created + 500,
            )
            rows.append(task)
            if n % max(1, total // 4000) == 0 or (running and n % max(1, total // 400) == 0):
                picked.append((db, task.task_id, running))
            if len(rows) >= batch:
                await write(rows)
                rows = []
        if rows:
            await write(rows)
        if copy is not None:
            await copy.execute("ANALYZE")
            await copy.close()
        await store.close()
        return picked

    return asyncio.run(go())


def insert_all(rows: list[Task], tx: q.WriteQueries) -> None:
    tx.insert_tasks(rows)


# The machine's PostgreSQL (trust auth), where the benchmarks make their databases.
PG_BASE = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def pg_database(base: str) -> Iterator[str]:
    """A new PostgreSQL database on the server `base` names, migrated, dropped afterwards."""
    name = f"tt_bench_{uuid.uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(_asyncpg_dsn(base))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    try:
        migrate(url)
        yield url
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def seed_logs(url: str, sample: list[str], per_task: int) -> list[tuple[str, str, list[str]]]:
    """`per_task` log entries for every task of a PostgreSQL store (COPY); returns
    (database, task_id, entry ids) of the tasks in `sample`."""
    wanted = set(sample)

    async def go() -> list[tuple[str, str, list[str]]]:
        conn = await asyncpg.connect(_asyncpg_dsn(url))
        try:
            rows = await conn.fetch("SELECT task_id, entity_id, created_at FROM tasks")
            ids = IdGenerator()
            records: list[tuple[str, str, int, str, None]] = []
            picked: list[tuple[str, str, list[str]]] = []
            for task_id, entity_id, created_at in rows:
                entries = [ids.new(created_at // 1000 + i) for i in range(per_task)]
                records.extend((task_id, e, created_at + i, f"line {i}", None) for i, e in enumerate(entries))
                if task_id in wanted:
                    picked.append((entity_id, task_id, entries))
                if len(records) >= 200_000:
                    await conn.copy_records_to_table(
                        "log_entries",
                        records=records,
                        columns=["task_id", "entry_id", "timestamp", "message", "fields"],
                    )
                    records = []
            if records:
                await conn.copy_records_to_table(
                    "log_entries", records=records, columns=["task_id", "entry_id", "timestamp", "message", "fields"]
                )
            await conn.execute("ANALYZE")
            return picked
        finally:
            await conn.close()

    return asyncio.run(go())


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True, capture_output=True, timeout=600)
        found = shutil.which("wrk")
    if not found:
        raise SystemExit("the benchmarks need wrk (Debian: apt-get install wrk)")
    return found


@dataclass
class Load:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    assert m, text
    return float(m.group(1)) * _UNITS[m.group(2)]


def wrk(url: str, *, connections: int = 32, seconds: int = 10, script: Path | None = None) -> Load:
    argv = [ensure_wrk(), "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script is not None:
        argv += ["-s", str(script)]
    out = subprocess.run([*argv, url], check=True, capture_output=True, text=True, timeout=seconds + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    # The "Latency Distribution" lines: "     50%    1.43ms" (other columns end in % too).
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)$", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)$", out, re.M).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = int(bad.group(1)) if bad else 0
    if socket_errors:
        errors += sum(int(x) for x in socket_errors.groups())
    return Load(rps, p50, p99, errors)


def make_token(database_url: str, name: str, grants: Sequence[str] = ("database",)) -> str:
    """A writer token for the benchmark's clients, straight into the store."""

    async def go() -> str:
        store = open_store(database_url)
        try:
            return await store.write(lambda tx: tokens.create_token(tx, name, Role.WRITER, grants))
        finally:
            await store.close()

    return asyncio.run(go())
