"""The real stack (`tasktrail up`: server processes and Envoy) for end-to-end
tests, on free ports and a fresh store of its own; and small network helpers."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import grpc

from tasktrail.edge.sample import WithToken
from tasktrail.v1 import task_service_pb2_grpc, writer_service_pb2_grpc
from tests.support import databases

ROOT = Path(__file__).resolve().parent.parent.parent


def _ephemeral() -> range:
    """The ports the kernel hands to outgoing connections: a listener picked
    from them can find its port taken by some connection before it binds."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return range(low, high + 1)


# Ports for the stacks' listeners: below the ephemeral range, picked at random.
LISTEN_PORTS = range(20000, 32768)


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A port nothing listens on, outside the ephemeral range."""
    ephemeral = _ephemeral()
    while True:
        port = random.choice(LISTEN_PORTS)
        if port not in ephemeral and _bindable(port):
            return port


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
    # http://127.0.0.1:<port>/metrics: every server process's Prometheus metrics.
    metrics: str = ""

    @property
    def ca(self) -> Path:
        return self.data_dir / "tls" / "ca.pem"

    @property
    def trust(self) -> ssl.SSLContext:
        """A TLS client context that trusts the stack's local CA."""
        return ssl.create_default_context(cafile=str(self.ca))

    def tasktrail(self, *argv: str, stdin: str | None = None, store: bool = True) -> str:
        """Runs the CLI against the stack's store (or only its data directory); its output."""
        where = self.store_args if store else ("--data-dir", str(self.data_dir))
        done = subprocess.run(
            [sys.executable, "-m", "tasktrail", *argv, *where],
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
    different and outside the ephemeral range (an outgoing connection could
    take one before its listener binds); each is held until all are picked."""
    with contextlib.ExitStack() as held:
        ephemeral = _ephemeral()

        def take(port: int | None = None) -> int | None:
            port = random.choice(LISTEN_PORTS) if port is None else port
            if port in ephemeral or port not in LISTEN_PORTS:
                return None
            s = held.enter_context(socket.socket())
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return None
            return port

        singles: list[int] = []
        while len(singles) < count:
            port = take()
            if port is not None and port not in singles:
                singles.append(port)
        while True:
            first = take()
            if (
                first is not None
                and first not in singles
                and all(p not in singles and take(p) is not None for p in range(first + 1, first + run))
            ):
                return singles, first


def start_stack(
    data_dir: Path,
    *extra: str,
    replicas: int | None = None,
    env: dict[str, str] | None = None,
    database_url: str | None = None,
    owns: bool | None = None,
) -> Stack:
    """`tasktrail up` on free ports and a fresh store; replicas as the test run's setting says."""
    replicas = databases.REPLICAS if replicas is None else replicas
    url = database_url or databases.fresh_url(data_dir)
    (rest, grpc_port, admin, cloud_port, crdb_port, metrics_port), server_port = distinct_ports(6, replicas + 1)
    argv = [
        sys.executable, "-m", "tasktrail", "up",
        "--data-dir", str(data_dir),
        "--database-url", url,
        "--rest-port", str(rest),
        "--grpc-port", str(grpc_port),
        "--admin-port", str(admin),
        "--cloud-port", str(cloud_port),
        "--crdb-port", str(crdb_port),
        "--metrics-port", str(metrics_port),
        "--server-port", str(server_port),
        "--replicas", str(replicas),
        "--shutdown-grace", "2",
        *extra,
    ]  # fmt: skip
    data_dir.mkdir(parents=True, exist_ok=True)
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
    token_file = data_dir / "dev-token"
    token = token_file.read_text().strip() if token_file.exists() else ""  # none without --dev
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
        owns_database=database_url is None if owns is None else owns,
        server_ports=tuple(server_port + i for i in range(replicas)),
        metrics=f"http://127.0.0.1:{metrics_port}/metrics",
    )


def same_ports(stack: Stack) -> tuple[str, ...]:
    """The `up` arguments that serve again on `stack`'s ports (after it stopped)."""

    def port(url: str) -> str:
        return url.rsplit(":", 1)[1].split("/")[0]

    return (
        "--rest-port", port(stack.rest), "--grpc-port", port(stack.grpc_target), "--admin-port", port(stack.admin),
        "--cloud-port", port(stack.cloud), "--crdb-port", port(stack.crdb),
        "--server-port", str(stack.server_ports[0]), "--replicas", str(len(stack.server_ports)),
        "--metrics-port", port(stack.metrics),
    )  # fmt: skip


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
