"""`tasktrail users create|list|delete`: basic-auth users of the enterprise
API (port 9443).

    tasktrail users create --name ops@example.com          # a random password, shown once
    tasktrail users create --name ops@example.com --password-stdin
    tasktrail users list
    tasktrail users delete ops@example.com
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys

from tasktrail.auth import users
from tasktrail.cli import options
from tasktrail.cli._args import StrictParser, add_output
from tasktrail.cli._output import table, utc_minute
from tasktrail.cli._store import write_once


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    commands = sub.add_parser("users", help="basic-auth users of the enterprise API (port 9443)").add_subparsers(
        dest="users_command", required=True, parser_class=StrictParser
    )
    p = commands.add_parser("create", help="a new user; without a password given, a random one is shown once")
    options.add(p, options.DATABASE)
    p.add_argument("--name", required=True, help="the user name, e.g. an email address")
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    add_output(p)
    p.set_defaults(run=run_create)
    p = commands.add_parser("list", help="user names")
    options.add(p, options.DATABASE)
    add_output(p)
    p.set_defaults(run=run_list)
    p = commands.add_parser("delete", help="remove a user: refused from the next request on")
    options.add(p, options.DATABASE)
    p.add_argument("name")
    p.set_defaults(run=run_delete)


def run_create(args: argparse.Namespace) -> int:
    generated = not args.password_stdin
    password = secrets.token_urlsafe(18) if generated else sys.stdin.readline().rstrip("\r\n")
    try:
        write_once(options.database_url(args), lambda tx: users.create_user(tx, args.name, password))
    except ValueError as exc:
        print(f"tasktrail: {exc}", file=sys.stderr)
        return 1
    if args.output == "json":
        print(json.dumps({"username": args.name, **({"password": password} if generated else {})}))
    else:
        print(f"user {args.name}")
        if generated:
            print(f"password: {password}")
            print("# store the password now: it is not shown again")
    return 0


def run_list(args: argparse.Namespace) -> int:
    found = write_once(options.database_url(args), users.list_users)
    if args.output == "json":
        print(json.dumps([{"username": u.username, "created_at": u.created_at} for u in found]))
        return 0
    rows = [[u.username, utc_minute(u.created_at)] for u in found]
    print(table(["USER", "CREATED (UTC)"], rows))
    return 0


def run_delete(args: argparse.Namespace) -> int:
    if not write_once(options.database_url(args), lambda tx: users.delete_user(tx, args.name)):
        print(f"tasktrail: no user {args.name}", file=sys.stderr)
        return 1
    print(f"deleted {args.name}")
    return 0
