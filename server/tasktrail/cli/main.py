"""The `tasktrail` command: run the service (`up`, `serve`, `migrate`), manage
credentials (`tokens`, `accounts`, `keys`, `users`), and use any tasktrail
server from a terminal (`tasks`, `logs`, `demo`).

Each command group is a module of this package, imported only when its
command runs: a client command never pays for the server's imports (the store
alone would double its start time).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import logging
import os
import sys
from collections.abc import Sequence

from tasktrail.cli import log_format
from tasktrail.cli._args import StrictParser

# Command → (the module that defines it, what it does, for the top-level help).
COMMANDS: dict[str, tuple[str, str]] = {
    "migrate": ("service", "bring the database schema up to date (once, under a lock)"),
    "serve": ("service", "run one server process (gRPC, behind Envoy)"),
    "up": ("service", "run everything: migrate, server process(es), Envoy; Ctrl-C stops it all"),
    "tokens": ("tokens", "access tokens: create, list, revoke"),
    "accounts": ("accounts", "cloud accounts (the cloud API on port 8443)"),
    "keys": ("accounts", "user keys of cloud accounts (x-api-secret-key)"),
    "users": ("users", "basic-auth users of the enterprise API (port 9443)"),
    "certs": ("certs", "client certificates from the local CA (for up --client-certs)"),
    "tasks": ("tasks", "list, show, cancel and wait for tasks"),
    "logs": ("logs", "read task logs"),
    "demo": ("demo", "drive a realistic control plane against a tasktrail server until stopped"),
    "completion": ("completion", "print a shell completion script (bash, zsh, tcsh)"),
}
# Commands whose answer is their output, not the service's chatter.
QUIET = frozenset(COMMANDS) - {"serve", "up", "migrate"}


def _chosen(argv: Sequence[str]) -> str | None:
    """The command named on the line (the first word that is not a global option)."""
    return next((word for word in argv if not word.startswith("-")), None)


def build_parser(argv: Sequence[str] = (), every: bool = False) -> argparse.ArgumentParser:
    """The parser of the command on the line (the others only named), or of every command."""
    parser = argparse.ArgumentParser(prog="tasktrail", description="The task service of a database control plane.")
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("--version", action="version", version=f"tasktrail {importlib.metadata.version('tasktrail')}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=StrictParser)
    chosen = _chosen(argv)
    modules = {m for m, _ in COMMANDS.values()} if every else {COMMANDS[chosen][0]} if chosen in COMMANDS else set()
    for module in dict.fromkeys(m for m, _ in COMMANDS.values() if m in modules):
        importlib.import_module(f"tasktrail.cli.{module}").add_parsers(sub)
    for name, (where, text) in COMMANDS.items():
        if where not in modules:
            sub.add_parser(name, help=text)  # named for the help; defined when chosen
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(sys.argv[1:] if argv is None else argv)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `tasktrail logs get … | head`: the reader has gone; so do we
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _main(argv: Sequence[str]) -> int:
    args = build_parser(argv).parse_args(argv)
    log_format.configure(
        level=logging.DEBUG if args.verbose else logging.WARNING if args.command in QUIET else logging.INFO,
        format=getattr(args, "log_format", "text"),
    )
    run: int = args.run(args)
    return run
