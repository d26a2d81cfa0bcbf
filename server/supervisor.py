"""`tasktrail up`: migrate, start the server processes and Envoy, supervise
them, and stop everything cleanly on Ctrl-C."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tasktrail import accounts, edge, migrate, sample, tls, tokens, users
from tasktrail.config import env, env_int

log = logging.getLogger("tasktrail.up")

# Children get SIGTERM when `up` dies, even by SIGKILL (Linux, util-linux setpriv).
_SETPRIV = shutil.which("setpriv")
DIE_WITH_PARENT = [_SETPRIV, "--pdeathsig", "TERM", "--"] if _SETPRIV else []


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    add_server_options: Callable[[argparse.ArgumentParser], None],
) -> None:
    p = sub.add_parser("up", help="run everything: migrate, server process(es), Envoy; Ctrl-C stops it all")
    add_server_options(p)
    p.add_argument("--host", default=env("HOST", "127.0.0.1"), help="address every port binds to")
    p.add_argument("--rest-port", type=int, default=env_int("REST_PORT", 3000), help="control-plane REST API")
    p.add_argument("--grpc-port", type=int, default=env_int("GRPC_PORT", 50051), help="native gRPC (every service)")
    p.add_argument("--cloud-port", type=int, default=env_int("CLOUD_PORT", 8443), help="cloud REST API (HTTPS)")
    p.add_argument(
        "--crdb-port", type=int, default=env_int("CRDB_PORT", 9443), help="enterprise REST API (HTTPS, basic auth)"
    )
    p.add_argument("--tls-cert", type=Path, default=None, help="the HTTPS ports' certificate (default: a local CA's)")
    p.add_argument("--tls-key", type=Path, default=None, help="its private key")
    p.add_argument("--admin-port", type=int, default=env_int("ADMIN_PORT", 9901), help="Envoy's admin interface")
    p.add_argument("--server-port", type=int, default=env_int("SERVER_PORT", 50061), help="first server process port")
    p.add_argument("--replicas", type=int, default=env_int("REPLICAS", 1), help="server processes")
    p.add_argument(
        "--backend",
        action="append",
        type=_host_port,
        default=[],
        metavar="HOST:PORT",
        help="a server (`tasktrail serve`) on another host; repeat for each. Then this machine runs Envoy "
        "alone, in front of them, and no server of its own",
    )
    p.add_argument(
        "--write-lane",
        action="store_true",
        default=env("WRITE_LANE", "") not in ("", "0", "false"),
        help="one more server process for the writer API alone, so that appends stay fast under a saturated fan-out",
    )
    p.add_argument("--envoy-concurrency", type=int, default=env_int("ENVOY_CONCURRENCY", 1))
    p.add_argument("--no-sample", dest="sample", action="store_false", help="do not write sample tasks")
    p.add_argument("--access-log", action="store_true", help="Envoy access log on stdout")
    p.add_argument(
        "--envoy-idle-timeout",
        type=float,
        default=float(env("ENVOY_IDLE_TIMEOUT", "300")),
        help="Envoy closes a stream idle this long (s); log follows send heartbeats inside it",
    )


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


@dataclass
class Child:
    name: str
    argv: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0
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
        stub = health_pb2_grpc.HealthStub(channel)
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


def banner(
    args: argparse.Namespace,
    url: str,
    data_dir: Path,
    token: str,
    certificate: tls.ServerCertificate,
    account: accounts.DevAccount,
    user: tuple[str, str],
) -> str:
    rest = f"http://{args.host}:{args.rest_port}"
    db = "example"
    task = sample.DOC_TASK_ID
    auth = f" -H 'Authorization: Bearer {token}'" if args.controlplane_auth else ""
    lines = [
        "",
        "tasktrail is up.",
        f"  REST, control-plane API   {rest}" + ("  (needs a token)" if args.controlplane_auth else ""),
        f"  gRPC, every service       {args.host}:{args.grpc_port}",
        f"  REST, cloud API (HTTPS)   https://{args.host}:{args.cloud_port}/v1",
        f"  REST, enterprise (HTTPS)  https://{args.host}:{args.crdb_port}/v1/crdb_tasks",
        f"  Envoy admin               http://{args.host}:{args.admin_port}",
        f"  store                     {url}",
        f"  logs                      {data_dir / 'logs'}",
        *([f"  local CA                  export CURL_CA_BUNDLE={certificate.ca}"] if certificate.ca else []),
        f"  development token         {token}",
        f"                            (a writer of every scope; kept in {data_dir / 'dev-token'})",
        f"  development cloud account {account.account_id}: its keys are in {account.path}",
        f"  development user          {user[0]}:{user[1]}",
        f"                            (basic auth on the enterprise API; kept in {data_dir / users.DEV_USER_FILE})",
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
        f"  export TASKTRAIL_TARGET={args.host}:{args.grpc_port} TASKTRAIL_TOKEN={token}",
        "  .venv/bin/tasktrail tasks list",
        f"  .venv/bin/tasktrail logs get {task}",
        "  .venv/bin/tasktrail demo",
        "",
        f"  set -a; . {account.path}; set +a",
        f"  export HOST={args.host}:{args.cloud_port}/v1"
        + (f" CURL_CA_BUNDLE={certificate.ca}" if certificate.ca else ""),
        '  curl -s -X GET "https://$HOST/tasks" -H "accept: application/json" '
        '-H "x-api-key: $ACCOUNT_KEY" -H "x-api-secret-key: $SECRET_KEY"',
        "",
        f"  curl -k -u '{user[0]}:{user[1]}' https://{args.host}:{args.crdb_port}/v1/crdb_tasks",
        f"  curl -k -u '{user[0]}:{user[1]}' "
        f"'https://{args.host}:{args.crdb_port}/v1/crdb_tasks/{sample.CRDB_FINISHED_ID}?verbose=true'",
        "",
        "Press Ctrl-C to stop.",
        "",
    ]
    return "\n".join(lines)


def up(args: argparse.Namespace, url: str, server_argv: list[str]) -> int:
    data_dir: Path = args.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    revision = migrate.migrate(url)
    log.info("schema at revision %s", revision)
    token = tokens.ensure_dev_token(url, data_dir)
    account = accounts.ensure_dev_account(url, data_dir)
    user = users.ensure_dev_user(url, data_dir)

    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    def serve(name: str, port: int) -> Child:
        argv = [sys.executable, "-m", "tasktrail", "serve", *server_argv, "--host", args.host, "--port", str(port)]
        return Child(name, argv, data_dir / "logs" / f"{name}.log")

    remote: list[tuple[str, int]] = args.backend
    backends = remote or [(args.host, args.server_port + i) for i in range(args.replicas)]
    servers = [serve(f"server-{i}", args.server_port + i) for i in range(0 if remote else args.replicas)]
    writers: list[tuple[str, int]] = []
    if args.write_lane and not remote:
        lane_port = args.server_port + args.replicas
        servers.append(serve("writer", lane_port))
        writers.append((args.host, lane_port))
    certificate = tls.server_certificate(data_dir, args.host, args.tls_cert, args.tls_key)
    config_path = data_dir / "envoy" / "envoy.yaml"
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(
        edge.render(
            edge.EdgeConfig(
                backends=backends,
                write_backends=writers,
                host=args.host,
                rest_port=args.rest_port,
                grpc_port=args.grpc_port,
                cloud_port=args.cloud_port,
                crdb_port=args.crdb_port,
                tls_cert=certificate.cert,
                tls_key=certificate.key,
                admin_port=args.admin_port,
                access_log=args.access_log,
                stream_idle_timeout=args.envoy_idle_timeout,
            )
        )
    )
    envoy = Child("envoy", edge.envoy_command(config_path, args.envoy_concurrency), data_dir / "logs" / "envoy.log")
    children = [*servers, envoy]
    try:
        for child in servers:
            child.start()
        for i, child in enumerate(servers):
            wait_healthy(f"{args.host}:{args.server_port + i}", child)  # the write lane's port follows the replicas
        for host, port in remote:
            wait_healthy(f"{host}:{port}", None)
        envoy.start()
        wait_envoy_ready(f"{args.host}:{args.admin_port}", envoy)
        if args.sample:
            wrote = sample.write_if_empty(f"{args.host}:{args.grpc_port}", token, account.account_id)
            if wrote:
                log.info(
                    "wrote %d sample tasks (database %s, host %s, cloud account %s, crdb %s)",
                    wrote,
                    sample.DATABASE_ID,
                    sample.HOST_ID,
                    account.account_id,
                    sample.CRDB_GUID,
                )
        print(banner(args, url, data_dir, token, certificate, account, user), flush=True)
        supervise(children, lambda: stopping)
    except (RuntimeError, TimeoutError, OSError) as exc:
        log.error("%s", exc)
        return 1
    finally:
        # Envoy first, so no new traffic arrives while servers drain.
        envoy.stop(5.0)
        for child in servers:
            if child.proc is not None and child.proc.poll() is None:
                child.proc.terminate()
        for child in servers:
            child.stop(args.shutdown_grace)
        log.info("stopped")
    return 0


def supervise(children: list[Child], stopping: Callable[[], bool]) -> None:
    """Restart a child that dies, with a backoff, until told to stop."""
    while not stopping():
        for child in children:
            if child.proc is not None and child.proc.poll() is not None and not stopping():
                code = child.proc.returncode
                backoff = min(30.0, 0.5 * 2 ** min(child.restarts, 6))
                if time.monotonic() - child.started_at > 60:
                    child.restarts = 0  # it ran a good while: start over
                    backoff = 0.5
                log.warning("%s exited (%s); restarting in %.1f s, see %s", child.name, code, backoff, child.log_path)
                time.sleep(backoff)
                child.restarts += 1
                child.start()
        time.sleep(0.2)
