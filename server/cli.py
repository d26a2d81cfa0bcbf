"""The `tasktrail` command."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from tasktrail.config import ServerSettings, default_database_url, env, env_int
from tasktrail.core import Limits
from tasktrail.store.engine import StoreOptions


def _add_database(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, default=Path(env("DATA_DIR", "data")), help="where the SQLite file lives")
    p.add_argument(
        "--database-url",
        default=env("DATABASE_URL", ""),
        help="sqlite:///path or postgresql+asyncpg://… (default: a SQLite file in --data-dir)",
    )
    p.add_argument(
        "--sqlite-synchronous",
        choices=["NORMAL", "FULL"],
        default=env("SQLITE_SYNCHRONOUS", "NORMAL"),
        help="NORMAL: a committed write survives a crash of the process; FULL: of the machine too (an fsync a commit)",
    )


def _database_url(args: argparse.Namespace) -> str:
    return str(args.database_url or default_database_url(args.data_dir))


def _add_limits(p: argparse.ArgumentParser) -> None:
    d = Limits()
    p.add_argument(
        "--max-page-size",
        type=int,
        default=env_int("MAX_PAGE_SIZE", d.max_page_size),
        help="most tasks in one list answer",
    )
    p.add_argument(
        "--default-page-size",
        type=int,
        default=env_int("DEFAULT_PAGE_SIZE", d.default_page_size),
        help="tasks in a native ListTasks page when page_size is 0",
    )
    p.add_argument(
        "--max-log-entries",
        type=int,
        default=env_int("MAX_LOG_ENTRIES", d.max_log_entries),
        help="most log entries in one log answer",
    )


def _limits(args: argparse.Namespace) -> Limits:
    return Limits(
        max_page_size=args.max_page_size,
        default_page_size=args.default_page_size,
        max_log_entries=args.max_log_entries,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tasktrail", description="The task service of a database control plane.")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("migrate", help="bring the database schema up to date (once, under a lock)")
    _add_database(p)

    p = sub.add_parser("serve", help="run one server process (gRPC, behind Envoy)")
    _add_database(p)
    _add_limits(p)
    p.add_argument("--host", default=env("HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=env_int("SERVER_PORT", 50061))
    p.add_argument("--shutdown-grace", type=float, default=float(env("SHUTDOWN_GRACE", "10")))

    from tasktrail import supervisor

    supervisor.add_parser(sub, _add_database, _add_limits)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from tasktrail.migrate import SchemaOutdated

    try:
        return _main(argv)
    except SchemaOutdated as exc:
        print(f"tasktrail: {exc}", file=sys.stderr)
        return 2


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.command == "migrate":
        from tasktrail import migrate

        revision = migrate.migrate(_database_url(args))
        print(f"schema at revision {revision}")
        return 0
    if args.command == "serve":
        from tasktrail import server

        server.run(
            ServerSettings(
                database_url=_database_url(args),
                store=StoreOptions(sqlite_synchronous=args.sqlite_synchronous),
                host=args.host,
                port=args.port,
                limits=_limits(args),
                shutdown_grace=args.shutdown_grace,
            )
        )
        return 0
    if args.command == "up":
        from tasktrail import supervisor

        return supervisor.up(args, _database_url(args), _limits(args))
    raise AssertionError(args.command)
