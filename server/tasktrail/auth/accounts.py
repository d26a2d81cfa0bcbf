"""Cloud accounts and their API keys, as the Redis Cloud API has them.

An account owns its tasks (scope `account`, entity the account id). Every
request carries the account key (`x-api-key`, one per account) and a user key
of that account (`x-api-secret-key`, one per user, revocable). Both are random
256-bit strings; the store keeps their SHA-256 only and finds a key by it.
"""

from __future__ import annotations

import hmac
import secrets

from tasktrail.auth.principal import Principal, Role, sha256_hex
from tasktrail.core.model import Access, Scope, now_us
from tasktrail.store import Store, identity
from tasktrail.store.identity import KeyRecord
from tasktrail.store.statements import WriteQueries

FIRST_ACCOUNT_ID = 1_000_001


def create_account(tx: WriteQueries, name: str, account_id: str | None = None) -> tuple[str, str]:
    """A new account; returns (account id, account key)."""
    if account_id is None:
        account_id = str(FIRST_ACCOUNT_ID + identity.account_count(tx))
    key = secrets.token_urlsafe(32)
    identity.insert_account(tx, account_id, name, sha256_hex(key), now_us())
    return account_id, key


def create_key(tx: WriteQueries, account_id: str, name: str) -> tuple[str, str]:
    """A new user key of an account; returns (key id, secret)."""
    if not identity.account_exists(tx, account_id):
        raise ValueError(f"no account {account_id}")
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    identity.insert_key(tx, key_id, account_id, name, sha256_hex(secret), now_us())
    return key_id, secret


def revoke_key(tx: WriteQueries, key_id: str) -> bool:
    return identity.revoke_key(tx, key_id, now_us())


def list_keys(tx: WriteQueries, account_id: str | None) -> list[KeyRecord]:
    return identity.list_keys(tx, account_id)


async def authenticate(store: Store, api_key: str, secret_key: str) -> Principal | None:
    """The account behind a pair of keys: the user key must be live and belong to
    the account the account key names."""
    row = await store.read(lambda r: identity.live_key(r, sha256_hex(secret_key)))
    if row is None or not hmac.compare_digest(row[1], sha256_hex(api_key)):
        return None
    account_id, _, key_id, name = row
    # Operators of their own tasks: they read and cancel them (gRPC's CancelTask), never write.
    return Principal(key_id, name, Role.OPERATOR, Access.of((Scope.ACCOUNT, account_id)), account_id=account_id)
