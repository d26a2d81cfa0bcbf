"""The service's settings, each stated once: its flag, its TASKTRAIL_*
environment variable, its type and its default (taken from the settings
object that uses it). Durations are settings too, so tests shrink them
instead of waiting.

An environment variable is read with the flag's own type; a boolean is
strict: yes/true/on/1 and no/false/off/0 (any case), anything else is an error,
never a silent true.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasktrail.api.dialects.cloud import CloudSettings
from tasktrail.api.server import REQUEST_LOGS, SERVER_PORT, SHUTDOWN_GRACE, ServerSettings
from tasktrail.auth.throttle import ThrottleSettings
from tasktrail.cli.log_format import LOG_FORMATS
from tasktrail.core.changes import CHANGE_POLL_INTERVAL
from tasktrail.core.follow import FollowSettings
from tasktrail.core.housekeeping import Housekeeping
from tasktrail.core.model import Retention, Scope
from tasktrail.core.tasks import SECOND, Timing
from tasktrail.core.validation import Limits
from tasktrail.edge.supervisor import UpSettings
from tasktrail.store import StoreOptions
from tasktrail.store.base import DURABILITY

TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off", ""})
DATA_DIR = Path("data")


def boolean(text: str) -> bool:
    word = text.strip().lower()
    if word in TRUE:
        return True
    if word in FALSE:
        return False
    raise ValueError(f"{text!r} is not a boolean: use yes/no, true/false, on/off or 1/0")


@dataclass(frozen=True)
class Option:
    """One setting: `--flag`, TASKTRAIL_<env>, its type, its default, what it does."""

    flag: str
    env: str
    kind: Callable[[str], Any]
    default: Any
    help: str
    choices: Sequence[str] | None = None

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")

    def initial(self) -> Any:
        """The default, or the environment's value read with the flag's type."""
        raw = os.environ.get(f"TASKTRAIL_{self.env}")
        if raw is None:
            return self.default
        try:
            value = self.kind(raw)
        except (TypeError, ValueError) as exc:
            raise SystemExit(f"tasktrail: TASKTRAIL_{self.env}={raw!r}: {exc}") from None
        if self.choices is not None and value not in self.choices:
            raise SystemExit(f"tasktrail: TASKTRAIL_{self.env}={raw!r}: one of {', '.join(self.choices)}")
        return value

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        where = f"env TASKTRAIL_{self.env}; default: {self.default}"
        if self.kind is boolean:
            parser.add_argument(
                self.flag, dest=self.dest, action=argparse.BooleanOptionalAction, default=self.initial(),
                help=f"{self.help} ({where})",
            )  # fmt: skip
        else:
            parser.add_argument(
                self.flag, dest=self.dest, type=self.kind, default=self.initial(), choices=self.choices,
                help=f"{self.help} ({where})",
            )  # fmt: skip


def add(parser: argparse.ArgumentParser, options: Sequence[Option]) -> None:
    for option in options:
        option.add_to(parser)


_limits, _timing, _chores, _follow, _cloud = Limits(), Timing(), Housekeeping(), FollowSettings(), CloudSettings()
_up = UpSettings(data_dir=DATA_DIR, database_url="")
_server, _throttle = ServerSettings(database_url=""), ThrottleSettings()

# Where the store is: every command that opens it takes these.
DATABASE: tuple[Option, ...] = (
    Option("--data-dir", "DATA_DIR", Path, DATA_DIR, "where the SQLite file, logs and keys live"),
    Option(
        "--database-url", "DATABASE_URL", str, "",
        "sqlite:///path or postgresql+asyncpg://… (default: a SQLite file in --data-dir)",
    ),
)  # fmt: skip

# What every server process takes; `up` hands them on to the processes it starts.
SERVER: tuple[Option, ...] = (
    Option(
        "--durability", "DURABILITY", str.lower, StoreOptions().durability,
        "full: an acknowledged write survives a power loss (an fsync a commit); normal: a crash of any process",
        choices=DURABILITY,
    ),
    Option(
        "--controlplane-auth", "CONTROLPLANE_AUTH", boolean, False,
        "require a reader token (Authorization: Bearer) on the control-plane REST port too",
    ),
    Option("--max-page-size", "MAX_PAGE_SIZE", int, _limits.max_page_size, "most tasks in one list answer"),
    Option(
        "--default-page-size", "DEFAULT_PAGE_SIZE", int, _limits.default_page_size,
        "tasks in a native ListTasks page when page_size is 0",
    ),
    Option("--max-log-entries", "MAX_LOG_ENTRIES", int, _limits.max_log_entries, "most log entries in one answer"),
    Option("--lease-min", "LEASE_MIN", float, _timing.lease_min / SECOND, "shortest lease a worker gets (s)"),
    Option("--lease-max", "LEASE_MAX", float, _timing.lease_max / SECOND, "longest lease a worker gets (s)"),
    Option(
        "--lease-grace", "LEASE_GRACE", float, _timing.lease_grace / SECOND,
        "how long past its lease a silent worker's task is ended (s)",
    ),
    Option("--max-wait", "MAX_WAIT", float, _timing.max_wait / SECOND, "longest WaitTask (s)"),
    Option(
        "--lease-check-interval", "LEASE_CHECK_INTERVAL", float, _chores.lease_check_interval,
        "how often lapsed leases are looked for (s)",
    ),
    Option(
        "--sweep-interval", "SWEEP_INTERVAL", float, _chores.sweep_interval, "how often expired tasks are deleted (s)"
    ),
    Option(
        "--change-poll-interval", "CHANGE_POLL_INTERVAL", float, CHANGE_POLL_INTERVAL,
        "how often a process looks for writes of other processes (s)",
    ),
    Option(
        "--follow-heartbeat", "FOLLOW_HEARTBEAT", float, _follow.heartbeat,
        "a heartbeat on an idle log follow after this long (s)",
    ),
    Option(
        "--cloud-list-window", "CLOUD_LIST_WINDOW", float, _cloud.list_window,
        "the cloud API lists the tasks submitted in this window (s)",
    ),
    Option(
        "--cloud-rate-limit", "CLOUD_RATE_LIMIT", int, _cloud.rate_limit, "cloud API requests a minute per account key"
    ),
    Option("--shutdown-grace", "SHUTDOWN_GRACE", float, SHUTDOWN_GRACE, "seconds in-flight calls get on shutdown"),
    Option(
        "--auth-failures-per-address", "AUTH_FAILURES_PER_ADDRESS", int, _throttle.per_address,
        "failed credential checks a client address (not loopback) may make in a window before it is refused",
    ),
    Option(
        "--auth-failures-per-user", "AUTH_FAILURES_PER_USER", int, _throttle.per_user,
        "failed passwords for one user name from one address in a window before they are refused",
    ),
    Option("--auth-failure-window", "AUTH_FAILURE_WINDOW", float, _throttle.window, "the window of those counts (s)"),
    Option(
        "--recheck-interval", "RECHECK_INTERVAL", float, _server.recheck_interval,
        "how often an open stream checks its caller's credential again (s): a revocation ends it within this",
    ),
    Option(
        "--metrics", "METRICS", boolean, _server.metrics,
        "count requests, tasks, tails and store calls for Prometheus (docs/operating.md)",
    ),
    Option(
        "--log-format", "LOG_FORMAT", str.lower, "auto",
        "json: one JSON object a line; text: for people; auto: text on a terminal, json elsewhere",
        choices=LOG_FORMATS,
    ),
    Option(
        "--log-requests", "LOG_REQUESTS", str.lower, _server.log_requests,
        "which calls a server logs: every write and every failure, all of them, or none (beside errors)",
        choices=REQUEST_LOGS,
    ),
)  # fmt: skip

# Where one server process listens (`serve`).
LISTEN: tuple[Option, ...] = (
    Option("--host", "HOST", str, _up.host, "the address it listens on"),
    Option("--port", "SERVER_PORT", int, SERVER_PORT, "the port it listens on"),
    Option(
        "--metrics-port", "METRICS_PORT", int, 0,
        "serve this process's Prometheus metrics at /metrics on this port, on --host (0: none; "
        "under `up`, its --metrics-port serves every process's)",
    ),
    Option(
        "--metrics-port-file", "METRICS_PORT_FILE", str, "",
        "serve them on a free port (or --metrics-port), and write the port to this file (`up` does so)",
    ),
)  # fmt: skip

# What `up` runs, and where.
UP: tuple[Option, ...] = (
    Option("--host", "HOST", str, _up.host, "the address every port binds to"),
    Option("--rest-port", "REST_PORT", int, _up.rest_port, "control-plane REST API"),
    Option("--grpc-port", "GRPC_PORT", int, _up.grpc_port, "native gRPC (every service)"),
    Option("--cloud-port", "CLOUD_PORT", int, _up.cloud_port, "cloud REST API (HTTPS)"),
    Option("--crdb-port", "CRDB_PORT", int, _up.crdb_port, "enterprise REST API (HTTPS, basic auth)"),
    Option("--admin-port", "ADMIN_PORT", int, _up.admin_port, "Envoy's admin interface"),
    Option("--server-port", "SERVER_PORT", int, _up.server_port, "first server process port"),
    Option("--replicas", "REPLICAS", int, _up.replicas, "server processes"),
    Option(
        "--write-lane", "WRITE_LANE", boolean, _up.write_lane,
        "one more server process for the writer API alone, so that appends stay fast under a saturated fan-out",
    ),
    Option("--envoy-concurrency", "ENVOY_CONCURRENCY", int, _up.envoy_concurrency, "Envoy's worker threads"),
    Option(
        "--envoy-idle-timeout", "ENVOY_IDLE_TIMEOUT", float, _up.envoy_idle_timeout,
        "Envoy closes a stream idle this long (s); log follows send heartbeats inside it",
    ),
    Option(
        "--dev", "DEV", boolean, _up.dev,
        "development mode: make (and print) a writer token, a cloud account and a user, and write sample tasks; "
        "--no-dev makes no credential at all",
    ),
    Option("--sample", "SAMPLE", boolean, _up.sample, "write sample tasks into a new, empty store (with --dev)"),
    Option("--admin-host", "ADMIN_HOST", str, _up.admin_host, "where Envoy's admin (no authentication) binds"),
    Option(
        "--metrics-port", "METRICS_PORT", int, _up.metrics_port,
        "Prometheus metrics of every server process (a `process` label each) at /metrics (on --admin-host; 0: none)",
    ),
    Option("--rest-tls", "REST_TLS", boolean, _up.rest_tls, "HTTPS on the control-plane port too"),
    Option("--grpc-tls", "GRPC_TLS", boolean, _up.grpc_tls, "TLS on the gRPC port too (the same certificate)"),
    Option(
        "--client-certs", "CLIENT_CERTS", boolean, _up.client_certs,
        "HTTPS on the control-plane port, with client certificates the local CA signed (`tasktrail certs client`)",
    ),
    Option(
        "--access-log", "ACCESS_LOG", boolean, _up.access_log,
        "Envoy's access log, one JSON object a request, in DATA_DIR/logs/access.log",
    ),
)  # fmt: skip


def database_url(args: argparse.Namespace) -> str:
    """The store's URL: --database-url, or a SQLite file in --data-dir."""
    return str(args.database_url or f"sqlite:///{(args.data_dir / 'tasktrail.db').resolve()}")


