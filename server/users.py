"""Basic-auth users of the enterprise API (`/v1/crdb_tasks`, port 9443), as a
Redis Enterprise cluster has them.

A user reads and cancels CRDB tasks (scope `crdb`), over REST and over native
gRPC, and nothing else. Passwords are stored as salted scrypt digests (slow on
purpose: about 0.1 s and 32 MiB each). So that a client's every request does
not pay that, a process remembers which (user, password) pairs it verified
against which digest; each request still reads the user's row, so a deleted
user, or a changed password, is refused from the next request on.

    tasktrail users create --name ops@example.com          # a random password, shown once
    tasktrail users create --name ops@example.com --password-stdin
    tasktrail users list
    tasktrail users delete ops@example.com
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import secrets
import sys
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, bindparam, delete, insert, select

from tasktrail.auth import Principal, Role
from tasktrail.model import Access, Scope, now_us, utc_minute
from tasktrail.store import Store, once, write_once
from tasktrail.store.engine import Reader
from tasktrail.store.schema import users

# scrypt's cost: N=2^15, r=8, p=1 (32 MiB, ~0.1 s), above OWASP's floor for interactive logins.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
MAX_NAME = 255
MAX_PASSWORD = 1024


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r + 2**20, dklen=32)


def verify_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        computed = _scrypt(password, bytes.fromhex(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(computed, bytes.fromhex(digest))


@dataclass(frozen=True, slots=True)
class UserInfo:
    username: str
    created_at: int


def create_user(conn: Connection, username: str, password: str) -> None:
    if not username or len(username) > MAX_NAME or ":" in username or not username.isprintable():
        raise ValueError("a user name is 1 to 255 printable characters, without ':'")
    if not password or len(password) > MAX_PASSWORD:
        raise ValueError(f"a password is 1 to {MAX_PASSWORD} characters")
    if conn.execute(select(users.c.username).where(users.c.username == username)).first() is not None:
        raise ValueError(f"user {username} exists")
    conn.execute(
        insert(users), [{"username": username, "password_hash": hash_password(password), "created_at": now_us()}]
    )


def delete_user(conn: Connection, username: str) -> bool:
    return bool(conn.execute(delete(users).where(users.c.username == username)).rowcount)


def list_users(conn: Connection) -> list[UserInfo]:
    query = select(users.c.username, users.c.created_at).order_by(users.c.username)
    return [UserInfo(*row) for row in conn.execute(query)]


_LOOKUP = select(users.c.password_hash).where(users.c.username == bindparam("username"))


def _digest_of(reader: Reader, username: str) -> str | None:
    rows = reader.rows(_LOOKUP, {"username": username})
    return str(rows[0][0]) if rows else None


class Verifier:
    """Checks basic-auth credentials against the store, remembering what it
    verified (bounded): a client's repeated requests cost one indexed read."""

    def __init__(self, size: int = 10_000) -> None:
        self._key = secrets.token_bytes(32)  # the remembered passwords are keyed digests, never the passwords
        self._seen: OrderedDict[tuple[str, bytes], tuple[str, bool]] = OrderedDict()
        self._size = size

    async def authenticate(self, store: Store, username: str, password: str) -> Principal | None:
        stored = await store.read(lambda r: _digest_of(r, username))
        if stored is None:
            return None
        key = (username, hmac.digest(self._key, password.encode(), "sha256"))
        known = self._seen.get(key)
        if known is not None and known[0] == stored:
            ok = known[1]
            self._seen.move_to_end(key)
        else:
            ok = await asyncio.to_thread(verify_password, password, stored)
            self._seen[key] = (stored, ok)
            if len(self._seen) > self._size:
                self._seen.popitem(last=False)
        if not ok:
            return None
        return Principal(f"user:{username}", username, Role.READER, Access(scopes=frozenset({Scope.CRDB})))


# One per process: every gate shares what it verified.
VERIFIER = Verifier()


# -- the development user ------------------------------------------------------------

DEV_USER_FILE = "dev-user"
DEV_USER = "admin@tasktrail.local"


def ensure_dev_user(url: str, data_dir: Path) -> tuple[str, str]:
    """A development user, so that the enterprise API's curl commands run at once;
    `user:password` kept in <data-dir>/dev-user, made again when it no longer works."""
    path = data_dir / DEV_USER_FILE
    if path.exists():
        name, _, password = path.read_text().strip().partition(":")
        verifier = Verifier()
        if name and once(url, lambda store: verifier.authenticate(store, name, password)) is not None:
            return name, password
    password = secrets.token_urlsafe(18)

    def make(conn: Connection) -> None:
        delete_user(conn, DEV_USER)
        create_user(conn, DEV_USER, password)

    write_once(url, make)
    path.write_text(f"{DEV_USER}:{password}\n")
    os.chmod(path, 0o600)
    return DEV_USER, password


# -- the CLI ----------------------------------------------------------------------------


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], add_database: Callable[[argparse.ArgumentParser], None]
) -> None:
    commands = sub.add_parser("users", help="basic-auth users of the enterprise API (port 9443)").add_subparsers(
        dest="users_command", required=True
    )
    p = commands.add_parser("create", help="a new user; without a password given, a random one is shown once")
    add_database(p)
    p.add_argument("--name", required=True, help="the user name, e.g. an email address")
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=run_create)
    p = commands.add_parser("list", help="user names")
    add_database(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=run_list)
    p = commands.add_parser("delete", help="remove a user: refused from the next request on")
    add_database(p)
    p.add_argument("name")
    p.set_defaults(run=run_delete)


def run_create(args: argparse.Namespace, url: str) -> int:
    generated = not args.password_stdin
    password = secrets.token_urlsafe(18) if generated else sys.stdin.readline().rstrip("\r\n")
    try:
        write_once(url, lambda conn: create_user(conn, args.name, password))
    except ValueError as exc:
        print(f"tasktrail: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"username": args.name, **({"password": password} if generated else {})}))
    else:
        print(f"user {args.name}")
        if generated:
            print(f"password: {password}")
            print("# store the password now: it is not shown again")
    return 0


def run_list(args: argparse.Namespace, url: str) -> int:
    found = write_once(url, list_users)
    if args.json:
        print(json.dumps([{"username": u.username, "created_at": u.created_at} for u in found]))
        return 0
    from tasktrail.console import table

    rows = [[u.username, utc_minute(u.created_at)] for u in found]
    print(table(["USER", "CREATED (UTC)"], rows))
    return 0


def run_delete(args: argparse.Namespace, url: str) -> int:
    if not write_once(url, lambda conn: delete_user(conn, args.name)):
        print(f"tasktrail: no user {args.name}", file=sys.stderr)
        return 1
    print(f"deleted {args.name}")
    return 0
