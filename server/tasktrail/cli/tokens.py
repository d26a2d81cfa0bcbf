"""`tasktrail tokens create|list|revoke`: access tokens.

These commands work on the store directly (like `tasktrail migrate`): they are
the operator's, run where the database is reachable.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from tasktrail.auth import tokens
from tasktrail.auth.principal import Role
from tasktrail.cli import options
from tasktrail.cli._args import StrictParser, add_output
from tasktrail.cli._output import table, utc_minute
from tasktrail.cli._store import write_once


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("tokens", help="access tokens: create, list, revoke")
    commands = p.add_subparsers(dest="tokens_command", required=True, parser_class=StrictParser)

    c = commands.add_parser("create", help="make a token; its secret is shown once")
    options.add(c, options.DATABASE)
    c.add_argument("--name", required=True, help="who or what the token is for")
    c.add_argument(
        "--role",
        choices=[r.value for r in Role],
        default="reader",
        help="reader: reads tasks; operator: reads and cancels them; writer: also creates and writes them "
        "(default: reader)",
    )
    c.add_argument(
        "--grant",
        action="append",
        required=True,
        help="a scope (database, host, account, crdb) or one entity of it (database:storefront); repeat for more",
    )
    add_output(c)
    c.set_defaults(run=run_create)

    ls = commands.add_parser("list", help="every token, without secrets")
    options.add(ls, options.DATABASE)
    add_output(ls)
    ls.set_defaults(run=run_list)

    r = commands.add_parser("revoke", help="stop a token at once")
    options.add(r, options.DATABASE)
    r.add_argument("token_id", help="the id shown by `tokens list` (tt_<id>_… )")
    r.set_defaults(run=run_revoke)


def run_create(args: argparse.Namespace) -> int:
    role = Role(args.role)
    try:
        token = write_once(options.database_url(args), lambda tx: tokens.create_token(tx, args.name, role, args.grant))
    except ValueError as exc:
        print(f"tasktrail: {exc}", file=sys.stderr)
        return 2
    if args.output == "json":
        print(json.dumps({"token": token, "name": args.name, "role": args.role, "grants": args.grant}))
    else:
        print(token)
        print(f"# {args.role} token {args.name!r} for {', '.join(args.grant)}: store it now, it is not shown again")
    return 0


def run_list(args: argparse.Namespace) -> int:
    found = write_once(options.database_url(args), tokens.list_tokens)
    if args.output == "json":
        print(json.dumps([{**dataclasses.asdict(t), "role": t.role.value, "grants": list(t.grants)} for t in found]))
        return 0
    rows = [
        [
            t.token_id,
            t.name,
            t.role.value,
            ",".join(t.grants),
            utc_minute(t.created_at),
            "revoked" if t.revoked_at else "active",
        ]
        for t in found
    ]
    print(table(["ID", "NAME", "ROLE", "GRANTS", "CREATED (UTC)", "STATE"], rows))
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    token_id = args.token_id
    parts = tokens.split_token(token_id)
    if parts is not None:
        token_id = parts[0]
    if not write_once(options.database_url(args), lambda tx: tokens.revoke_token(tx, token_id)):
        print(f"tasktrail: no active token {token_id}", file=sys.stderr)
        return 1
    print(f"revoked {token_id}")
    return 0
