"""Cloud accounts and their API keys, as the Redis Cloud API has them.

An account owns its tasks (scope `account`, entity the account id). Every
request carries the account key (`x-api-key`, one per account) and a user key
of that account (`x-api-secret-key`, one per user, revocable). Both are random
256-bit strings; the store keeps their SHA-256 only and finds a key by it.

    tasktrail accounts create --name acme            # the account id and key, shown once
    tasktrail keys create --account 1000001 --name ci  # a user key, shown once
    tasktrail keys list [--account 1000001]
    tasktrail keys revoke KEY_ID                      # stops at once, in every process
"""

from __future__ import annotations

import argparse
import dataclasses
import hmac
import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Connection, bindparam, func, insert, select, update

from tasktrail.auth import Principal, Role, sha256_hex
from tasktrail.model import Access, Scope, now_us, utc_minute
from tasktrail.store import Store, once, write_once
from tasktrail.store.engine import Reader
from tasktrail.store.schema import accounts, api_keys

FIRST_ACCOUNT_ID = 1_000_001
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class KeyInfo:
    key_id: str
    account_id: str
    name: str
    created_at: int
    revoked_at: int | None


def create_account(conn: Connection, name: str, account_id: str | None = None) -> tuple[str, str]:
    """A new account; returns (account id, account key)."""
    if account_id is None:
        highest = conn.execute(select(func.count()).select_from(accounts)).scalar_one()
        account_id = str(FIRST_ACCOUNT_ID + int(highest))
    key = secrets.token_urlsafe(32)
    conn.execute(
        insert(accounts),
        [{"account_id": account_id, "name": name, "api_key_hash": sha256_hex(key), "created_at": now_us()}],
    )
    return account_id, key


def create_key(conn: Connection, account_id: str, name: str) -> tuple[str, str]:
    """A new user key of an account; returns (key id, secret)."""
    if conn.execute(select(accounts.c.account_id).where(accounts.c.account_id == account_id)).first() is None:
        raise ValueError(f"no account {account_id}")
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    conn.execute(
        insert(api_keys),
        [
            {
                "key_id": key_id,
                "account_id": account_id,
                "name": name,
                "secret_hash": sha256_hex(secret),
                "created_at": now_us(),
                "revoked_at": None,
            }
        ],
    )
    return key_id, secret


def revoke_key(conn: Connection, key_id: str) -> bool:
    result = conn.execute(
        update(api_keys).where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None)).values(revoked_at=now_us())
    )
    return bool(result.rowcount)


def list_keys(conn: Connection, account_id: str | None) -> list[KeyInfo]:
    query = select(
        api_keys.c.key_id, api_keys.c.account_id, api_keys.c.name, api_keys.c.created_at, api_keys.c.revoked_at
    ).order_by(api_keys.c.created_at)
    if account_id is not None:
        query = query.where(api_keys.c.account_id == account_id)
    return [KeyInfo(*row) for row in conn.execute(query)]


_LOOKUP = (
    select(accounts.c.account_id, accounts.c.api_key_hash, api_keys.c.key_id, api_keys.c.name)
    .select_from(api_keys.join(accounts, accounts.c.account_id == api_keys.c.account_id))
    .where(api_keys.c.secret_hash == bindparam("secret_hash"), api_keys.c.revoked_at.is_(None))
)


def _lookup(reader: Reader, secret_hash: str) -> tuple[str, str, str, str] | None:
    rows = reader.rows(_LOOKUP, {"secret_hash": secret_hash})
    return (rows[0][0], rows[0][1], rows[0][2], rows[0][3]) if rows else None


async def authenticate(store: Store, api_key: str, secret_key: str) -> Principal | None:
    """The account behind a pair of keys: the user key must be live and belong to
    the account the account key names."""
    row = await store.read(lambda r: _lookup(r, sha256_hex(secret_key)))
    if row is None or not hmac.compare_digest(row[1], sha256_hex(api_key)):
        return None
    account_id, _, key_id, name = row
    return Principal(key_id, name, Role.READER, Access.of((Scope.ACCOUNT, account_id)), account_id=account_id)


# -- the development account ------------------------------------------------------------

