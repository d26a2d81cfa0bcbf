"""Typed errors of the SDK, one class per gRPC status code.

As python-api-core maps codes to exceptions: every call of the SDK raises a `TasktrailError` subclass rather than a raw
`grpc.RpcError`: catch `NotFound`, `PermissionDenied`, `FailedPrecondition`,
`Unavailable` and the rest by name. Each carries the server's reason (the
`google.rpc.ErrorInfo` the server attaches, such as `TASK_NOT_FOUND` or
`LEASE_LOST`) and message; the raw `grpc.RpcError` stays reachable as
`__cause__`. The errors are `grpc.RpcError`s themselves, with `code()` and
`details()`, so code written against raw gRPC errors keeps working.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

ERROR_DOMAIN = "tasktrail.dev"


class TasktrailError(grpc.RpcError):
    """A call the server (or the channel) refused or could not complete.

    Attributes:
        status: The gRPC status code.
        message: The server's message.
        reason: The `ErrorInfo` reason the server attached (for example
            `TASK_NOT_FOUND`), or "" when there is none.
    """

    status: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, *, reason: str = "", status: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        if status is not None:
            self.status = status

    def code(self) -> grpc.StatusCode:
        """The status code, as `grpc.RpcError.code()` gives it."""
        return self.status

    def details(self) -> str:
        """The message, as `grpc.RpcError.details()` gives it."""
        return self.message

    def __str__(self) -> str:
        reason = f" ({self.reason})" if self.reason else ""
        return f"{self.status.name}{reason}: {self.message}"


class InvalidArgument(TasktrailError):
    """The request is malformed or breaks a limit."""

    status = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(TasktrailError):
    """No such task, or the credential does not cover it."""

    status = grpc.StatusCode.NOT_FOUND


class AlreadyExists(TasktrailError):
    """A task with this id or request id exists with other content."""

    status = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(TasktrailError):
    """The credential may not make this call."""

    status = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(TasktrailError):
    """No credential, or one the server does not know."""

    status = grpc.StatusCode.UNAUTHENTICATED


class FailedPrecondition(TasktrailError):
    """The task is not in a state that allows the call (an ended task, a lost lease)."""

    status = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(TasktrailError):
    """The call was aborted (a conflict with a concurrent call)."""

    status = grpc.StatusCode.ABORTED


class ResourceExhausted(TasktrailError):
    """A limit was reached (a rate limit, a full disk); retry later."""

    status = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(TasktrailError):
    """The service could not be reached or could not answer; the call may be retried."""

    status = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(TasktrailError):
    """No answer within the call's deadline; the call may or may not have taken effect."""

    status = grpc.StatusCode.DEADLINE_EXCEEDED


class Cancelled(TasktrailError):
    """The call was cancelled before it completed."""

    status = grpc.StatusCode.CANCELLED


class Internal(TasktrailError):
    """The server failed; its log says why."""

    status = grpc.StatusCode.INTERNAL


class Unimplemented(TasktrailError):
    """The server does not know the method (an older server)."""

    status = grpc.StatusCode.UNIMPLEMENTED


_BY_CODE: dict[grpc.StatusCode, type[TasktrailError]] = {
    cls.status: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        PermissionDenied,
        Unauthenticated,
        FailedPrecondition,
        Aborted,
        ResourceExhausted,
        Unavailable,
        DeadlineExceeded,
        Cancelled,
        Internal,
        Unimplemented,
    )
}


def reason_of(error: grpc.RpcError) -> str:
    """The ErrorInfo reason in a failed call's `grpc-status-details-bin`, or ""."""
    trailing = getattr(error, "trailing_metadata", None)
    for key, value in (trailing() if callable(trailing) else None) or ():
        if key != "grpc-status-details-bin" or not isinstance(value, bytes):
            continue
        status = status_pb2.Status()
        try:
            status.ParseFromString(value)
        except Exception:
            return ""
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                return str(info.reason)
    return ""


def from_rpc_error(error: grpc.RpcError) -> TasktrailError:
    """The typed error of a failed call (raise it `from error`)."""
    code: Any = getattr(error, "code", None)
    status = code() if callable(code) else grpc.StatusCode.UNKNOWN
    details: Any = getattr(error, "details", None)
    message = (details() if callable(details) else None) or str(error)
    kind = _BY_CODE.get(status, TasktrailError)
    return kind(message, reason=reason_of(error), status=status)
