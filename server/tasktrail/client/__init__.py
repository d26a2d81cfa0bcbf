"""The tasktrail Python SDK.

- `TaskClient` and `AsyncTaskClient`: read tasks (get, list with automatic
  paging, log, wait, cancel, and follow a log live, resuming by itself).
- `AsyncTaskWriter`: create tasks, and run one as its worker with
  `async with writer.task(task_id) as t:`.
- `RetryPolicy`, `Timeouts`, `WorkerPolicy`: how calls are retried and timed.
- Errors: every failed call raises a `TasktrailError` subclass named after its
  status code (`NotFound`, `PermissionDenied`, `FailedPrecondition`,
  `Unavailable`, …), with the server's reason; the raw gRPC error is its
  `__cause__`.

Every client takes a target (default TASKTRAIL_TARGET or 127.0.0.1:50051) and
a token (default TASKTRAIL_TOKEN, or the development token of `tasktrail up`).
"""

from tasktrail.client._base import (
    DEFAULT_TARGET,
    SCOPES,
    STATUS_NAMES,
    STATUSES,
    TERMINAL,
    TaskStatus,
    default_target,
    default_token,
    wait_request,
)
from tasktrail.client.errors import (
    Aborted,
    AlreadyExists,
    Cancelled,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    TasktrailError,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)
from tasktrail.client.policies import NO_RETRY, RetryPolicy, Timeouts, WorkerPolicy
from tasktrail.client.reader import AsyncFollow, AsyncTaskClient, Follow, FollowError, TaskClient
from tasktrail.client.worker import AsyncTaskWriter, LeaseLost, LogRefused, TaskCanceled, TaskFailed, WorkerTask

__all__ = [
    "DEFAULT_TARGET",
    "NO_RETRY",
    "SCOPES",
    "STATUSES",
    "STATUS_NAMES",
    "TERMINAL",
    "Aborted",
    "AlreadyExists",
    "AsyncFollow",
    "AsyncTaskClient",
    "AsyncTaskWriter",
    "Cancelled",
    "DeadlineExceeded",
    "FailedPrecondition",
    "Follow",
    "FollowError",
    "Internal",
    "InvalidArgument",
    "LeaseLost",
    "LogRefused",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "RetryPolicy",
    "TaskCanceled",
    "TaskClient",
    "TaskFailed",
    "TaskStatus",
    "TasktrailError",
    "Timeouts",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "WorkerPolicy",
    "WorkerTask",
    "default_target",
    "default_token",
    "wait_request",
]
