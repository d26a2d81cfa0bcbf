"""The gate: checks the caller's credentials at the start of a call.

A caller shows a token (`authorization: Bearer …`), a cloud account's pair of
API keys (`x-api-key`, `x-api-secret-key`), or a user's password
(`authorization: Basic …`). How each is checked comes in as `Checks` (from
`tokens`, `accounts`, `users` and `throttle`), so that the gate imports only
the principal it hands on.

In order: a client address that failed too often is refused at once; the
credential is checked (a failure counts against the address, and for a
password against the user name); the call's need is met (a reader reads, an
operator also cancels, a writer also writes); an account's requests count
against its rate limit, on every surface. Each refusal is a core error (UNAUTHENTICATED, PERMISSION_DENIED,
RESOURCE_EXHAUSTED, UNAVAILABLE when the store cannot be read), which the
surface answers in its own shape.

An admission remembers its credential: a stream asks `still_valid` now and
then, so that a revoked token, a revoked key or a deleted user ends its open
streams within seconds (docs/security.md).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from grpc import aio

from tasktrail.auth.principal import Allowance, Principal, Requirement, allowance, current
from tasktrail.core import errors, metrics

log = logging.getLogger(__name__)


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


class Throttling(Protocol):
    async def check(self, address: str, user: str | None = None) -> None: ...

    async def failed(self, address: str, user: str | None = None) -> None: ...


class Limiting(Protocol):
    async def hit(self, key: str) -> Any: ...


@dataclass(frozen=True, slots=True)
class Checks:
    """How each kind of credential is checked (None: unknown, revoked or wrong),
    how failures are throttled, and the per-caller request limit."""

    token: Callable[[str], Awaitable[Principal | None]]
    api_keys: Callable[[str, str], Awaitable[Principal | None]]
    password: Callable[[str, str], Awaitable[Principal | None]]
    throttle: Throttling | None = None
    limit: Limiting | None = None


@dataclass(frozen=True, slots=True)
class Credential:
    """What a caller showed, to be checked again while its streams run."""

    kind: str  # "token", "keys" or "password"
    values: tuple[str, ...]

    @property
    def fingerprint(self) -> bytes:
        return hashlib.sha256("\x00".join((self.kind, *self.values)).encode()).digest()


@dataclass(frozen=True, slots=True)
class Admission:
    principal: Principal | None
    credential: Credential | None


OPEN_ADMISSION = Admission(None, None)
# What a call without a credential is told on the gRPC port (and the native
# API's REST face, when it asks for a token): what to do, in the service's words.
TOKEN_REQUIRED = (
    "a token is required: pass --token or set TASKTRAIL_TOKEN (the CLI reads ./data/dev-token when run where "
    "`tasktrail up` keeps its data); gRPC clients send metadata authorization: Bearer <token>"
)
# The same on port 3000 when `--controlplane-auth` asks for one.
TOKEN_REQUIRED_REST = "a token is required on this port: send the header Authorization: Bearer <token>"
# Set by Envoy (and removed from what any client sends) on the routes of a face
# that lets a caller without a credential in: the REST face of the native API
# on port 3000, where anyone sees what that port shows anyone.
ANONYMOUS_HEADER = "x-tasktrail-anonymous"
Context = aio.ServicerContext[Any, Any]


def client_address(context: Context) -> str:
    """The caller's address: the one Envoy appended to x-forwarded-for (it sets
    it from the connection, so a client cannot choose it), or the peer's."""
    for key, value in context.invocation_metadata() or ():
        if key == "x-forwarded-for" and isinstance(value, str) and value.strip():
            return value.rsplit(",", 1)[-1].strip()
    peer = context.peer() or ""
    return peer.rpartition(":")[0] if peer.count(":") == 1 or peer.startswith("ipv6:") else peer