DEV_ACCOUNT_FILE = "dev-account.env"


@dataclass(frozen=True, slots=True)
class DevAccount:
    account_id: str
    api_key: str
    secret_key: str
    path: Path


def ensure_dev_account(url: str, data_dir: Path) -> DevAccount:
    """A development account and a user key, so that the cloud API's curl commands
    run at once; kept in <data-dir>/dev-account.env (shell syntax: `. data/dev-account.env`),
    made again when its keys no longer work."""
    path = data_dir / DEV_ACCOUNT_FILE

    if path.exists():
        saved = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
        found = DevAccount(saved.get("ACCOUNT_ID", ""), saved.get("ACCOUNT_KEY", ""), saved.get("SECRET_KEY", ""), path)
        works = found.api_key and found.secret_key
        if works and once(url, lambda store: authenticate(store, found.api_key, found.secret_key)) is not None:
            return found

    def make(conn: Connection) -> tuple[str, str, str]:
        account_id, api_key = create_account(conn, "development")
        _, secret = create_key(conn, account_id, "development")
        return account_id, api_key, secret

    account_id, api_key, secret = write_once(url, make)
    path.write_text(f"ACCOUNT_ID={account_id}\nACCOUNT_KEY={api_key}\nSECRET_KEY={secret}\n")
    os.chmod(path, 0o600)
    return DevAccount(account_id, api_key, secret, path)


# -- the CLI ----------------------------------------------------------------------------


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], add_database: Callable[[argparse.ArgumentParser], None]
) -> None:
    commands = sub.add_parser("accounts", help="cloud accounts (the cloud API on port 8443)").add_subparsers(
        dest="accounts_command", required=True
    )
    p = commands.add_parser("create", help="a new account; its id and account key (x-api-key) are shown once")
    add_database(p)
    p.add_argument("--name", required=True)
    p.add_argument("--id", dest="account_id", default=None, help="the account id (default: the next free number)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=run_create_account)

    commands = sub.add_parser("keys", help="user keys of cloud accounts (x-api-secret-key)").add_subparsers(
        dest="keys_command", required=True
    )
    p = commands.add_parser("create", help="a new user key; its secret is shown once")
    add_database(p)
    p.add_argument("--account", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=run_create_key)
    p = commands.add_parser("list", help="user keys, without secrets")
    add_database(p)
    p.add_argument("--account", default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=run_list_keys)
    p = commands.add_parser("revoke", help="stop a user key at once")
    add_database(p)
    p.add_argument("key_id")
    p.set_defaults(run=run_revoke_key)


def run_create_account(args: argparse.Namespace, url: str) -> int:
    account_id, key = write_once(url, lambda conn: create_account(conn, args.name, args.account_id))
    if args.json:
        print(json.dumps({"account_id": account_id, "api_key": key, "name": args.name}))
    else:
        print(f"account {account_id} ({args.name})")
        print(f"x-api-key: {key}")
        print("# store the key now: it is not shown again; make user keys with `tasktrail keys create`")
    return 0


def run_create_key(args: argparse.Namespace, url: str) -> int:
    try:
        key_id, secret = write_once(url, lambda conn: create_key(conn, args.account, args.name))
    except ValueError as exc:
        print(f"tasktrail: {exc}")
        return 1
    if args.json:
        print(json.dumps({"key_id": key_id, "account_id": args.account, "secret_key": secret, "name": args.name}))
    else:
        print(f"key {key_id} of account {args.account} ({args.name})")
        print(f"x-api-secret-key: {secret}")
        print("# store the secret now: it is not shown again")
    return 0


def run_list_keys(args: argparse.Namespace, url: str) -> int:
    found: list[KeyInfo] = write_once(url, lambda conn: list_keys(conn, args.account))
    if args.json:
        print(json.dumps([dataclasses.asdict(k) for k in found]))
        return 0
    from tasktrail.console import table

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


def run_revoke_key(args: argparse.Namespace, url: str) -> int:
    if not write_once(url, lambda conn: revoke_key(conn, args.key_id)):
        print(f"tasktrail: no active key {args.key_id}")
        return 1
    print(f"revoked {args.key_id}")
    return 0
