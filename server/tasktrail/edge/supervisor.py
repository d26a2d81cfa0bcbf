"""`tasktrail up`: migrate, start the server processes and Envoy, supervise
them, and stop everything cleanly on Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy.engine import make_url

from tasktrail.api.server import SERVER_PORT, SHUTDOWN_GRACE
from tasktrail.auth import dev
from tasktrail.edge import config, sample, tls
from tasktrail.edge import metrics as process_metrics
from tasktrail.store import migrate, open_store

log = logging.getLogger("tasktrail.up")

# Children get SIGTERM when `up` dies, even by SIGKILL (Linux, util-linux setpriv).
_SETPRIV = shutil.which("setpriv")
DIE_WITH_PARENT = [_SETPRIV, "--pdeathsig", "TERM", "--"] if _SETPRIV else []


# A child that dies is started again after a delay that doubles with each death
# before it became healthy (a crash loop), from FIRST_DELAY up to MAX_DELAY; one
# that became healthy and served starts again after FIRST_DELAY.
FIRST_DELAY = 0.5
MAX_DELAY = 30.0


@dataclass
class Child:
    name: str
    argv: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    # Deaths since it was last healthy, and when it may start again (its own clock).
    restarts: int = 0
    started_at: float = 0.0
    restart_at: float | None = None
    healthy: bool = False
    # Asks whether the running child serves (a quick, non-blocking probe).
    probe: Callable[[], bool] | None = None
    env: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                [*DIE_WITH_PARENT, *self.argv],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches `up` only; it stops the children in order
                env={**os.environ, **self.env},
            )
        self.started_at = time.monotonic()
        self.restart_at = None
        self.healthy = False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def wait_healthy(target: str, child: Child | None, timeout: float = 30.0) -> None:
    """Until the server at `target` answers SERVING (`child`: the process we started there)."""
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)  # its stubs type no methods
        while time.monotonic() < deadline:
            if child is not None and not child.alive():
                raise RuntimeError(f"{child.name} exited early; see {child.log_path}")
            with contextlib.suppress(grpc.RpcError):  # not listening yet
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            time.sleep(0.1)
    where = f"; see {child.log_path}" if child is not None else ""
    raise TimeoutError(f"{child.name if child else target} did not become healthy within {timeout:.0f} s{where}")


def wait_envoy_ready(admin: str, child: Child, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError(f"Envoy exited early (is a port taken?); see {child.log_path}")
        with contextlib.suppress(OSError), urllib.request.urlopen(f"http://{admin}/ready", timeout=1.0) as reply:
            if reply.status == 200:  # not listening yet: OSError
                return
        time.sleep(0.05)
    raise TimeoutError(f"Envoy was not ready within {timeout:.0f} s; see {child.log_path}")


@dataclass(frozen=True)
class UpSettings:
    """What `tasktrail up` runs: where, on which ports, with how many processes."""

    data_dir: Path
    database_url: str
    # The flags every `tasktrail serve` it starts gets (the server options).
    server_argv: Sequence[str] = ()
    host: str = "127.0.0.1"
    rest_port: int = 3000
    grpc_port: int = 50051
    cloud_port: int = 8443
    crdb_port: int = 9443
    admin_port: int = 9901
    server_port: int = SERVER_PORT
    replicas: int = 1
    # Servers on other hosts: then this machine runs Envoy alone, in front of them.
    backends: Sequence[tuple[str, int]] = ()
    write_lane: bool = False
    envoy_concurrency: int = 1
    envoy_idle_timeout: float = 300.0
    access_log: bool = True
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # TLS on the control-plane and gRPC ports too, and client certificates on 3000.
    rest_tls: bool = False
    grpc_tls: bool = False
    client_ca: Path | None = None
    # Client certificates signed by the local CA on 3000 (`tasktrail certs client` makes them).
    client_certs: bool = False
    admin_host: str = "127.0.0.1"
    # Every server process's Prometheus metrics (a process label each) at admin_host:metrics_port/metrics (0: none).
    metrics_port: int = 9464
    allowed_hosts: Sequence[str] = ()
    # Development mode: a writer token, a cloud account and a user made and printed,
    # and sample tasks. Without it `up` makes no credential at all.
    dev: bool = True
    sample: bool = True
    controlplane_auth: bool = False
    shutdown_grace: float = SHUTDOWN_GRACE


@dataclass(frozen=True)
class DevCredentials:
    token: str
    account: dev.DevAccount
    user: tuple[str, str]


def shown_url(url: str) -> str:
    """A database URL as it may be printed or logged: its password hidden."""
    return make_url(url).render_as_string(hide_password=True)


def private_data_dir(path: Path) -> Path:
    """The data directory, readable by its owner only; everything made in it
    from now on too (the store, keys, tokens, logs)."""
    os.umask(0o077)
    path = path.resolve()
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


async def _dev_credentials(url: str, data_dir: Path) -> DevCredentials:
    store = open_store(url)
    try:
        return DevCredentials(
            await dev.ensure_token(store, data_dir),
            await dev.ensure_account(store, data_dir),
            await dev.ensure_user(store, data_dir),
        )
    finally:
        await store.close()


def banner(
    up: UpSettings, data_dir: Path, credentials: DevCredentials | None, certificate: tls.ServerCertificate
) -> str:
    host = up.host
    scheme = "https" if up.rest_tls or up.client_ca is not None or up.client_certs else "http"
    rest = f"{scheme}://{host}:{up.rest_port}"
    lines = [
        "",
        "tasktrail is up.",
        f"  web console               {rest}/ui/" + ("  (sign in with a token)" if up.controlplane_auth else ""),
        f"  REST, control-plane API   {rest}" + ("  (needs a token)" if up.controlplane_auth else ""),
        f"  REST, native API          {rest}/api/v1/tasks",
        f"  gRPC, every service       {host}:{up.grpc_port}" + ("  (TLS)" if up.grpc_tls else ""),
        f"  REST, cloud API (HTTPS)   https://{host}:{up.cloud_port}/v1",
        f"  REST, enterprise (HTTPS)  https://{host}:{up.crdb_port}/v1/crdb_tasks",
        f"  Envoy admin               http://{up.admin_host}:{up.admin_port}",
        *([f"  metrics (Prometheus)      http://{up.admin_host}:{up.metrics_port}/metrics"] if up.metrics_port else []),
        f"  Envoy's metrics           http://{up.admin_host}:{up.admin_port}/stats/prometheus",
        f"  store                     {shown_url(up.database_url)}",
        f"  logs                      {data_dir / 'logs'}",
        *([f"  local CA                  export CURL_CA_BUNDLE={certificate.ca}"] if certificate.ca else []),
    ]
    if credentials is None:
        lines += [
            "  credentials               none made (--no-dev): `tasktrail tokens create`, `accounts create`,",
            "                            `users create` make them",
            "",
            "Press Ctrl-C to stop.",
            "",
        ]
        return "\n".join(lines)
    token, account, user = credentials.token, credentials.account, credentials.user
    db = "example"
    task = sample.DOC_TASK_ID
    auth = f" -H 'Authorization: Bearer {token}'" if up.controlplane_auth else ""
    lines += [
        f"  development token         {token}",
        f"                            (a writer of every scope; kept in {data_dir / dev.TOKEN_FILE})",
        f"  development cloud account {account.account_id}: its keys are in {account.path}",
        f"  development user          {user[0]}:{user[1]}",
        f"                            (basic auth on the enterprise API; kept in {data_dir / dev.USER_FILE})",
        "",
        "Try:",
        f"  curl{auth} {rest}/v1/databases/{db}/tasks",
        f"  curl{auth} '{rest}/v1/databases/{db}/tasks?limit=5&after_task_id={sample.DOC_AFTER_TASK_ID}"
        "&sort_order=asc'",
        f"  curl{auth} {rest}/v1/databases/{db}/tasks/{task}",
        f"  curl{auth} {rest}/v1/databases/{db}/tasks/{task}/log",
        f"  curl{auth} '{rest}/v1/databases/{db}/tasks/{task}/log?after_entry_id={sample.DOC_AFTER_ENTRY_ID}'",
        f"  curl{auth} '{rest}/v1/databases/{db}/tasks/{task}/log?limit=10'",
        f"  curl{auth} {rest}/v1/hosts/{sample.HOST_ID}/tasks",
        f"  curl{auth} '{rest}/v1/tasks?scope=database&entity_id={db}'",
        "",
        f"  export TASKTRAIL_TARGET={host}:{up.grpc_port} TASKTRAIL_TOKEN={token}",
        "  .venv/bin/tasktrail tasks list",
        f"  .venv/bin/tasktrail logs get {task}",
        "  .venv/bin/tasktrail demo",
        "",
        f"  set -a; . {account.path}; set +a",
        f"  export HOST={host}:{up.cloud_port}/v1" + (f" CURL_CA_BUNDLE={certificate.ca}" if certificate.ca else ""),
        '  curl -s -X GET "https://$HOST/tasks" -H "accept: application/json" '
        '-H "x-api-key: $ACCOUNT_KEY" -H "x-api-secret-key: $SECRET_KEY"',
        "",
        f"  curl -k -u '{user[0]}:{user[1]}' https://{host}:{up.crdb_port}/v1/crdb_tasks",
        f"  curl -k -u '{user[0]}:{user[1]}' "
        f"'https://{host}:{up.crdb_port}/v1/crdb_tasks/{sample.CRDB_FINISHED_ID}?verbose=true'",
        "",
        "Press Ctrl-C to stop.",
        "",
    ]
    return "\n".join(lines)


def metrics_dir(data_dir: Path) -> Path:
    """Where each server process names the port of its counts, for `up` to serve
    them all at one address: emptied at each start."""
    directory = data_dir / "metrics"
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(mode=0o700)
    return directory


class AlreadyRunning(RuntimeError):
    """Another `tasktrail up` holds the data directory, or a port is taken."""


def hold_data_dir(data_dir: Path) -> IO[str]:
    """Lock the data directory for this `up` (held while the file stays open;
    the system lets go when the process ends, however it ends)."""
    handle = open(data_dir / "up.lock", "a+")  # noqa: SIM115  # held for the process's life
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise AlreadyRunning(
            f"another tasktrail up (pid {holder}) is running with the data directory {data_dir}: "
            "stop it first, or give this one its own --data-dir and ports"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def ports_to_bind(settings: UpSettings) -> list[tuple[str, str, int]]:
    """(flag, host, port) of every port this `up` will listen on."""
    host = settings.host
    named = [
        ("--rest-port", host, settings.rest_port),
        ("--grpc-port", host, settings.grpc_port),
        ("--cloud-port", host, settings.cloud_port),
        ("--crdb-port", host, settings.crdb_port),
        ("--admin-port", settings.admin_host, settings.admin_port),
    ]
    if settings.metrics_port:
        named.append(("--metrics-port", settings.admin_host, settings.metrics_port))
    if not settings.backends:
        lanes = settings.replicas + (1 if settings.write_lane else 0)
        named += [("--server-port", host, settings.server_port + i) for i in range(lanes)]
    return named


def check_ports_free(settings: UpSettings) -> None:
    """Refuse to start on a port something already listens on: otherwise the
    health checks would find the other instance's servers and say all is well."""
    for flag, host, port in ports_to_bind(settings):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            # As the servers and Envoy bind: a port left in TIME_WAIT is free, a listener is not.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                raise AlreadyRunning(
                    f"port {port} on {host} ({flag}) is in use ({exc.strerror}): another tasktrail up, or "
                    f"another program, listens there; stop it, or choose another port with {flag}"
                ) from None


