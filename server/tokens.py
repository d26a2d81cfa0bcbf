"""`tasktrail tokens create|list|revoke`, and the development token of `tasktrail up`.

These commands work on the store directly (like `tasktrail migrate`): they are
the operator's, run where the database is reachable.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path

from tasktrail import auth
from tasktrail.auth import Role
from tasktrail.model import Scope, utc_minute
from tasktrail.store import once, write_once

DEV_TOKEN_FILE = "dev-token"
DEV_TOKEN_NAME = "development (tasktrail up)"


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], add_database: Callable[[argparse.ArgumentParser], None]
) -> None:
    p = sub.add_parser("tokens", help="access tokens: create, list, revoke")
    commands = p.add_subparsers(dest="tokens_command", required=True)

    c = commands.add_parser("create", help="make a token; its secret is shown once")
    add_database(c)
    c.add_argument("--name", required=True, help="who or what the token is for")
    c.add_argument("--role", choices=[r.value for r in Role], default="reader")
    c.add_argument(
        "--grant",
        action="append",
        required=True,
        help="a scope (database, host, account, crdb) or one entity of it (database:storefront); repeat for more",
    )
    c.add_argument("--json", action="store_true")
    c.set_defaults(run=run_create)

    ls = commands.add_parser("list", help="every token, without secrets")
    add_database(ls)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(run=run_list)

    r = commands.add_parser("revoke", help="stop a token at once")
    add_database(r)
    r.add_argument("token_id", help="the id shown by `tokens list` (tt_<id>_… )")
    r.set_defaults(run=run_revoke)


def create(url: str, name: str, role: Role, grants: list[str]) -> str:
    return write_once(url, lambda conn: auth.create_token(conn, name, role, grants))


def run_create(args: argparse.Namespace, url: str) -> int:
    try:
        token = create(url, args.name, Role(args.role), args.grant)
    except ValueError as exc:
        print(f"tasktrail: {exc}")
        return 2
    if args.json:
        print(json.dumps({"token": token, "name": args.name, "role": args.role, "grants": args.grant}))
    else:
        print(token)
        print(f"# {args.role} token {args.name!r} for {', '.join(args.grant)}: store it now, it is not shown again")
    return 0


def run_list(args: argparse.Namespace, url: str) -> int:
    found = write_once(url, auth.list_tokens)
    if args.json:
        print(json.dumps([{**t.__dict__, "role": t.role.value, "grants": list(t.grants)} for t in found]))
        return 0
    from tasktrail.console import table

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


def run_revoke(args: argparse.Namespace, url: str) -> int:
    token_id = args.token_id
    parts = auth.split_token(token_id)
    if parts is not None:
        token_id = parts[0]
    if not write_once(url, lambda conn: auth.revoke_token(conn, token_id)):
        print(f"tasktrail: no active token {token_id}")
        return 1
    print(f"revoked {token_id}")
    return 0


def ensure_dev_token(url: str, data_dir: Path) -> str:
    """The development token: a writer of every scope, kept in <data-dir>/dev-token
    so that `tasktrail up` can show it every time; made again when it no longer works."""
    path = data_dir / DEV_TOKEN_FILE

    if path.exists():
        token = path.read_text().strip()
        if token and once(url, lambda store: auth.authenticate(store, token)) is not None:
            return token
    token = create(url, DEV_TOKEN_NAME, Role.WRITER, [s.value for s in Scope])
    path.write_text(token + "\n")
    os.chmod(path, 0o600)
    return token
