"""Access tokens: `tt_<id>_<secret>`.

The store keeps a token's id, role, grants and the SHA-256 of its secret (the
secret is 256 random bits, so a fast hash is a safe one), never the secret
itself. Every call checks the token against the store, so a revoked token
stops working at once, in every process.

Roles: a reader reads tasks in its grants; an operator also cancels them; a
writer also creates and writes them (and cancels). Grants are whole scopes
("database") or single entities ("account:1234").
"""

from __future__ import annotations

import hmac
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from tasktrail.auth.principal import Principal, Role, access_of, parse_grant, sha256_hex
from tasktrail.core.model import now_us
from tasktrail.store import Store, identity
from tasktrail.store.statements import WriteQueries

PREFIX = "tt"


@dataclass(frozen=True, slots=True)
class TokenInfo:
    token_id: str
    name: str
    role: Role
    grants: tuple[str, ...]
    created_at: int
    revoked_at: int | None


def split_token(token: str) -> tuple[str, str] | None:
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def create_token(tx: WriteQueries, name: str, role: Role, grants: Sequence[str]) -> str:
    """Store a new token; returns it whole (the only time its secret is shown)."""
    for grant in grants:
        parse_grant(grant)
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    identity.insert_token(tx, token_id, name, role.value, json.dumps(list(grants)), sha256_hex(secret), now_us())
    return f"{PREFIX}_{token_id}_{secret}"


def revoke_token(tx: WriteQueries, token: str) -> bool:
    """Revoke a token, named by its id or given whole."""
    parts = split_token(token)
    return identity.revoke_token(tx, parts[0] if parts is not None else token, now_us())


def list_tokens(tx: WriteQueries) -> list[TokenInfo]:
    return [
        TokenInfo(r.token_id, r.name, Role(r.role), tuple(json.loads(r.grants)), r.created_at, r.revoked_at)
        for r in identity.list_tokens(tx)
    ]


async def authenticate(store: Store, token: str) -> Principal | None:
    parts = split_token(token)
    if parts is None:
        return None
    token_id, secret = parts
    row = await store.read(lambda r: identity.live_token(r, token_id))
    if row is None or not hmac.compare_digest(row[3], sha256_hex(secret)):
        return None
    return Principal(token_id, row[0], Role(row[1]), access_of(json.loads(row[2])))
