"""Basic-auth users of the enterprise API (`/v1/crdb_tasks`, port 9443), as a
Redis Enterprise cluster has them.

A user reads and cancels CRDB tasks (scope `crdb`), over REST and over native
gRPC, and nothing else. Passwords are stored as salted scrypt digests (slow on
purpose: about 0.1 s and 32 MiB each). So that a client's every request does
not pay that, a process remembers which (user, password) pairs it verified
against which digest; each request still reads the user's row, so a deleted
user, or a changed password, is refused from the next request on.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections import OrderedDict

from tasktrail.auth.principal import Principal, Role
from tasktrail.core.model import Access, Scope, now_us
from tasktrail.store import Store, identity
from tasktrail.store.identity import UserRecord
from tasktrail.store.statements import WriteQueries

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
    """Checks basic-auth credentials against the store, remembering what it
    verified (bounded): a client's repeated requests cost one indexed read."""

    def __init__(self, size: int = 10_000) -> None:
        self._key = secrets.token_bytes(32)  # the remembered passwords are keyed digests, never the passwords
        self._seen: OrderedDict[tuple[str, bytes], tuple[str, bool]] = OrderedDict()
        self._size = size

    async def authenticate(self, store: Store, username: str, password: str) -> Principal | None:
        stored = await store.read(lambda r: identity.password_hash(r, username))
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
