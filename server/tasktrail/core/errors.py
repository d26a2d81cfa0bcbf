"""The core's errors. Each carries a canonical status code (by its gRPC name,
so the core needs no gRPC) and a stable reason that every surface maps to its
own status codes and bodies."""

from __future__ import annotations


class CoreError(Exception):
    code: str = "UNKNOWN"
    reason: str = "UNKNOWN"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason


class NotFound(CoreError):
    code = "NOT_FOUND"
    reason = "TASK_NOT_FOUND"


class InvalidArgument(CoreError):
    code = "INVALID_ARGUMENT"
    reason = "INVALID_ARGUMENT"


class AlreadyExists(CoreError):
    code = "ALREADY_EXISTS"
    reason = "TASK_ALREADY_EXISTS"


class PermissionDenied(CoreError):
    """A writer's token does not cover the scope it writes to."""

    code = "PERMISSION_DENIED"
    reason = "PERMISSION_DENIED"


class FailedPrecondition(CoreError):
    """An illegal transition, a write to a terminal task, a refused cancel."""

    code = "FAILED_PRECONDITION"
    reason = "FAILED_PRECONDITION"


class Unauthenticated(CoreError):
    """No credential, or one that is unknown, revoked or wrong."""

    code = "UNAUTHENTICATED"
    reason = "UNAUTHENTICATED"


# A request limit (or too many password checks at once): RESOURCE_EXHAUSTED, 429 on REST.
RATE_LIMITED = "RATE_LIMITED"


class ResourceExhausted(CoreError):
    """A limit was reached: retry after `retry_after` seconds."""

    code = "RESOURCE_EXHAUSTED"
    reason = RATE_LIMITED

    def __init__(self, message: str, *, retry_after: int = 1, reason: str | None = None) -> None:
        super().__init__(message, reason=reason)
        self.retry_after = retry_after


class Unavailable(CoreError):
    """The service cannot answer now; the same call may succeed later."""

    code = "UNAVAILABLE"
    reason = "UNAVAILABLE"
    retry_after = 1


# Reasons a dialect maps to its own answer (e.g. CRDB 406 vs 409).
TASK_TERMINAL = "TASK_TERMINAL"
TASK_IN_COMMIT_PHASE = "TASK_IN_COMMIT_PHASE"
ILLEGAL_TRANSITION = "ILLEGAL_TRANSITION"
LOG_SEALED = "LOG_SEALED"
TASK_HELD = "TASK_HELD"
LEASE_LOST = "LEASE_LOST"
LOG_FULL = "LOG_FULL"
APPEND_REUSED = "APPEND_ID_REUSED"
SERVER_STOPPING = "SERVER_STOPPING"
TOO_MANY_FAILURES = "TOO_MANY_FAILURES"
# The store has no room left (a full disk): RESOURCE_EXHAUSTED, 507 on REST.
STORE_FULL = "STORE_FULL"
# The store cannot be reached (the database down, its file gone): UNAVAILABLE, 503.
STORE_UNAVAILABLE = "STORE_UNAVAILABLE"
REVOKED = "CREDENTIAL_REVOKED"
