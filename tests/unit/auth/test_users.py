"""Basic-auth users: how passwords are kept, and what checking one costs."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import statistics
import time

import pytest

from tasktrail.auth import users
from tasktrail.auth.users import Verifier, hash_password, needs_rehash, verify_password
from tasktrail.core import errors
from tasktrail.store import Store, identity
from tasktrail.store.statements import WriteQueries


def test_passwords_are_salted_argon2id_at_owasps_parameters() -> None:
    one, two = hash_password("secret"), hash_password("secret")
    assert one != two  # salted
    assert one.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert verify_password("secret", one)
    assert not verify_password("Secret", one)
    assert not verify_password("secret", "garbage")
    assert not needs_rehash(one)


def scrypt_hash(password: str) -> str:
    """A hash as tasktrail made them before argon2id."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**15, r=8, p=1, maxmem=2**26, dklen=32)
    return f"scrypt$32768$8$1${salt.hex()}${digest.hex()}"


pytestmark = pytest.mark.anyio


async def test_an_older_hash_is_replaced_at_the_next_login(store: Store) -> None:
    old = scrypt_hash("pw")
    assert verify_password("pw", old)
    assert needs_rehash(old)

    def make(tx: WriteQueries) -> None:
        identity.insert_user(tx, "old@example.com", old, 0)

    await store.write(make)
    verifier = Verifier(store)
    assert await verifier.authenticate("old@example.com", "nope") is None
    assert await store.read(lambda r: identity.password_hash(r, "old@example.com")) == old  # a failure changes nothing
    assert await verifier.authenticate("old@example.com", "pw") is not None
    now = await store.read(lambda r: identity.password_hash(r, "old@example.com"))
    assert now is not None
    assert now.startswith("$argon2id$")
    assert await Verifier(store).authenticate("old@example.com", "pw") is not None


async def test_an_unknown_user_costs_what_a_wrong_password_costs(store: Store) -> None:
    await store.write(lambda tx: users.create_user(tx, "known@example.com", "right"))
    verifier = Verifier(store)

    async def timed(name: str) -> float:
        started = time.perf_counter()
        assert await verifier.authenticate(name, secrets.token_hex(8)) is None
        return time.perf_counter() - started

    known = [await timed("known@example.com") for _ in range(5)]
    unknown = [await timed(f"nobody-{i}@example.com") for i in range(5)]
    # Both hash once (argon2id, ~25 ms): the answer's time does not tell which names exist.
    assert statistics.median(unknown) > 0.5 * statistics.median(known)
    assert statistics.median(known) > 0.005


async def test_password_checks_wait_in_a_bounded_queue(store: Store) -> None:
    await store.write(lambda tx: users.create_user(tx, "busy@example.com", "right"))
    verifier = Verifier(store)
    attempts = [verifier.authenticate("busy@example.com", f"wrong-{i}") for i in range(users.PENDING + 20)]
    results = await asyncio.gather(*attempts, return_exceptions=True)
    refused = [r for r in results if isinstance(r, errors.ResourceExhausted)]
    assert refused  # past PENDING waiting, the rest are refused at once
    assert all(r is None for r in results if not isinstance(r, BaseException))
    # The loop was never blocked: a good password still gets through afterwards.
    assert await verifier.authenticate("busy@example.com", "right") is not None
