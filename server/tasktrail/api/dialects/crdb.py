"""The enterprise dialect: the Redis Enterprise Active-Active task API
(`/v1/crdb_tasks`, port 9443, HTTP basic auth).

Tasks of scope `crdb`: the entity is the CRDB's guid, the type its operation.
Field names, status words, timestamps (whole seconds, `Z`), the cancel codes
(200, 404, 406, 409), the error shape and the `X-Result-TTL` header are the
original's; docs/enterprise-api.md lists each decision.
"""

from __future__ import annotations

import json
import re
from typing import Any

from google.api import httpbody_pb2
from google.protobuf import json_format

from tasktrail.api import Context, HttpError, HttpErrors, Surface, caller_access, endpoint
from tasktrail.api.dialects.rendering import rfc3339
from tasktrail.auth.gate import Gate
from tasktrail.auth.principal import Requirement
from tasktrail.core import errors
from tasktrail.core.model import Access, Scope, Status, Task, TaskQuery
from tasktrail.core.tasks import TaskCore
from tasktrail.crdb.v1 import crdb_pb2 as pb
from tasktrail.crdb.v1 import crdb_pb2_grpc as pb_grpc

STATUS = {
    Status.PENDING: "queued",
    Status.RUNNING: "started",
    Status.CANCELING: "started",
    Status.COMPLETED: "finished",
    Status.FAILED: "failed",
    Status.CANCELED: "failed",
}
ACTIVE = (Status.PENDING, Status.RUNNING, Status.CANCELING)
REALM = "tasktrail"
RESULT_TTL_HEADER = "x-result-ttl"
# On a list cut at the server's maximum: how many tasks it holds.
TRUNCATED_HEADER = "x-tasktrail-truncated"
# The longest X-Result-TTL honoured: a year.
MAX_RESULT_TTL = 365 * 86_400
_SECONDS = re.compile(r"[0-9]{1,12}")


def error(code: int, error_code: str, description: str, headers: tuple[tuple[str, str], ...] = ()) -> HttpError:
    """An answer in the API's error shape: {"error_code", "description"}."""
    return HttpError(code, {"error_code": error_code, "description": description}, headers)


seconds = rfc3339  # UTC, whole seconds: 2022-10-12T09:33:41Z, as the RS API writes them


def render(task: Task, verbose: bool) -> pb.CrdbTask:
    out = pb.CrdbTask(id=task.task_id, status=STATUS[task.status])
    if task.entity_id:
        out.crdb_guid = task.entity_id
    failure = task.error
    if task.status is Status.CANCELED:
        forced = " (forced)" if task.cancel_forced else ""
        out.errors.add(cluster_name="", description=f"the task was canceled{forced}", error_code="canceled")
    elif task.status is Status.FAILED and failure is not None:
        if failure.details:
            for d in failure.details:
                out.errors.add(cluster_name=d.target, description=d.message, error_code=d.code or "internal_error")
        else:
            out.errors.add(cluster_name="", description=failure.message, error_code=failure.code or "internal_error")
    if not verbose:
        return out
    out.operation = task.type
    out.progress.SetInParent()
    if task.progress is not None:
        out.progress.worker = task.progress.step
        for target in task.progress.targets:
            out.progress.clusters.add(name=target.name, progress=target.step)
    if task.started_at is not None:
        out.started = seconds(task.started_at)
    if task.completed_at is not None:
        out.ended = seconds(task.completed_at)
    if task.worker_name:
        out.worker_name = task.worker_name
    return out


def to_json(task: pb.CrdbTask) -> dict[str, Any]:
    """The task as Envoy's transcoder writes it on this port."""
    return json_format.MessageToDict(task, always_print_fields_with_no_presence=True, preserving_proto_field_name=True)


