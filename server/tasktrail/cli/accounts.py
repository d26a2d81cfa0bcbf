"""`tasktrail accounts create` and `tasktrail keys create|list|revoke`: cloud
accounts and their user keys (the cloud API on port 8443).

    tasktrail accounts create --name acme              # the account id and key, shown once
    tasktrail keys create --account 1000001 --name ci  # a user key, shown once
    tasktrail keys list [--account 1000001]
    tasktrail keys revoke KEY_ID                       # stops at once, in every process
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from tasktrail.auth import accounts
from tasktrail.cli import options
from tasktrail.cli._args import StrictParser, add_output
from tasktrail.cli._output import table, utc_minute
from tasktrail.cli._store import write_once


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    commands = sub.add_parser("accounts", help="cloud accounts (the cloud API on port 8443)").add_subparsers(
        dest="accounts_command", required=True, parser_class=StrictParser
    )
    p = commands.add_parser("create", help="a new account; its id and account key (x-api-key) are shown once")
    options.add(p, options.DATABASE)
    p.add_argument("--name", required=True)
    p.add_argument("--id", dest="account_id", default=None, help="the account id (default: the next free number)")
    add_output(p)
    p.set_defaults(run=run_create_account)

    commands = sub.add_parser("keys", help="user keys of cloud accounts (x-api-secret-key)").add_subparsers(
        dest="keys_command", required=True, parser_class=StrictParser
    )
    p = commands.add_parser("create", help="a new user key; its secret is shown once")
    options.add(p, options.DATABASE)
    p.add_argument("--account", required=True)
    p.add_argument("--name", required=True)
    add_output(p)
    p.set_defaults(run=run_create_key)
    p = commands.add_parser("list", help="user keys, without secrets")
    options.add(p, options.DATABASE)
    p.add_argument("--account", default=None)
    add_output(p)
    p.set_defaults(run=run_list_keys)
    p = commands.add_parser("revoke", help="stop a user key at once")
    options.add(p, options.DATABASE)
    p.add_argument("key_id")
    p.set_defaults(run=run_revoke_key)


def run_create_account(args: argparse.Namespace) -> int:
    account_id, key = write_once(
        options.database_url(args), lambda tx: accounts.create_account(tx, args.name, args.account_id)
    )
    if args.output == "json":
        print(json.dumps({"account_id": account_id, "api_key": key, "name": args.name}))
    else:
        print(f"account {account_id} ({args.name})")
        print(f"x-api-key: {key}")
        print("# store the key now: it is not shown again; make user keys with `tasktrail keys create`")
    return 0


def run_create_key(args: argparse.Namespace) -> int:
    try:
        key_id, secret = write_once(
            options.database_url(args), lambda tx: accounts.create_key(tx, args.account, args.name)
        )
    except ValueError as exc:
        print(f"tasktrail: {exc}", file=sys.stderr)
        return 1
    if args.output == "json":
        print(json.dumps({"key_id": key_id, "account_id": args.account, "secret_key": secret, "name": args.name}))
    else:
        print(f"key {key_id} of account {args.account} ({args.name})")
        print(f"x-api-secret-key: {secret}")
        print("# store the secret now: it is not shown again")
    return 0


def run_list_keys(args: argparse.Namespace) -> int:
    found = write_once(options.database_url(args), lambda tx: accounts.list_keys(tx, args.account))
    if args.output == "json":
        print(json.dumps([dataclasses.asdict(k) for k in found]))
        return 0
    rows = [
        [
            k.key_id,
            k.account_id,
            k.name,
            utc_minute(k.created_at),
            "revoked" if k.revoked_at else "active",
        ]
        for k in found
    ]
    print(table(["KEY ID", "ACCOUNT", "NAME", "CREATED (UTC)", "STATE"], rows))
    return 0


def run_revoke_key(args: argparse.Namespace) -> int:
    if not write_once(options.database_url(args), lambda tx: accounts.revoke_key(tx, args.key_id)):
        print(f"tasktrail: no active key {args.key_id}", file=sys.stderr)
        return 1
    print(f"revoked {args.key_id}")
    return 0
