"""`tasktrail migrate`, `tasktrail serve` and `tasktrail up`: running the service."""

from __future__ import annotations

import argparse
import sys

from tasktrail.api import server
from tasktrail.cli import options
from tasktrail.edge import supervisor
from tasktrail.store import SchemaOutdated, migrate


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("migrate", help="bring the database schema up to date (once, under a lock)")
    options.add(p, options.DATABASE)
    p.set_defaults(run=run_migrate)

    p = sub.add_parser("serve", help="run one server process (gRPC, behind Envoy)")
    options.add_server_options(p)
    options.add(p, options.LISTEN)
    p.set_defaults(run=run_serve)

    p = sub.add_parser("up", help="run everything: migrate, server process(es), Envoy; Ctrl-C stops it all")
    options.add_up_options(p)
    p.set_defaults(run=run_up)


def run_migrate(args: argparse.Namespace) -> int:
    print(f"schema at revision {migrate(options.database_url(args))}")
    return 0


def run_serve(args: argparse.Namespace) -> int:
    try:
        server.run(options.server_settings(args))
    except SchemaOutdated as exc:
        print(f"tasktrail: {exc}", file=sys.stderr)
        return 2
    return 0


def run_up(args: argparse.Namespace) -> int:
    return supervisor.up(options.up_settings(args))
