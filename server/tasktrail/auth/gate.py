"""The gate: checks the caller's credentials at the start of a call.

A caller shows a token (`authorization: Bearer …`), a cloud account's pair of
API keys (`x-api-key`, `x-api-secret-key`), or a user's password
(`authorization: Basic …`). How each is checked comes in as `Checks` (from
`tokens`, `accounts` and `users`), so that the gate imports only the
principal it hands on.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from grpc import aio

from tasktrail.auth.principal import Principal, Requirement, current


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


@dataclass(frozen=True, slots=True)
class Checks:
    """How each kind of credential is checked; None: unknown, revoked or wrong."""

    token: Callable[[str], Awaitable[Principal | None]]
    api_keys: Callable[[str, str], Awaitable[Principal | None]]
    password: Callable[[str, str], Awaitable[Principal | None]]


Refusal = Callable[[aio.ServicerContext[Any, Any], str], Awaitable[None]]


async def refuse_grpc(context: aio.ServicerContext[Any, Any], message: str) -> None:
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)


class Gate:
    """Checks the caller's token at the start of a call, and hands the caller to
    the servicer through `current`. A servicer's decorator calls it (rather than
    an interceptor on every call), so calls that need no token pay nothing."""

    def __init__(
        self,
        checks: Checks | None,
        refuse: Refusal = refuse_grpc,
        missing: str = "a token is required: metadata authorization: Bearer <token>",
    ) -> None:
        # No checks: the gate is open (a server run without tokens, in tests).
        self.checks = checks
        self.refuse = refuse
        self.missing = missing

    async def admit(self, context: aio.ServicerContext[Any, Any], need: Requirement) -> None:
        """Returns when the call may go on; a refusal aborts the call (it raises).
        A caller shows a token (`authorization: Bearer …`), a cloud account's
        pair of API keys (`x-api-key`, `x-api-secret-key`), which read that
        account's tasks only, or a user's password (`authorization: Basic …`),
        which reads CRDB tasks only."""
        checks = self.checks
        if checks is None:
            return
        metadata = context.invocation_metadata()
        if (basic := basic_credentials(metadata)) is not None:
            principal = await checks.password(*basic) if basic[0] else None
            problem = "the user name or password is wrong"
        elif (token := bearer(metadata)) is not None:
            principal = await checks.token(token)
            problem = "the token is unknown or revoked"
        else:
            api_key, secret_key = api_keys(metadata)
            if api_key is None and secret_key is None:
                await self.refuse(context, self.missing)
                raise AssertionError("a refusal aborts the call")
            principal = None
            if api_key is not None and secret_key is not None:
                principal = await checks.api_keys(api_key, secret_key)
            problem = "the API keys are missing, unknown or revoked: x-api-key and x-api-secret-key"
        if principal is None:
            await self.refuse(context, problem)
            raise AssertionError("a refusal aborts the call")
        if need is Requirement.WRITER and not principal.can_write:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "this call needs a writer token")
        current.set(principal)


OPEN = Gate(None)