def _translate(exc: errors.CoreError) -> HttpError:
    if isinstance(exc, errors.NotFound):
        return error(404, "task_not_found", "Task not found")
    if exc.reason == errors.TASK_IN_COMMIT_PHASE:
        return error(406, "task_in_commit_phase", "The task is in its commit phase: only a forced cancel stops it")
    if exc.reason == errors.TASK_TERMINAL:
        return error(406, "task_not_cancelable", "The task has already ended: it cannot be canceled")
    if isinstance(exc, errors.Unauthenticated):
        # 401 with a Basic challenge, as a Redis Enterprise cluster answers.
        return error(401, "unauthorized", exc.message, (("www-authenticate", f'Basic realm="{REALM}"'),))
    if isinstance(exc, errors.PermissionDenied):
        # A reader's token over gRPC: 403, as the cluster answers a role without the permission.
        return error(403, "forbidden", exc.message)
    if exc.reason == errors.STORE_FULL:
        return error(507, "insufficient_storage", exc.message, (("retry-after", "5"),))
    if isinstance(exc, errors.ResourceExhausted):
        return error(429, "too_many_requests", exc.message, (("retry-after", str(exc.retry_after)),))
    if isinstance(exc, errors.Unavailable):
        return error(503, "service_unavailable", exc.message, (("retry-after", str(exc.retry_after)),))
    return error(400, "invalid_request", exc.message)


ERRORS = HttpErrors(_translate, internal=error(500, "internal_error", "Internal server error"))


def result_ttl(context: Context) -> int | None:
    """X-Result-TTL in seconds, when the request carries it."""
    for key, value in context.invocation_metadata() or ():
        if key == RESULT_TTL_HEADER and isinstance(value, str):
            text = value.strip()
            # ASCII digits only: str.isdigit() takes "²", which int() refuses.
            if not _SECONDS.fullmatch(text) or int(text) > MAX_RESULT_TTL:
                raise error(
                    400,
                    "invalid_header",
                    f"X-Result-TTL must be a whole number of seconds from 0 to {MAX_RESULT_TTL}, not {value!r}",
                )
            return int(text)
    return None


class CrdbTaskService(pb_grpc.CrdbTaskServiceServicer):
    def __init__(self, core: TaskCore, gate: Gate) -> None:
        self.core = core
        self.surface = Surface("crdb", gate, ERRORS)

    @staticmethod
    def access() -> Access:
        return caller_access((Scope.CRDB,))

    @endpoint
    async def ListCrdbTasks(self, request: pb.ListCrdbTasksRequest, context: Context) -> httpbody_pb2.HttpBody:
        query = TaskQuery(
            ranges=self.access().ranges(),
            statuses=ACTIVE,
            types=(),
            descending=False,
            after=None,
            limit=self.core.limits.max_page_size,
        )
        page = await self.core.list_tasks(query)
        if page.has_more:  # a bare array has no room to say it: a header does
            await context.send_initial_metadata(((TRUNCATED_HEADER, str(len(page.tasks))),))
        body = json.dumps([to_json(render(t, verbose=False)) for t in page.tasks], separators=(",", ":"))
        return httpbody_pb2.HttpBody(content_type="application/json", data=body.encode())

    @endpoint
    async def GetCrdbTask(self, request: pb.GetCrdbTaskRequest, context: Context) -> pb.CrdbTask:
        keep = result_ttl(context)
        if keep is None:
            task = await self.core.get_task(request.task_id, self.access())
        else:
            task = await self.core.keep_result(request.task_id, self.access(), keep * 1_000_000)
        return render(task, request.verbose)

    @endpoint(need=Requirement.OPERATOR)
    async def CancelCrdbTask(self, request: pb.CancelCrdbTaskRequest, context: Context) -> pb.CrdbTask:
        done = await self.core.cancel(request.task_id, self.access(), force=request.force)
        if not done.requested and done.task.status is Status.CANCELED:
            raise _translate(errors.FailedPrecondition("canceled", reason=errors.TASK_TERMINAL))
        if not done.requested:
            raise error(409, "cancel_in_progress", "A cancel of this task is already being carried out")
        return render(done.task, verbose=False)
