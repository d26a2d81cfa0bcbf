"""Who may do what: access tokens.

A token is `tt_<id>_<secret>`. The store keeps its id, role, grants and the
SHA-256 of its secret (the secret is 256 random bits, so a fast hash is a safe
one), never the secret itself. Every call checks the token against the store,
so a revoked token stops working at once, in every process.

Roles: a reader reads tasks in its grants; a writer also writes them. Grants
are whole scopes ("database") or single entities ("account:1234").
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import enum
import hashlib
import hmac
import json
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from grpc import aio
from sqlalchemy import Connection, bindparam, insert, select, update

from tasktrail.model import Access, Range, Scope, now_us
from tasktrail.store import Store
from tasktrail.store.engine import Reader
from tasktrail.store.schema import tokens

PREFIX = "tt"


class Role(enum.Enum):
    READER = "reader"
    WRITER = "writer"


@dataclass(frozen=True, slots=True)
class Principal:
    token_id: str
    name: str
    role: Role
    access: Access
    # Set for the API keys of a cloud account.
    account_id: str | None = None

    @property
    def can_write(self) -> bool:
        return self.role is Role.WRITER


@dataclass(frozen=True, slots=True)
class TokenInfo:
    token_id: str
    name: str
    role: Role
    grants: tuple[str, ...]
    created_at: int
    revoked_at: int | None


def parse_grant(text: str) -> Range:
    scope, _, entity = text.partition(":")
    try:
        return (Scope(scope), entity or None)
    except ValueError:
        raise ValueError(
            f"unknown scope {scope!r} in grant {text!r} (scopes: {', '.join(s.value for s in Scope)})"
        ) from None


def access_of(grants: Sequence[str]) -> Access:
    return Access.of(*(parse_grant(g) for g in grants))


def sha256_hex(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_token(token: str) -> tuple[str, str] | None:
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


# -- the store ---------------------------------------------------------------------


def create_token(conn: Connection, name: str, role: Role, grants: Sequence[str]) -> str:
    """Store a new token; returns it whole (the only time its secret is shown)."""
    for grant in grants:
        parse_grant(grant)
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    conn.execute(
        insert(tokens),
        [
            {
                "token_id": token_id,
                "name": name,
                "role": role.value,
                "grants": json.dumps(list(grants)),
                "secret_hash": sha256_hex(secret),
                "created_at": now_us(),
                "revoked_at": None,
            }
        ],
    )
    return f"{PREFIX}_{token_id}_{secret}"


def revoke_token(conn: Connection, token_id: str) -> bool:
    result = conn.execute(
        update(tokens).where(tokens.c.token_id == token_id, tokens.c.revoked_at.is_(None)).values(revoked_at=now_us())
    )
    return bool(result.rowcount)


def list_tokens(conn: Connection) -> list[TokenInfo]:
    rows = conn.execute(
        select(
            tokens.c.token_id, tokens.c.name, tokens.c.role, tokens.c.grants, tokens.c.created_at, tokens.c.revoked_at
        ).order_by(tokens.c.created_at)
    )
    return [TokenInfo(r[0], r[1], Role(r[2]), tuple(json.loads(r[3])), r[4], r[5]) for r in rows]


_LOOKUP = select(tokens.c.name, tokens.c.role, tokens.c.grants, tokens.c.secret_hash).where(
    tokens.c.token_id == bindparam("token_id"), tokens.c.revoked_at.is_(None)
)


def _lookup(reader: Reader, token_id: str) -> tuple[str, str, str, str] | None:
    rows = reader.rows(_LOOKUP, {"token_id": token_id})
    return (rows[0][0], rows[0][1], rows[0][2], rows[0][3]) if rows else None


async def authenticate(store: Store, token: str) -> Principal | None:
    parts = split_token(token)
    if parts is None:
        return None
    token_id, secret = parts
    row = await store.read(lambda r: _lookup(r, token_id))
    if row is None or not hmac.compare_digest(row[3], sha256_hex(secret)):
        return None
    return Principal(token_id, row[0], Role(row[1]), access_of(json.loads(row[2])))


def bearer(metadata: Any) -> str | None:
    """The token of `authorization: Bearer <token>` metadata."""
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


def basic_credentials(metadata: Any) -> tuple[str, str] | None:
    """`authorization: Basic …` as (user, password); None when there is no such
    header; ("", "") when there is one that cannot be read."""
    for key, value in metadata or ():
        if key != "authorization" or not isinstance(value, str):
            continue
        scheme, _, encoded = value.strip().partition(" ")
        if scheme.lower() != "basic":
            continue
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return "", ""
        name, colon, password = decoded.partition(":")
        return (name, password) if colon and name else ("", "")
    return None


def api_keys(metadata: Any) -> tuple[str | None, str | None]:
    """A cloud account's `x-api-key` and a user's `x-api-secret-key`."""
    found: dict[str, str] = {}
    for key, value in metadata or ():
        if key in ("x-api-key", "x-api-secret-key") and isinstance(value, str) and value.strip():
            found[key] = value.strip()
    return found.get("x-api-key"), found.get("x-api-secret-key")


# -- the server side -------------------------------------------------------------------

# The caller of the current call, set by the gate for the servicer.
current: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("tasktrail_principal", default=None)


class Requirement(enum.Enum):
    READER = "reader"
    WRITER = "writer"


Refusal = Callable[[aio.ServicerContext[Any, Any], str], Awaitable[None]]


async def refuse_grpc(context: aio.ServicerContext[Any, Any], message: str) -> None:
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)


class Gate:
    """Checks the caller's token at the start of a call, and hands the caller to
    the servicer through `current`. A servicer's decorator calls it (rather than
    an interceptor on every call), so calls that need no token pay nothing."""

    def __init__(
        self,
        store: Store | None,
        refuse: Refusal = refuse_grpc,
        missing: str = "a token is required: metadata authorization: Bearer <token>",
    ) -> None:
        from tasktrail import accounts, users

        # No store: the gate is open (a server run without tokens, in tests).
        self.store = store
        self.refuse = refuse
        self.missing = missing
        self.users = users.VERIFIER
        self.account_keys = accounts.authenticate

    async def admit(self, context: aio.ServicerContext[Any, Any], need: Requirement) -> None:
        """Returns when the call may go on; a refusal aborts the call (it raises).
        A caller shows a token (`authorization: Bearer …`), a cloud account's
        pair of API keys (`x-api-key`, `x-api-secret-key`), which read that
        account's tasks only, or a user's password (`authorization: Basic …`),
        which reads CRDB tasks only."""
        if self.store is None:
            return
        metadata = context.invocation_metadata()
        if (basic := basic_credentials(metadata)) is not None:
            principal = await self.users.authenticate(self.store, *basic) if basic[0] else None
            problem = "the user name or password is wrong"
        elif (token := bearer(metadata)) is not None:
            principal = await authenticate(self.store, token)
            problem = "the token is unknown or revoked"
        else:
            api_key, secret_key = api_keys(metadata)
            if api_key is None and secret_key is None:
                await self.refuse(context, self.missing)
                raise AssertionError("a refusal aborts the call")
            principal = None
            if api_key is not None and secret_key is not None:
                principal = await self.account_keys(self.store, api_key, secret_key)
            problem = "the API keys are missing, unknown or revoked: x-api-key and x-api-secret-key"
        if principal is None:
            await self.refuse(context, problem)
            raise AssertionError("a refusal aborts the call")
        if need is Requirement.WRITER and not principal.can_write:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "this call needs a writer token")
        current.set(principal)


OPEN = Gate(None)
