"""The `tasktrail` command: run the service (`up`, `serve`, `migrate`), manage
tokens, and use any tasktrail server from a terminal (`tasks`, `logs`, `demo`)."""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from tasktrail.config import ServerSettings, default_database_url, env, env_int
from tasktrail.core import SECOND, Limits, Timing
from tasktrail.dialects.cloud import CloudSettings
from tasktrail.events import CHANGE_POLL_INTERVAL
from tasktrail.follow import FollowSettings
from tasktrail.housekeeping import Housekeeping
from tasktrail.model import Retention, Scope
from tasktrail.store.engine import StoreOptions

# Options every server process takes; `up` hands them on to the processes it starts.
# (flag, attribute, type, environment variable, default, help)
SERVER_OPTIONS: list[tuple[str, str, type, str, object, str]] = [
    ("--max-page-size", "max_page_size", int, "MAX_PAGE_SIZE", Limits().max_page_size, "most tasks in one list answer"),
    (
        "--default-page-size",
        "default_page_size",
        int,
        "DEFAULT_PAGE_SIZE",
        Limits().default_page_size,
        "tasks in a native ListTasks page when page_size is 0",
    ),
    (
        "--max-log-entries",
        "max_log_entries",
        int,
        "MAX_LOG_ENTRIES",
        Limits().max_log_entries,
        "most log entries in one answer",
    ),
    ("--lease-min", "lease_min", float, "LEASE_MIN", Timing().lease_min / SECOND, "shortest lease a worker gets (s)"),
    ("--lease-max", "lease_max", float, "LEASE_MAX", Timing().lease_max / SECOND, "longest lease a worker gets (s)"),
    ("--max-wait", "max_wait", float, "MAX_WAIT", Timing().max_wait / SECOND, "longest WaitTask (s)"),
    (
        "--lease-check-interval",
        "lease_check_interval",
        float,
        "LEASE_CHECK_INTERVAL",
        Housekeeping().lease_check_interval,
        "how often lapsed leases are looked for (s)",
    ),
    (
        "--sweep-interval",
        "sweep_interval",
        float,
        "SWEEP_INTERVAL",
        Housekeeping().sweep_interval,
        "how often expired tasks are deleted (s)",
    ),
    (
        "--change-poll-interval",
        "change_poll_interval",
        float,
        "CHANGE_POLL_INTERVAL",
        CHANGE_POLL_INTERVAL,
        "how often a process looks for writes of other processes (s)",
    ),
    (
        "--follow-heartbeat",
        "follow_heartbeat",
        float,
        "FOLLOW_HEARTBEAT",
        FollowSettings().heartbeat,
        "a heartbeat on an idle log follow after this long (s)",
    ),
    (
        "--cloud-list-window",
        "cloud_list_window",
        float,
        "CLOUD_LIST_WINDOW",
        CloudSettings().list_window,
        "the cloud API lists the tasks submitted in this window (s)",
    ),
    (
        "--cloud-rate-limit",
        "cloud_rate_limit",
        int,
        "CLOUD_RATE_LIMIT",
        CloudSettings().rate_limit,
        "cloud API requests a minute per account key",
    ),
    ("--shutdown-grace", "shutdown_grace", float, "SHUTDOWN_GRACE", 10.0, "seconds in-flight calls get on shutdown"),
]


def _add_database(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, default=Path(env("DATA_DIR", "data")), help="where the SQLite file lives")
    p.add_argument(
        "--database-url",
        default=env("DATABASE_URL", ""),
        help="sqlite:///path or postgresql+asyncpg://… (default: a SQLite file in --data-dir)",
    )


def _database_url(args: argparse.Namespace) -> str:
    return str(args.database_url or default_database_url(args.data_dir))


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


