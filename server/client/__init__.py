"""The tasktrail Python SDK.

- `TaskClient` and `AsyncTaskClient`: read tasks (get, list with automatic
  paging, log, wait, cancel, and follow a log live, resuming by itself).
- `AsyncTaskWriter`: create tasks, and run one as its worker with
  `async with writer.task(task_id) as t:`.
- `RetryPolicy`, `Timeouts`, `WorkerPolicy`: how calls are retried and timed.

Every client takes a target (default TASKTRAIL_TARGET or 127.0.0.1:50051) and
a token (default TASKTRAIL_TOKEN, or the development token of `tasktrail up`).
"""

from tasktrail.client.policies import NO_RETRY, RetryPolicy, Timeouts, WorkerPolicy
from tasktrail.client.reader import AsyncFollow, AsyncTaskClient, Follow, FollowError, TaskClient
from tasktrail.client.worker import AsyncTaskWriter, LeaseLost, TaskCanceled, TaskFailed, WorkerTask

__all__ = [
    "NO_RETRY",
    "AsyncFollow",
    "AsyncTaskClient",
    "AsyncTaskWriter",
    "Follow",
    "FollowError",
    "LeaseLost",
    "RetryPolicy",
    "TaskCanceled",
    "TaskClient",
    "TaskFailed",
    "Timeouts",
    "WorkerPolicy",
    "WorkerTask",
]
