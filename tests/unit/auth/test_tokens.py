"""Access tokens: shown once, kept as a hash, revoked at once."""

from __future__ import annotations

import pytest

from tasktrail.auth import tokens
from tasktrail.auth.principal import Role
from tasktrail.core.model import Scope
from tasktrail.store import Store
from tasktrail.store.schema import tokens as tokens_table

pytestmark = pytest.mark.anyio


async def test_a_token_reads_its_grants_and_its_secret_is_never_stored(store: Store) -> None:
    token = await store.write(lambda tx: tokens.create_token(tx, "ci", Role.READER, ["database", "account:7"]))
    principal = await tokens.authenticate(store, token)
    assert principal is not None
    assert principal.role is Role.READER
    assert principal.access.allows(Scope.DATABASE, "any")
    assert principal.access.allows(Scope.ACCOUNT, "7")
    assert not principal.access.allows(Scope.ACCOUNT, "8")
    secret = token.split("_", 2)[2]
    rows = await store.read(lambda r: r.rows(tokens_table.select(), {}))
    assert all(secret not in str(row) for row in rows)


async def test_a_wrong_secret_or_a_revoked_token_is_refused(store: Store) -> None:
    token = await store.write(lambda tx: tokens.create_token(tx, "ci", Role.WRITER, ["host"]))
    token_id = token.split("_")[1]
    assert await tokens.authenticate(store, token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert await tokens.authenticate(store, "not a token") is None
    assert await store.write(lambda tx: tokens.revoke_token(tx, token_id))
    assert await tokens.authenticate(store, token) is None
    assert not await store.write(lambda tx: tokens.revoke_token(tx, token))  # already revoked


async def test_an_unknown_scope_in_a_grant_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="unknown scope 'galaxy'"):
        await store.write(lambda tx: tokens.create_token(tx, "x", Role.READER, ["galaxy"]))