def _retention(text: str) -> tuple[str, int | None]:
    scope, sep, value = text.partition("=")
    if not sep or scope not in {s.value for s in Scope}:
        raise argparse.ArgumentTypeError(f"expected SCOPE=SECONDS or SCOPE=none, got {text!r}")
    if value == "none":
        return scope, None
    try:
        return scope, int(float(value) * SECOND)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SCOPE=SECONDS or SCOPE=none, got {text!r}") from None


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def add_server_options(parser: argparse.ArgumentParser) -> None:
    """The options of a server process (`serve`, and `up`, which passes them on)."""
    add(parser, (*DATABASE, *SERVER))
    parser.add_argument(
        "--retention",
        type=_retention,
        action="append",
        default=[],
        metavar="SCOPE=SECONDS",
        help="how long tasks of a scope stay readable after they end (default: database/host none, "
        "account 864000, crdb 500); 'none' keeps them",
    )


def add_up_options(parser: argparse.ArgumentParser) -> None:
    add_server_options(parser)
    add(parser, UP)
    parser.add_argument(
        "--tls-cert", type=Path, default=None, help="the HTTPS ports' certificate (default: a local CA's)"
    )
    parser.add_argument("--tls-key", type=Path, default=None, help="its private key")
    parser.add_argument(
        "--client-ca",
        type=Path,
        default=None,
        help="require client certificates signed by this CA on the control-plane port (HTTPS there)",
    )
    parser.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a host name port 3000 answers for, beside localhost and IP addresses; repeat for each",
    )
    parser.add_argument(
        "--backend",
        action="append",
        type=_host_port,
        default=[],
        metavar="HOST:PORT",
        help="a server (`tasktrail serve`) on another host; repeat for each. Then this machine runs Envoy "
        "alone, in front of them, and no server of its own",
    )