def up(settings: UpSettings) -> int:
    data_dir = private_data_dir(settings.data_dir)
    try:
        lock = hold_data_dir(data_dir)
        check_ports_free(settings)
    except AlreadyRunning as exc:
        log.error("%s", exc)
        return 1
    try:
        return _up(settings, data_dir)
    finally:
        lock.close()


def _up(settings: UpSettings, data_dir: Path) -> int:
    url = settings.database_url
    revision = migrate(url)
    log.info("schema at revision %s", revision)
    credentials = asyncio.run(_dev_credentials(url, data_dir)) if settings.dev else None

    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    host = settings.host

    # The URL may hold a password: the environment carries it, not argv (which `ps` shows).
    env = {"TASKTRAIL_DATABASE_URL": url}
    counts = metrics_dir(data_dir)

    def serve(name: str, port: int) -> Child:
        argv = [sys.executable, "-m", "tasktrail", "serve", *settings.server_argv, "--host", host, "--port", str(port)]
        # Never a port of their own choosing: a TASKTRAIL_METRICS_PORT the
        # children inherit names up's port. With up's metrics on, each takes a
        # free loopback port and writes it to the file up reads.
        argv += ["--metrics-port", "0"]
        if settings.metrics_port:
            argv += ["--metrics-port-file", str(counts / f"{name}.port")]
        return Child(name, argv, data_dir / "logs" / f"{name}.log", env=env)

    remote = list(settings.backends)
    first = settings.server_port
    backends = remote or [(host, first + i) for i in range(settings.replicas)]
    servers = [serve(f"server-{i}", first + i) for i in range(0 if remote else settings.replicas)]
    writers: list[tuple[str, int]] = []
    if settings.write_lane and not remote:
        lane_port = first + settings.replicas
        servers.append(serve("writer", lane_port))
        writers.append((host, lane_port))
    certificate = tls.server_certificate(data_dir, host, settings.tls_cert, settings.tls_key)
    client_ca = settings.client_ca or (data_dir / "tls" / "ca.pem" if settings.client_certs else None)
    edge = config.EdgeConfig(
        backends=backends,
        write_backends=writers,
        host=host,
        rest_port=settings.rest_port,
        grpc_port=settings.grpc_port,
        cloud_port=settings.cloud_port,
        crdb_port=settings.crdb_port,
        tls_cert=certificate.cert,
        tls_key=certificate.key,
        admin_port=settings.admin_port,
        admin_host=settings.admin_host,
        access_log=data_dir / "logs" / "access.log" if settings.access_log else None,
        stream_idle_timeout=settings.envoy_idle_timeout,
        rest_tls=settings.rest_tls,
        grpc_tls=settings.grpc_tls,
        client_ca=client_ca,
        allowed_hosts=tuple(settings.allowed_hosts),
    )
    config_path = config.write(edge, data_dir / "envoy")
    envoy_argv = config.envoy_command(config_path, settings.envoy_concurrency)
    envoy = Child("envoy", envoy_argv, data_dir / "logs" / "envoy.log")
    children = [*servers, envoy]
    try:
        for child in servers:
            child.start()
        for i, child in enumerate(servers):
            wait_healthy(f"{host}:{first + i}", child)  # the write lane's port follows the replicas
        for backend_host, port in remote:
            wait_healthy(f"{backend_host}:{port}", None)
        envoy.start()
        wait_envoy_ready(f"{host}:{settings.admin_port}", envoy)
        if settings.sample and credentials is not None:
            account_id = credentials.account.account_id
            ca = certificate.ca if settings.grpc_tls else None
            wrote = sample.write_if_empty(f"{host}:{settings.grpc_port}", credentials.token, account_id, ca)
            if wrote:
                log.info(
                    "wrote %d sample tasks (database %s, host %s, cloud account %s, crdb %s)",
                    wrote,
                    sample.DATABASE_ID,
                    sample.HOST_ID,
                    account_id,
                    sample.CRDB_GUID,
                )
        if settings.metrics_port:
            process_metrics.serve(settings.admin_host, settings.metrics_port, counts)
        print(banner(settings, data_dir, credentials, certificate), flush=True)
        for i, child in enumerate(servers):
            child.probe = grpc_probe(f"{host}:{first + i}")
        envoy.probe = envoy_probe(f"{host}:{settings.admin_port}")
        supervise(children, stopping)
    except (RuntimeError, TimeoutError, OSError) as exc:
        log.error("%s", exc)
        return 1
    finally:
        stop_all(envoy, servers, f"{host}:{settings.admin_port}", settings.shutdown_grace)
        log.info("stopped")
    return 0


