"""The cloud dialect: the Redis Cloud task API (`/v1/tasks`, port 8443).

Tasks of scope `account`, each account seeing only its own. Field names,
status words, descriptions, timestamps (ISO 8601, UTC, milliseconds), the
`response` object, both forms of links, the error shape and the rate limit are
the original's; docs/cloud-api.md lists each decision.
"""

from __future__ import annotations

import http
import time
from dataclasses import dataclass

from tasktrail.api import Context, Headers, HttpError, HttpErrors, Surface, caller_access, endpoint
from tasktrail.auth.gate import Gate
from tasktrail.auth.principal import allowance, current
from tasktrail.cloud.v1 import cloud_pb2 as pb
from tasktrail.cloud.v1 import cloud_pb2_grpc as pb_grpc
from tasktrail.core import errors
from tasktrail.core.ids import is_canonical_uuid
from tasktrail.core.model import Access, Scope, Status, Task
from tasktrail.core.tasks import TaskCore

STATUS = {
    Status.PENDING: "received",
    Status.RUNNING: "processing-in-progress",
    Status.CANCELING: "processing-in-progress",
    Status.COMPLETED: "processing-completed",
    Status.FAILED: "processing-error",
    Status.CANCELED: "processing-error",
}
DESCRIPTIONS = {
    "received": "Task request received and is being queued for processing.",
    "processing-in-progress": "Task request is being processed.",
    "processing-completed": (
        "Request processing completed successfully and its resources are now being provisioned / de-provisioned."
    ),
    "processing-error": "Task request failed during processing. See error information for failure details.",
}
INT32 = range(-(2**31), 2**31)
RETRY_AFTER_HEADER = "x-rate-limit-retry-after-seconds"
REMAINING_HEADER = "x-rate-limit-remaining"


@dataclass(frozen=True, slots=True)
class CloudSettings:
    # GET /v1/tasks lists the tasks submitted in this window (seconds).
    list_window: float = 10 * 86_400.0
    # Requests a minute per account key.
    rate_limit: int = 400
    rate_window: float = 60.0


def status_line(code: int) -> str:
    """ "404 NOT_FOUND": the code and its name, as Spring's HttpStatus writes it."""
    try:
        return f"{code} {http.HTTPStatus(code).name}"
    except ValueError:
        return f"{code} UNKNOWN"


def error(code: int, kind: str, description: str, headers: tuple[tuple[str, str], ...] = ()) -> HttpError:
    """An answer in the cloud shape: {"error": {"type", "status", "description"}}."""
    body = {"error": {"type": kind, "status": status_line(code), "description": description}}
    return HttpError(code, body, headers)


