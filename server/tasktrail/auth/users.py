"""Basic-auth users of the enterprise API (`/v1/crdb_tasks`, port 9443), as a
Redis Enterprise cluster has them.

A user reads and cancels CRDB tasks (scope `crdb`), over REST and over native
gRPC, and nothing else. Passwords are stored as argon2id hashes at OWASP's
parameters (m=19 MiB, t=2, p=1: about 25 ms each); a hash made before (scrypt,
or weaker argon2) is replaced at the user's next successful login.

A password check is slow on purpose, so that guessing is; it never makes the
service slow:
- it runs on one thread of its own, never on the event loop, and no more than
  `PENDING` wait for it (past that, RESOURCE_EXHAUSTED at once);
- an unknown user costs the same as a wrong password (a dummy hash is checked),
  so the time of an answer does not tell which names exist;
- a process remembers the (user, password) pairs it verified against a hash
  (only successes: a failure never pushes a good pair out), so a client's
  repeated requests cost one indexed read; each request still reads the
  user's row, so a deleted user or a changed password is refused at once;
- failures are counted per user and per client address by `throttle`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import hmac
import secrets
from collections import OrderedDict

import argon2

from tasktrail.auth.principal import Principal, Role
from tasktrail.core import errors
from tasktrail.core.model import Access, Scope, now_us
from tasktrail.store import Store, identity
from tasktrail.store.identity import UserRecord
from tasktrail.store.statements import WriteQueries

MAX_NAME = 255
MAX_PASSWORD = 1024
# OWASP's password storage cheat sheet: argon2id, 19 MiB, 2 iterations, 1 lane.
HASHER = argon2.PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# Password checks at once (threads: one, so that guessing can take one core at
# most from everyone else), and how many may wait for one.
WORKERS = 1
PENDING = 16


def hash_password(password: str) -> str:
    return HASHER.hash(password)


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches `stored` (argon2id, or an older scrypt hash)."""
    if stored.startswith("scrypt$"):
        return _verify_scrypt(password, stored)
    try:
        return HASHER.verify(stored, password)
    except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    return stored.startswith("scrypt$") or HASHER.check_needs_rehash(stored)


def _verify_scrypt(password: str, stored: str) -> bool:
    """Hashes made before argon2id: salted scrypt (N=2^15, r=8, p=1)."""
    try:
        _, n, r, p, salt, digest = stored.split("$")
        cost, block, lanes = int(n), int(r), int(p)
        computed = hashlib.scrypt(
            password.encode(), salt=bytes.fromhex(salt), n=cost, r=block, p=lanes,
            maxmem=256 * cost * block + 2**20, dklen=32,
        )  # fmt: skip
    except ValueError:
        return False
    return hmac.compare_digest(computed, bytes.fromhex(digest))


def create_user(tx: WriteQueries, username: str, password: str) -> None:
    if not username or len(username) > MAX_NAME or ":" in username or not username.isprintable():
        raise ValueError("a user name is 1 to 255 printable characters, without ':'")
    if not password or len(password) > MAX_PASSWORD:
        raise ValueError(f"a password is 1 to {MAX_PASSWORD} characters")
    if identity.user_exists(tx, username):
        raise ValueError(f"user {username} exists")
    identity.insert_user(tx, username, hash_password(password), now_us())


def delete_user(tx: WriteQueries, username: str) -> bool:
    return identity.delete_user(tx, username)


def list_users(tx: WriteQueries) -> list[UserRecord]:
    return identity.list_users(tx)


class Verifier:
    """Checks basic-auth credentials against one store (see the module's docstring)."""

    def __init__(self, store: Store, size: int = 10_000) -> None:
        self.store = store
        self._key = secrets.token_bytes(32)  # remembered passwords are keyed digests, never the passwords
        self._seen: OrderedDict[tuple[str, bytes], str] = OrderedDict()
        self._size = size
        self._pool = concurrent.futures.ThreadPoolExecutor(WORKERS, thread_name_prefix="tasktrail-password")
        self._waiting = 0
        # Checked for unknown users, so that they cost what a wrong password costs.
        self._dummy = hash_password(secrets.token_urlsafe(16))

    async def authenticate(self, username: str, password: str) -> Principal | None:
        if len(username) > MAX_NAME or len(password) > MAX_PASSWORD:
            return None
        stored = await self.store.read(lambda r: identity.password_hash(r, username))
        key = (username, hmac.digest(self._key, password.encode(), "sha256"))
        if stored is not None and self._seen.get(key) == stored:
            self._seen.move_to_end(key)
            return _principal(username)
        ok = await self._verify(password, stored or self._dummy) and stored is not None
        if not ok or stored is None:
            return None
        self._seen[key] = stored
        if len(self._seen) > self._size:
            self._seen.popitem(last=False)
        if needs_rehash(stored):
            await self._rehash(username, password, stored)
        return _principal(username)

    async def _verify(self, password: str, stored: str) -> bool:
        if self._waiting >= PENDING:
            raise errors.ResourceExhausted("too many password checks at once: retry in a moment", retry_after=1)
        self._waiting += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._pool, verify_password, password, stored)
        finally:
            self._waiting -= 1

    async def _rehash(self, username: str, password: str, stored: str) -> None:
        """The user's hash at today's parameters (unless it changed meanwhile)."""
        loop = asyncio.get_running_loop()
        fresh = await loop.run_in_executor(self._pool, hash_password, password)
        await self.store.write(lambda tx: identity.replace_password_hash(tx, username, stored, fresh))


def _principal(username: str) -> Principal:
    # Every user reads and cancels every CRDB task (as Redis Enterprise grants it to every role), never writes.
    return Principal(f"user:{username}", username, Role.OPERATOR, Access(scopes=frozenset({Scope.CRDB})))