class Gate:
    """Checks the caller's credential at the start of a call, and hands the
    caller to the servicer through `principal.current`. A servicer's decorator
    calls it (rather than an interceptor on every call), so calls that need no
    credential pay nothing."""

    def __init__(
        self,
        checks: Checks | None,
        missing: str = TOKEN_REQUIRED,
        *,
        limit_tokens: bool = False,
        recheck: float = 2.0,
        anonymous: Principal | None = None,
    ) -> None:
        # No checks: the gate is open (a port that asks for no credential, or a test).
        self.checks = checks
        self.missing = missing
        # Whether token callers count against a limit of their own too (the cloud surface).
        self.limit_tokens = limit_tokens
        self.recheck = recheck
        # Who a caller without a credential is, on a route Envoy marks (ANONYMOUS_HEADER); None: refused.
        self.anonymous = anonymous
        self._valid: OrderedDict[bytes, tuple[float, bool]] = OrderedDict()

    async def admit(self, context: Context, need: Requirement) -> Admission:
        """The caller, once it may go on; a refusal raises a core error."""
        checks = self.checks
        if checks is None:
            return OPEN_ADMISSION
        address = client_address(context)
        metadata = context.invocation_metadata()
        if self.anonymous is not None and _without_credential(metadata) and _marked_anonymous(metadata):
            if not self.anonymous.may(need):
                raise errors.PermissionDenied(refusal(self.anonymous, need, None))
            current.set(self.anonymous)
            return Admission(self.anonymous, None)
        credential = self._credential(metadata)
        user = credential.values[0] if credential.kind == "password" and credential.values[0] else None
        try:
            if checks.throttle is not None:
                await checks.throttle.check(address, user)
            principal = await self._check(checks, credential)
            if principal is None:
                metrics.credential_failed(credential.kind)
                if checks.throttle is not None:
                    await checks.throttle.failed(address, user)
                raise errors.Unauthenticated(_PROBLEMS[credential.kind])
            if not principal.may(need):
                raise errors.PermissionDenied(refusal(principal, need, credential.kind))
            current.set(principal)
            await self._limit(checks, principal)
        except errors.CoreError:
            raise
        except Exception as exc:  # the store cannot be reached: say so, and nothing of its text
            log.exception("checking a credential failed")
            raise errors.Unavailable("credentials cannot be checked now: retry in a moment") from exc
        return Admission(principal, credential)

    def _credential(self, metadata: Any) -> Credential:
        if (basic := basic_credentials(metadata)) is not None:
            return Credential("password", basic)
        if (token := bearer(metadata)) is not None:
            return Credential("token", (token,))
        api_key, secret_key = api_keys(metadata)
        if api_key is None and secret_key is None:
            raise errors.Unauthenticated(self.missing)
        return Credential("keys", (api_key or "", secret_key or ""))

    @staticmethod
    async def _check(checks: Checks, credential: Credential) -> Principal | None:
        values = credential.values
        if credential.kind == "password":
            return await checks.password(values[0], values[1]) if values[0] else None
        if credential.kind == "token":
            return await checks.token(values[0])
        return await checks.api_keys(values[0], values[1]) if all(values) else None

    async def _limit(self, checks: Checks, principal: Principal) -> None:
        if checks.limit is None:
            return
        if principal.account_id is not None:
            key = f"account:{principal.account_id}"
        elif self.limit_tokens:
            key = f"caller:{principal.token_id}"
        else:
            return
        verdict = await checks.limit.hit(key)
        allowance.set(Allowance(verdict.limit, verdict.remaining, verdict.retry_after))
        if not verdict.allowed:
            raise errors.ResourceExhausted(
                f"more than {verdict.limit} requests a minute for this caller: retry in {verdict.retry_after} s",
                retry_after=verdict.retry_after,
            )

    async def still_valid(self, credential: Credential) -> bool:
        """Whether the credential still works: asked by open streams now and then,
        answered from a short memory so that many streams of one caller cost one read."""
        checks = self.checks
        if checks is None:
            return True
        key = credential.fingerprint
        seen = self._valid.get(key)
        now = time.monotonic()
        if seen is not None and now - seen[0] < self.recheck / 2:
            return seen[1]
        try:
            ok = await self._check(checks, credential) is not None
        except Exception:
            return True  # the store is unreachable: that is not a revocation
        self._remember(credential, ok)
        return ok

    def _remember(self, credential: Credential, ok: bool) -> None:
        key = credential.fingerprint
        self._valid[key] = (time.monotonic(), ok)
        self._valid.move_to_end(key)
        while len(self._valid) > 10_000:
            self._valid.popitem(last=False)


def _without_credential(metadata: Any) -> bool:
    return not any(key in ("authorization", "x-api-key", "x-api-secret-key") for key, _ in metadata or ())


def _marked_anonymous(metadata: Any) -> bool:
    return any(key == ANONYMOUS_HEADER and value == "1" for key, value in metadata or ())


# What a refused call needed, and which roles have it.
_NEEDS = {
    Requirement.OPERATOR: ("cancelling a task needs an operator or writer token", "operator"),
    Requirement.WRITER: ("writing tasks needs a writer token", "writer"),
}


def refusal(principal: Principal, need: Requirement, kind: str | None) -> str:
    """Why a caller may not make a call, and what would let it: one sentence."""
    needed, role = _NEEDS.get(need, (f"this call needs the {need.value} role", need.value))
    if kind == "token":
        held = principal.role.value
        article = "an" if held[0] in "aeiou" else "a"
        return f"{needed}; this token is {article} {held} (tasktrail tokens create --role {role} makes one)"
    whom = {
        "keys": "a cloud account's API keys",
        "password": "an enterprise user",
        None: "a caller without a credential",
    }.get(kind, "this credential")
    may = {"reader": "only reads", "operator": "only reads and cancels"}.get(principal.role.value, "may not")
    return f"{needed}; {whom} {may} tasks"


_PROBLEMS = {
    "password": "the user name or password is wrong",
    "token": "the token is unknown or revoked",
    "keys": "the API keys are missing, unknown or revoked: x-api-key and x-api-secret-key",
}

OPEN = Gate(None)
