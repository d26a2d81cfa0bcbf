"""Statements on the callers' credentials: access tokens, cloud accounts and
their API keys, basic-auth users. Secrets never reach the store: tokens and
keys are kept as their SHA-256, passwords as a slow salted hash (the rules
are `tasktrail.auth`'s; this module only stores and finds)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, delete, func, insert, select, update

from tasktrail.store.schema import accounts, api_keys, tokens, users
from tasktrail.store.statements import ReadQueries, WriteQueries


@dataclass(frozen=True, slots=True)
class TokenRecord:
    token_id: str
    name: str
    role: str
    grants: str  # a JSON list
    created_at: int
    revoked_at: int | None


@dataclass(frozen=True, slots=True)
class KeyRecord:
    key_id: str
    account_id: str
    name: str
    created_at: int
    revoked_at: int | None


@dataclass(frozen=True, slots=True)
class UserRecord:
    username: str
    created_at: int


# -- tokens -----------------------------------------------------------------------------


def insert_token(
    tx: WriteQueries, token_id: str, name: str, role: str, grants: str, secret_hash: str, now: int
) -> None:
    values = {
        "token_id": token_id,
        "name": name,
        "role": role,
        "grants": grants,
        "secret_hash": secret_hash,
        "created_at": now,
        "revoked_at": None,
    }
    tx.execute(insert(tokens).values(values))


def revoke_token(tx: WriteQueries, token_id: str, now: int) -> bool:
    stmt = update(tokens).where(tokens.c.token_id == token_id, tokens.c.revoked_at.is_(None)).values(revoked_at=now)
    return bool(tx.execute(stmt))


# Statements with no values of their own are built once: a backend keeps each compiled.
_TOKENS = select(
    tokens.c.token_id, tokens.c.name, tokens.c.role, tokens.c.grants, tokens.c.created_at, tokens.c.revoked_at
).order_by(tokens.c.created_at)


def list_tokens(tx: WriteQueries) -> list[TokenRecord]:
    return [TokenRecord(*row) for row in tx.rows(_TOKENS)]


_TOKEN = select(tokens.c.name, tokens.c.role, tokens.c.grants, tokens.c.secret_hash).where(
    tokens.c.token_id == bindparam("token_id"), tokens.c.revoked_at.is_(None)
)


def live_token(reader: ReadQueries, token_id: str) -> tuple[str, str, str, str] | None:
    """A live token's (name, role, grants, secret hash)."""
    rows = reader.rows(_TOKEN, {"token_id": token_id})
    return (rows[0][0], rows[0][1], rows[0][2], rows[0][3]) if rows else None


# -- cloud accounts and their API keys ----------------------------------------------------


_ACCOUNT_COUNT = select(func.count()).select_from(accounts)


def account_count(tx: WriteQueries) -> int:
    return int(tx.rows(_ACCOUNT_COUNT)[0][0])


def insert_account(tx: WriteQueries, account_id: str, name: str, key_hash: str, now: int) -> None:
    values = {"account_id": account_id, "name": name, "api_key_hash": key_hash, "created_at": now}
    tx.execute(insert(accounts).values(values))


def account_exists(tx: WriteQueries, account_id: str) -> bool:
    return bool(tx.rows(select(accounts.c.account_id).where(accounts.c.account_id == account_id)))


def insert_key(tx: WriteQueries, key_id: str, account_id: str, name: str, secret_hash: str, now: int) -> None:
    values = {
        "key_id": key_id,
        "account_id": account_id,
        "name": name,
        "secret_hash": secret_hash,
        "created_at": now,
        "revoked_at": None,
    }
    tx.execute(insert(api_keys).values(values))


def revoke_key(tx: WriteQueries, key_id: str, now: int) -> bool:
    live = (api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
    return bool(tx.execute(update(api_keys).where(*live).values(revoked_at=now)))


_KEYS = select(
    api_keys.c.key_id, api_keys.c.account_id, api_keys.c.name, api_keys.c.created_at, api_keys.c.revoked_at
).order_by(api_keys.c.created_at)
_KEYS_OF = _KEYS.where(api_keys.c.account_id == bindparam("account_id"))


def list_keys(tx: WriteQueries, account_id: str | None) -> list[KeyRecord]:
    rows = tx.rows(_KEYS) if account_id is None else tx.rows(_KEYS_OF, {"account_id": account_id})
    return [KeyRecord(*row) for row in rows]


_KEY = (
    select(accounts.c.account_id, accounts.c.api_key_hash, api_keys.c.key_id, api_keys.c.name)
    .select_from(api_keys.join(accounts, accounts.c.account_id == api_keys.c.account_id))
    .where(api_keys.c.secret_hash == bindparam("secret_hash"), api_keys.c.revoked_at.is_(None))
)


def live_key(reader: ReadQueries, secret_hash: str) -> tuple[str, str, str, str] | None:
    """A live user key's (account id, account key hash, key id, key name), by its secret's hash."""
    rows = reader.rows(_KEY, {"secret_hash": secret_hash})
    return (rows[0][0], rows[0][1], rows[0][2], rows[0][3]) if rows else None


# -- basic-auth users ------------------------------------------------------------------------


def user_exists(tx: WriteQueries, username: str) -> bool:
    return bool(tx.rows(select(users.c.username).where(users.c.username == username)))


def insert_user(tx: WriteQueries, username: str, password_hash: str, now: int) -> None:
    tx.execute(insert(users).values(username=username, password_hash=password_hash, created_at=now))


def delete_user(tx: WriteQueries, username: str) -> bool:
    return bool(tx.execute(delete(users).where(users.c.username == username)))


_USERS = select(users.c.username, users.c.created_at).order_by(users.c.username)


def list_users(tx: WriteQueries) -> list[UserRecord]:
    return [UserRecord(*row) for row in tx.rows(_USERS)]


_PASSWORD = select(users.c.password_hash).where(users.c.username == bindparam("username"))


def password_hash(reader: ReadQueries, username: str) -> str | None:
    rows = reader.rows(_PASSWORD, {"username": username})
    return str(rows[0][0]) if rows else None


def replace_password_hash(tx: WriteQueries, username: str, old: str, new: str) -> bool:
    """Store a new hash of the same password, unless the hash changed meanwhile."""
    stmt = update(users).where(users.c.username == username, users.c.password_hash == old).values(password_hash=new)
    return bool(tx.execute(stmt))
