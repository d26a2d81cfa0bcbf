"""Shared fixtures: a real store for core tests, and the real stack (`tasktrail
up`: server processes and Envoy) for end-to-end tests; on SQLite, or on
PostgreSQL when TASKTRAIL_TEST_DATABASE names one (tests/databases.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.pytest_plugin
import grpc
import pytest
from grpc import aio

from tasktrail import migrate, server
from tasktrail.config import ServerSettings
from tasktrail.sample import WithToken
from tasktrail.v1 import task_service_pb2_grpc, writer_service_pb2_grpc
from tests import databases

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pytest_report_header(config: pytest.Config) -> str:
    where = databases.TEST_DATABASE if databases.ON_POSTGRES else "SQLite (a file per store)"
    return f"tasktrail: database {where}, {databases.REPLICAS} replica(s) a stack"


def pytest_sessionstart(session: pytest.Session) -> None:
    # A run asked for PostgreSQL must run on it: an unreachable server fails it, never skips it.
    databases.check_server()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = "postgres" if databases.ON_POSTGRES else "sqlite"
    for item in items:
        only = item.get_closest_marker("only")
        if only is not None and here not in only.args:
            item.add_marker(pytest.mark.skip(reason=f"runs on {', '.join(only.args)} only"))


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    url = databases.fresh_url(tmp_path)
    migrate.migrate(url)
    yield url
    databases.drop(url)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"  # grpc.aio runs on asyncio


def is_asyncpg_cancel_noise(context: dict[str, Any]) -> bool:
    """asyncpg's known race (MagicStack/asyncpg#1211, #1310): when a connection is
    closed while the cancel request of an interrupted query is still connecting,
    that request's SSL negotiation future fails with nobody left to read it. It
    costs nothing but a log line; the tests let through this one and no other."""
    error = context.get("exception")
    return (
        context.get("message") == "Future exception was never retrieved"
        and type(error) is ConnectionError
        and str(error) == "unexpected connection_lost() call"
    )


async def filter_loop_errors() -> None:
    loop = asyncio.get_running_loop()
    collect = loop.get_exception_handler()
    assert collect is not None  # anyio's, which fails the running test

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if is_asyncpg_cancel_noise(context):
            loop.default_exception_handler(context)  # logged, as outside the tests
        else:
            collect(loop, context)

    loop.set_exception_handler(handle)


@pytest.fixture(scope="session", autouse=True)
def one_event_loop() -> Iterator[None]:
    """One event loop for every async test. anyio keeps its test runner, and so its
    loop, open while anyone holds it: this holds it for the session. grpc.aio's
    poller serves one process-wide queue and may still hand a completion of a
    finished test to that test's loop; had that loop closed, the next test would
    fail on "Event loop is closed". So every grpc.aio call in the tests runs on
    this loop (none under an asyncio.run of its own)."""
    with anyio.pytest_plugin.get_runner("asyncio", {}) as runner:
        runner.run_fixture(filter_loop_errors, {})
        yield


@pytest.fixture
async def channel(database_url: str) -> AsyncIterator[aio.Channel]:
    """A channel to a real in-process server on a fresh store, without tokens."""
    running = await server.start(ServerSettings(database_url=database_url, port=0, auth=False))
    async with aio.insecure_channel(f"127.0.0.1:{running.port}") as opened:
        yield opened
    await running.stop(1)


@dataclass
class Stack:
    """A running `tasktrail up`."""

    rest: str
    grpc_target: str
    admin: str
    data_dir: Path
    proc: subprocess.Popen[bytes]
    channel: grpc.Channel
    token: str
    # https://127.0.0.1:<port>, the cloud API; its certificate is signed by `ca`.
    cloud: str = ""
    # https://127.0.0.1:<port>, the enterprise API.
    crdb: str = ""
    database_url: str = ""
    owns_database: bool = True
    # The server processes' own ports (Envoy balances over them).
    server_ports: tuple[int, ...] = ()

    @property
    def ca(self) -> Path:
        return self.data_dir / "tls" / "ca.pem"

    def tasktrail(self, *argv: str, stdin: str | None = None) -> str:
        """Runs the CLI against the stack's store; its output."""
        done = subprocess.run(
            [sys.executable, "-m", "tasktrail", *argv, *self.store_args],
            input=stdin,
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return done.stdout

    @property
    def store_args(self) -> tuple[str, ...]:
        """The CLI's flags that name the stack's store."""
        return ("--data-dir", str(self.data_dir), "--database-url", self.database_url)

    @property
    def writer(self) -> writer_service_pb2_grpc.TaskWriterServiceStub:
        return writer_service_pb2_grpc.TaskWriterServiceStub(self.channel)

    @property
    def reader(self) -> task_service_pb2_grpc.TaskServiceStub:
        return task_service_pb2_grpc.TaskServiceStub(self.channel)


def distinct_ports(count: int, run: int) -> tuple[list[int], int]:
    """`count` free ports, and the first of `run` consecutive free ones, all
    different: each is held open until all are picked, as the kernel may hand
    out a port it has just released again."""
    with contextlib.ExitStack() as held:

        def take(port: int = 0) -> int | None:
            s = held.enter_context(socket.socket())
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return None
            return int(s.getsockname()[1])

        singles = [take() for _ in range(count)]
        while True:
            first = take()
            assert first is not None
            if first + run < 65536 and all(take(first + i) is not None for i in range(1, run)):
                return [p for p in singles if p is not None], first


def start_stack(
    data_dir: Path,
    *extra: str,
    replicas: int | None = None,
    env: dict[str, str] | None = None,
    database_url: str | None = None,
) -> Stack:
    """`tasktrail up` on free ports and a fresh store; replicas as the test run's setting says."""
    replicas = databases.REPLICAS if replicas is None else replicas
    url = database_url or databases.fresh_url(data_dir)
    (rest, grpc_port, admin, cloud_port, crdb_port), server_port = distinct_ports(5, replicas + 1)
    argv = [
        sys.executable, "-m", "tasktrail", "up",
        "--data-dir", str(data_dir),
        "--database-url", url,
        "--rest-port", str(rest),
        "--grpc-port", str(grpc_port),
        "--admin-port", str(admin),
        "--cloud-port", str(cloud_port),
        "--crdb-port", str(crdb_port),
        "--server-port", str(server_port),
        "--replicas", str(replicas),
        "--shutdown-grace", "2",
        *extra,
    ]  # fmt: skip
    with open(data_dir / "up.log", "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tasktrail up exited: {(data_dir / 'up.log').read_text()}")
        if b"tasktrail is up." in (data_dir / "up.log").read_bytes():
            break
        time.sleep(0.1)
    else:
        proc.kill()
        raise TimeoutError((data_dir / "up.log").read_text())
    token = (data_dir / "dev-token").read_text().strip()
    channel = grpc.intercept_channel(grpc.insecure_channel(f"127.0.0.1:{grpc_port}"), WithToken(token))
    return Stack(
        f"http://127.0.0.1:{rest}",
        f"127.0.0.1:{grpc_port}",
        f"127.0.0.1:{admin}",
        data_dir,
        proc,
        channel,
        token,
        cloud=f"https://127.0.0.1:{cloud_port}",
        crdb=f"https://127.0.0.1:{crdb_port}",
        database_url=url,
        owns_database=database_url is None,
        server_ports=tuple(server_port + i for i in range(replicas)),
    )


def stop_stack(stack: Stack) -> None:
    stack.channel.close()
    if stack.proc.poll() is None:
        stack.proc.send_signal(signal.SIGINT)
        try:
            stack.proc.wait(30)
        except subprocess.TimeoutExpired:
            stack.proc.kill()
            stack.proc.wait()
    if stack.owns_database:
        databases.drop(stack.database_url)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One stack with the sample data, shared by the end-to-end tests."""
    running = start_stack(tmp_path_factory.mktemp("stack"))
    yield running
    stop_stack(running)


def http_get(
    url: str, headers: dict[str, str] | None = None, ca: Path | None = None, method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    """One request; HTTPS trusts `ca` (the stack's local CA)."""
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    context = ssl.create_default_context(cafile=str(ca)) if ca is not None else None
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as reply:
            return reply.status, {k.lower(): v for k, v in reply.headers.items()}, reply.read()
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()
