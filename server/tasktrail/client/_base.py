"""What the sync and async clients share.

Channels, credentials, requests and retries: only the way a call is awaited
differs between the two.
"""

from __future__ import annotations

import asyncio
import enum
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc

from tasktrail.client.errors import from_rpc_error
from tasktrail.client.policies import RetryPolicy
from tasktrail.v1 import task_pb2, task_service_pb2

T = TypeVar("T")
Metadata = tuple[tuple[str, str], ...]

SCOPES = {
    "database": task_pb2.SCOPE_DATABASE,
    "host": task_pb2.SCOPE_HOST,
    "account": task_pb2.SCOPE_ACCOUNT,
    "crdb": task_pb2.SCOPE_CRDB,
}
STATUSES = {
    "pending": task_pb2.TASK_STATUS_PENDING,
    "running": task_pb2.TASK_STATUS_RUNNING,
    "canceling": task_pb2.TASK_STATUS_CANCELING,
    "completed": task_pb2.TASK_STATUS_COMPLETED,
    "failed": task_pb2.TASK_STATUS_FAILED,
    "canceled": task_pb2.TASK_STATUS_CANCELED,
}
STATUS_NAMES = {v: k for k, v in STATUSES.items()}


class TaskStatus(enum.IntEnum):
    """A task's status, by name: `TaskStatus(task.status)` of a `Task` message.

    An `int` (the protobuf enum's value), so it compares with the messages'
    fields; it prints as the status's word (`completed`).
    """

    UNSPECIFIED = task_pb2.TASK_STATUS_UNSPECIFIED
    PENDING = task_pb2.TASK_STATUS_PENDING
    RUNNING = task_pb2.TASK_STATUS_RUNNING
    CANCELING = task_pb2.TASK_STATUS_CANCELING
    COMPLETED = task_pb2.TASK_STATUS_COMPLETED
    FAILED = task_pb2.TASK_STATUS_FAILED
    CANCELED = task_pb2.TASK_STATUS_CANCELED

    def __str__(self) -> str:
        return self.name.lower()

    @property
    def terminal(self) -> bool:
        """Whether the task has ended (completed, failed or canceled)."""
        return self in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELED)


TERMINAL = frozenset({task_pb2.TASK_STATUS_COMPLETED, task_pb2.TASK_STATUS_FAILED, task_pb2.TASK_STATUS_CANCELED})
DEFAULT_TARGET = "127.0.0.1:50051"


def default_target() -> str:
    return os.environ.get("TASKTRAIL_TARGET", DEFAULT_TARGET)


def default_token(data_dir: Path | None = None) -> str | None:
    """TASKTRAIL_TOKEN, or the development token `tasktrail up` keeps in its data directory."""
    token = os.environ.get("TASKTRAIL_TOKEN")
    if token:
        return token
    path = (data_dir or Path(os.environ.get("TASKTRAIL_DATA_DIR", "data"))) / "dev-token"
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def metadata(token: str | None) -> Metadata:
    return (("authorization", f"Bearer {token}"),) if token else ()


def scope_value(scope: str | int | None) -> task_pb2.Scope.ValueType:
    if scope is None or scope == "":
        return task_pb2.SCOPE_UNSPECIFIED
    if isinstance(scope, str):
        try:
            return SCOPES[scope]
        except KeyError:
            raise ValueError(f"unknown scope {scope!r}: one of {', '.join(SCOPES)}") from None
    return task_pb2.Scope.ValueType(scope)


def status_values(statuses: Sequence[str | int]) -> list[task_pb2.TaskStatus.ValueType]:
    out = []
    for status in statuses:
        if isinstance(status, str):
            if status not in STATUSES:
                raise ValueError(f"unknown status {status!r}: one of {', '.join(STATUSES)}")
            out.append(STATUSES[status])
        else:
            out.append(task_pb2.TaskStatus.ValueType(status))
    return out


def list_request(
    scope: str | int | None,
    entity_id: str | None,
    statuses: Sequence[str | int],
    types: Sequence[str],
    ascending: bool,
    page_size: int,
) -> task_service_pb2.ListTasksRequest:
    return task_service_pb2.ListTasksRequest(
        scope=scope_value(scope),
        entity_id=entity_id or "",
        statuses=status_values(statuses),
        types=list(types),
        sort_order=task_pb2.SORT_ORDER_ASCENDING if ascending else task_pb2.SORT_ORDER_DESCENDING,
        page_size=page_size,
    )


def wait_request(task_id: str, seconds: float) -> task_service_pb2.WaitTaskRequest:
    request = task_service_pb2.WaitTaskRequest(task_id=task_id)
    request.timeout.FromMilliseconds(max(0, int(seconds * 1000)))
    return request


def code_of(error: grpc.RpcError) -> grpc.StatusCode | None:
    code = getattr(error, "code", None)
    return code() if callable(code) else None


def call_sync(fn: Callable[[], T], policy: RetryPolicy) -> T:
    """`fn`, retried as `policy` says; a failure raises the SDK's typed error."""
    started = time.monotonic()
    delays = policy.delays()
    while True:
        try:
            return fn()
        except grpc.RpcError as error:
            delay = next(delays)
            if not policy.retries(code_of(error)) or time.monotonic() + delay - started > policy.deadline:
                raise from_rpc_error(error) from error
            time.sleep(delay)


async def call_async(fn: Callable[[], Awaitable[T]], policy: RetryPolicy) -> T:
    """`fn`, retried as `policy` says; a failure raises the SDK's typed error."""
    started = time.monotonic()
    delays = policy.delays()
    while True:
        try:
            return await fn()
        except grpc.RpcError as error:
            delay = next(delays)
            if not policy.retries(code_of(error)) or time.monotonic() + delay - started > policy.deadline:
                raise from_rpc_error(error) from error
            await asyncio.sleep(delay)


CHANNEL_OPTIONS: Sequence[tuple[str, Any]] = (
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_permit_without_calls", 1),
    # A restarted server or Envoy serves again within a second or two: gRPC's own
    # reconnect backoff (1 s, growing to 120 s) would keep the channel away for
    # far longer than the outage. The SDK's RetryPolicy bounds the whole wait.
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 5_000),
)
