"""Who is calling, and what they may see: the leaf every other part of `auth`
(and every surface) shares."""

from __future__ import annotations

import contextvars
import enum
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from tasktrail.core.model import Access, Range, Scope


class Role(enum.Enum):
    READER = "reader"
    WRITER = "writer"


class Requirement(enum.Enum):
    """What a call needs of its caller."""

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
class Allowance:
    """What is left of a caller's request limit in the current window."""

    limit: int
    remaining: int
    # Seconds until the window ends.
    retry_after: int


# The caller of the current call, and what is left of its request limit, set by the gate.
current: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("tasktrail_principal", default=None)
allowance: contextvars.ContextVar[Allowance | None] = contextvars.ContextVar("tasktrail_allowance", default=None)


def parse_grant(text: str) -> Range:
    """A grant: a whole scope ("database") or one entity of it ("account:1234")."""
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
    """How random (256-bit) secrets are kept: a fast hash is a safe one for them."""
    return hashlib.sha256(secret.encode()).hexdigest()