def supervise(children: list[Child], stopping: threading.Event) -> None:
    """Start again a child that dies, each on its own clock (one child's delay
    never holds another back), until told to stop; never after."""
    while not stopping.wait(0.1):
        now = time.monotonic()
        for child in children:
            if child.alive():
                if not child.healthy and child.probe is not None and child.probe():
                    child.healthy, child.restarts = True, 0  # it served: its next death waits little
                continue
            if child.proc is None:
                continue
            if child.restart_at is None:
                delay = min(MAX_DELAY, FIRST_DELAY * 2 ** min(child.restarts, 6))
                child.restart_at = now + delay
                child.restarts += 1
                code = child.proc.returncode
                log.warning(
                    "%s exited (%s); starting it again in %.1f s, see %s", child.name, code, delay, child.log_path
                )
            elif child.restart_at <= now and not stopping.is_set():
                child.start()


def grpc_probe(target: str) -> Callable[[], bool]:
    """Whether the server at `target` answers SERVING now (one quick check)."""

    def probe() -> bool:
        with grpc.insecure_channel(target) as channel:
            try:
                stub: Any = health_pb2_grpc.HealthStub(channel)  # its stubs type no methods
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=0.3)
            except grpc.RpcError:
                return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    return probe


def envoy_probe(admin: str) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            with urllib.request.urlopen(f"http://{admin}/ready", timeout=0.3) as reply:
                return bool(reply.status == 200)
        except OSError:
            return False

    return probe


def stop_all(envoy: Child, servers: list[Child], admin: str, grace: float) -> None:
    """Stop in the order that loses nothing: the edge takes no new connection,
    the servers finish what they serve (unary calls complete, followers get a
    last frame that tells them to resume elsewhere), then the edge goes."""
    if envoy.alive():
        with contextlib.suppress(OSError):
            drain = urllib.request.Request(f"http://{admin}/drain_listeners?inboundonly", method="POST")
            urllib.request.urlopen(drain, timeout=2).close()
    for child in servers:
        if child.alive():
            child.proc.terminate()  # type: ignore[union-attr]
    for child in servers:
        child.stop(grace)
    envoy.stop(5.0)
