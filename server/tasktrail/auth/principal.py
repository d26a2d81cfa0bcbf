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
    """What a caller may do (docs/security.md): a reader reads; an operator reads
    and cancels; a writer does everything (creates, claims, updates and logs tasks,
    and cancels them). Grants say which tasks, the role what with them."""

    READER = "reader"
    OPERATOR = "operator"
    WRITER = "writer"


class Requirement(enum.Enum):
    """What a call needs of its caller: each role meets its own need and those below it."""

    READER = "reader"
    OPERATOR = "operator"
    WRITER = "writer"


_RANK = {Role.READER: 0, Role.OPERATOR: 1, Role.WRITER: 2}
_NEEDED = {Requirement.READER: 0, Requirement.OPERATOR: 1, Requirement.WRITER: 2}


def meets(role: Role, need: Requirement) -> bool:
    """Whether a caller of `role` may make a call that needs `need`."""
    return _RANK[role] >= _NEEDED[need]


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

    def may(self, need: Requirement) -> bool:
        return meets(self.role, need)


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