def add_server_options(p: argparse.ArgumentParser) -> None:
    _add_database(p)
    p.add_argument(
        "--sqlite-synchronous",
        choices=["NORMAL", "FULL"],
        default=env("SQLITE_SYNCHRONOUS", "NORMAL"),
        help="NORMAL: a committed write survives a crash of the process; FULL: of the machine too (an fsync a commit)",
    )
    p.add_argument(
        "--controlplane-auth",
        action="store_true",
        default=env("CONTROLPLANE_AUTH", "") not in ("", "0", "false"),
        help="require a reader token (Authorization: Bearer) on the control-plane REST port too",
    )
    p.add_argument(
        "--retention",
        type=_retention,
        action="append",
        default=[],
        metavar="SCOPE=SECONDS",
        help="how long tasks of a scope stay readable after they end (default: database/host none, "
        "account 864000, crdb 500); 'none' keeps them",
    )
    for flag, attr, kind, var, default, text in SERVER_OPTIONS:
        value = env(var, "")
        p.add_argument(flag, dest=attr, type=kind, default=kind(value) if value else default, help=text)


def server_argv(args: argparse.Namespace) -> list[str]:
    """The server options of `args`, as `tasktrail serve` flags."""
    argv = ["--database-url", _database_url(args), "--sqlite-synchronous", args.sqlite_synchronous]
    if args.controlplane_auth:
        argv.append("--controlplane-auth")
    for scope, value in args.retention:
        argv += ["--retention", f"{scope}={'none' if value is None else value / SECOND}"]
    for flag, attr, *_ in SERVER_OPTIONS:
        argv += [flag, str(getattr(args, attr))]
    return argv


def server_settings(args: argparse.Namespace) -> ServerSettings:
    defaults = Retention()
    retention = Retention(**{s.value: defaults.for_scope(s) for s in Scope} | dict(args.retention))
    return ServerSettings(
        database_url=_database_url(args),
        store=StoreOptions(sqlite_synchronous=args.sqlite_synchronous),
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
            max_wait=int(args.max_wait * SECOND),
        ),
        retention=retention,
        housekeeping=Housekeeping(lease_check_interval=args.lease_check_interval, sweep_interval=args.sweep_interval),
        follow=FollowSettings(heartbeat=args.follow_heartbeat),
        cloud=CloudSettings(list_window=args.cloud_list_window, rate_limit=args.cloud_rate_limit),
        controlplane_auth=args.controlplane_auth,
        change_poll_interval=args.change_poll_interval,
        shutdown_grace=args.shutdown_grace,
    )


def build_parser() -> argparse.ArgumentParser:
    from tasktrail import accounts, console, demo, supervisor, tokens, users

    parser = argparse.ArgumentParser(prog="tasktrail", description="The task service of a database control plane.")
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("--version", action="version", version=f"tasktrail {importlib.metadata.version('tasktrail')}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("migrate", help="bring the database schema up to date (once, under a lock)")
    _add_database(p)

    p = sub.add_parser("serve", help="run one server process (gRPC, behind Envoy)")
    add_server_options(p)
    p.add_argument("--host", default=env("HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=env_int("SERVER_PORT", 50061))

    supervisor.add_parser(sub, add_server_options)
    tokens.add_parser(sub, _add_database)
    accounts.add_parsers(sub, _add_database)
    users.add_parser(sub, _add_database)
    console.add_parsers(sub)
    demo.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from tasktrail.migrate import SchemaOutdated

    try:
        return _main(argv)
    except SchemaOutdated as exc:
        print(f"tasktrail: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `tasktrail logs get … | head`: the reader has gone; so do we
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    # The one-shot commands (tokens, keys, tasks…) print their answer, not the migration's chatter.
    quiet = args.command not in ("serve", "up", "migrate")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.command == "migrate":
        from tasktrail import migrate

        print(f"schema at revision {migrate.migrate(_database_url(args))}")
        return 0
    if args.command == "serve":
        from tasktrail import server

        server.run(server_settings(args))
        return 0
    if args.command == "up":
        from tasktrail import supervisor

        return supervisor.up(args, _database_url(args), server_argv(args))
    run: int = args.run(args, _database_url(args) if hasattr(args, "database_url") else "")
    return run