def iso_ms(us: int) -> str:
    """ISO 8601 in UTC with milliseconds: 2019-08-08T09:07:39.826Z."""
    seconds, rest = divmod(us, 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{rest // 1000:03d}Z"


def _int32(text: str) -> int | None:
    try:
        value = int(text)
    except ValueError:
        return None
    return value if value in INT32 else None


def render(task: Task, base: str) -> pb.Task:
    status = STATUS[task.status]
    out = pb.Task(
        task_id=task.task_id,
        command_type=task.type,
        status=status,
        description=DESCRIPTIONS[status],
        timestamp=iso_ms(task.status_changed_at),
    )
    result = task.result
    if task.status in (Status.RUNNING, Status.CANCELING):
        out.response.SetInParent()  # {} while processing, as the API answers it
    elif task.status is Status.COMPLETED:
        out.response.SetInParent()
        if result is not None:
            if (resource_id := _int32(result.resource_id)) is not None:
                out.response.resource_id = resource_id
            if (additional := _int32(result.additional_resource_id)) is not None:
                out.response.additional_resource_id = additional
            if result.resource:
                out.response.resource.update(result.resource)
    elif task.status is Status.FAILED:
        failure = task.error
        code = failure.http_status if failure is not None and failure.http_status else 500
        out.response.error.CopyFrom(
            pb.TaskErrorInfo(
                type=(failure.code if failure is not None and failure.code else "GENERAL_ERROR"),
                status=status_line(code),
                description=failure.message if failure is not None else "",
            )
        )
        if result is not None and result.additional_info:
            out.response.additional_info = result.additional_info
    elif task.status is Status.CANCELED:
        out.response.error.CopyFrom(
            pb.TaskErrorInfo(type="TASK_CANCELED", status=status_line(409), description="The task was canceled.")
        )
    # The documentation's two shapes: a received task links to itself as `task`
    # (getTaskStatusUpdates), a later one as `self`; a completed one first links
    # its resource.
    href = f"{base}/v1/tasks/{task.task_id}"
    if task.status is Status.COMPLETED and result is not None and result.resource_path:
        resource = pb.HalLink(href=base + result.resource_path, type="GET")
        if result.resource_title:
            resource.title = result.resource_title
        out.hal_links.resource.CopyFrom(resource)
        out.links.add(rel="resource", type="GET", href=base + result.resource_path)
    if task.status is Status.PENDING:
        out.hal_links.task.CopyFrom(pb.HalLink(href=href, title="getTaskStatusUpdates", type="GET"))
        out.links.add(rel="task", type="GET", href=href)
    else:
        out.hal_links.self.CopyFrom(pb.HalLink(href=href, type="GET"))
        out.links.add(rel="self", type="GET", href=href)
    return out


def base_url(context: Context) -> str:
    """https://<the host the client asked for>: links are absolute, as the API's are."""
    host, scheme = "localhost", "https"
    for key, value in context.invocation_metadata() or ():
        if key == "x-tasktrail-host" and isinstance(value, str) and value:
            host = value
        elif key == "x-forwarded-proto" and isinstance(value, str) and value:
            scheme = value
    return f"{scheme}://{host}"


INTERNAL = error(500, "GENERAL_ERROR", "General error occurred")


def _translate(exc: errors.CoreError) -> HttpError:
    if isinstance(exc, errors.NotFound):
        return error(404, "TASK_NOT_FOUND", "Task not found")
    if isinstance(exc, errors.Unauthenticated):
        return error(401, "UNAUTHORIZED", exc.message)
    if isinstance(exc, errors.PermissionDenied):
        return error(403, "FORBIDDEN", exc.message)
    if exc.reason == errors.STORE_FULL:
        return error(507, "INSUFFICIENT_STORAGE", exc.message, (("retry-after", "5"),))
    if isinstance(exc, errors.ResourceExhausted):
        retry = (RETRY_AFTER_HEADER, str(exc.retry_after))
        return error(429, "TOO_MANY_REQUESTS", exc.message, (retry, (REMAINING_HEADER, "0")))
    if isinstance(exc, errors.Unavailable):
        return error(503, "SERVICE_UNAVAILABLE", exc.message, (("retry-after", str(exc.retry_after)),))
    if isinstance(exc, errors.InvalidArgument):
        return error(400, "BAD_REQUEST", exc.message)
    # Anything else is the general error.
    return INTERNAL


ERRORS = HttpErrors(_translate, INTERNAL)


async def _limit_headers(context: Context) -> Headers:
    left = allowance.get()
    return () if left is None else ((REMAINING_HEADER, str(left.remaining)),)


class CloudTaskService(pb_grpc.CloudTaskServiceServicer):
    def __init__(self, core: TaskCore, gate: Gate, settings: CloudSettings) -> None:
        self.core = core
        self.settings = settings
        # The gate counts every request of an account (on any port) against its
        # limit; every answer here says what is left of it.
        self.surface = Surface("cloud", gate, ERRORS, check=_limit_headers)

    @staticmethod
    def account() -> Access:
        """The caller's account (every account on a server run without credentials)."""
        return caller_access((Scope.ACCOUNT,))

    @endpoint
    async def ListTasks(self, request: pb.ListTasksRequest, context: Context) -> pb.ListTasksResponse:
        principal = current.get()
        if principal is None or principal.account_id is None:
            raise error(403, "FORBIDDEN", "the cloud task list needs an account's API keys")
        window = int(self.settings.list_window * 1_000_000)
        found = await self.core.recent(Scope.ACCOUNT, principal.account_id, window, self.core.limits.max_page_size)
        base = base_url(context)
        return pb.ListTasksResponse(tasks=[render(t, base) for t in found])

    @endpoint
    async def GetTask(self, request: pb.GetTaskRequest, context: Context) -> pb.Task:
        if not is_canonical_uuid(request.task_id.lower()):
            raise error(400, "INVALID_TASK_ID", f"taskId {request.task_id!r} is not a UUID")
        task = await self.core.get_task(request.task_id.lower(), self.account())
        return render(task, base_url(context))


__all__ = ["CloudSettings", "CloudTaskService"]