def server_argv(args: argparse.Namespace) -> list[str]:
    """The server options of `args`, as `tasktrail serve` flags. Not the database
    URL: it may hold a password, and argv is public (`ps`); `up` passes it in
    the environment."""
    argv: list[str] = []
    for option in SERVER:
        value = getattr(args, option.dest)
        if option.kind is boolean:
            argv.append(option.flag if value else f"--no-{option.flag.removeprefix('--')}")
        else:
            argv += [option.flag, str(value)]
    for scope, value in args.retention:
        argv += ["--retention", f"{scope}={'none' if value is None else value / SECOND}"]
    return argv


def server_settings(args: argparse.Namespace) -> ServerSettings:
    defaults = Retention()
    retention = Retention(**{s.value: defaults.for_scope(s) for s in Scope} | dict(args.retention))
    return ServerSettings(
        database_url=database_url(args),
        store=StoreOptions(durability=args.durability),
        host=args.host,
        port=args.port,
        limits=Limits(
            max_page_size=args.max_page_size,
            default_page_size=args.default_page_size,
            max_log_entries=args.max_log_entries,
        ),
        timing=Timing(
            lease_min=int(args.lease_min * SECOND),
            lease_max=int(args.lease_max * SECOND),
            lease_grace=int(args.lease_grace * SECOND),
            max_wait=int(args.max_wait * SECOND),
        ),
        retention=retention,
        housekeeping=Housekeeping(lease_check_interval=args.lease_check_interval, sweep_interval=args.sweep_interval),
        follow=FollowSettings(heartbeat=args.follow_heartbeat),
        cloud=CloudSettings(list_window=args.cloud_list_window, rate_limit=args.cloud_rate_limit),
        controlplane_auth=args.controlplane_auth,
        change_poll_interval=args.change_poll_interval,
        shutdown_grace=args.shutdown_grace,
        throttle=ThrottleSettings(
            per_address=args.auth_failures_per_address,
            per_user=args.auth_failures_per_user,
            window=args.auth_failure_window,
        ),
        recheck_interval=args.recheck_interval,
        metrics=args.metrics,
        metrics_port=getattr(args, "metrics_port", 0),
        metrics_port_file=Path(args.metrics_port_file) if getattr(args, "metrics_port_file", "") else None,
        log_requests=args.log_requests,
    )


def up_settings(args: argparse.Namespace) -> UpSettings:
    return UpSettings(
        data_dir=args.data_dir,
        database_url=database_url(args),
        server_argv=server_argv(args),
        host=args.host,
        rest_port=args.rest_port,
        grpc_port=args.grpc_port,
        cloud_port=args.cloud_port,
        crdb_port=args.crdb_port,
        admin_port=args.admin_port,
        server_port=args.server_port,
        replicas=args.replicas,
        backends=tuple(args.backend),
        write_lane=args.write_lane,
        envoy_concurrency=args.envoy_concurrency,
        envoy_idle_timeout=args.envoy_idle_timeout,
        access_log=args.access_log,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        rest_tls=args.rest_tls,
        grpc_tls=args.grpc_tls,
        client_ca=args.client_ca,
        client_certs=args.client_certs,
        admin_host=args.admin_host,
        metrics_port=args.metrics_port,
        allowed_hosts=tuple(args.allowed_host),
        dev=args.dev,
        sample=args.sample,
        controlplane_auth=args.controlplane_auth,
        shutdown_grace=args.shutdown_grace,
    )
